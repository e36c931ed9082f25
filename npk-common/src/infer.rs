//! The one integer inference function, shared by the kernel programs, the userspace reference
//! and the tests.
//!
//! # Why the accumulator cannot overflow
//! Every input of a layer is an int8 code (`-128..=127`), every weight is int8, and a layer has
//! at most [`MAX_WIDTH`] = 128 inputs, so `|sum w*x| <= 128 * 128 * 128 = 2^21`. A validated
//! model has `|bias| < 2^30` ([`crate::model::BIAS_LIMIT`]), so `|bias + sum| < 2^30 + 2^21 < 2^31`.
//! The 64-bit requantization product is below `2^31 * 2^31 = 2^62`. Sums use wrapping adds
//! anyway, so kernel and userspace agree bit for bit even on a model that skipped validation.
//!
//! Two rows are accumulated in one i64 ([`crate::model::LayerParams`]' weight pairs):
//! `sum_i (w_lo + w_hi * 2^32) * x_i = S_lo + S_hi * 2^32`. Its low 32 bits are `S_lo` modulo
//! 2^32, which is all the i32 accumulator ever kept; since `|S_lo| <= 2^21`, subtracting it
//! and shifting leaves exactly `S_hi`.
//!
//! # How loops run
//! The kernel cannot afford to have the verifier walk 128 x 128 iterations, so the loop over a
//! layer's neurons is abstracted by [`NeuronLoop`]: userspace runs a plain `for`, the eBPF
//! program runs the same closure through the `bpf_loop` helper, or, on kernels without it
//! (< 5.17), through [`BoundedLoop`], whose constant bound the verifier walks step by step.
//! The arithmetic is identical.

use crate::fixed::{clamp, requantize};
use crate::model::{
    INPUT_MAX, INPUT_MIN, LayerParams, MAX_CLASSES, MAX_INPUTS, MAX_LAYERS, MAX_WIDTH, Model,
    split_pair,
};

/// Drives `body(i)` for `i in 0..n`.
pub trait NeuronLoop {
    /// `Some(w)`: the driver computes every layer as `w` wide (neurons and inputs), whatever
    /// its real width, so that every loop has a constant trip count: the verifier walks such
    /// loops without forking at each step. Exact for models up to `w` wide that passed
    /// [`Model::validate`]: their padding is zero, so the extra neurons only fill slots that
    /// the next layer multiplies by zero weights (and past the logits that are read).
    const FIXED_WIDTH: Option<usize> = None;

    fn run<F: FnMut(u32)>(&mut self, n: u32, body: F);
}

/// A plain loop: the userspace driver.
pub struct PlainLoop;

impl NeuronLoop for PlainLoop {
    #[inline(always)]
    fn run<F: FnMut(u32)>(&mut self, n: u32, mut body: F) {
        for i in 0..n {
            body(i);
        }
    }
}

/// The widths of the kernel's [`BoundedLoop`] classifiers (see the README's kernel table for
/// which load where); the loader picks the narrowest that fits the model.
pub const BOUNDED_WIDTHS: [usize; 3] = [32, 64, 128];

/// A driver for kernels without `bpf_loop`: every layer is computed `WIDTH` wide (see
/// [`NeuronLoop::FIXED_WIDTH`]): `body(i)` for `i < WIDTH / BLOCK`, whatever `n`. The verifier
/// walks every step, so `WIDTH` decides what the program costs it.
pub struct BoundedLoop<const WIDTH: usize>;

impl<const WIDTH: usize> NeuronLoop for BoundedLoop<WIDTH> {
    const FIXED_WIDTH: Option<usize> = Some(WIDTH);

    #[inline(always)]
    fn run<F: FnMut(u32)>(&mut self, _n: u32, mut body: F) {
        for i in 0..WIDTH.div_ceil(BLOCK) as u32 {
            step(&mut body, i);
        }
    }
}

/// One step of [`BoundedLoop`] as a call: its stack frame is the step's alone. Inlined, the
/// unrolled steps' values pile up in one frame (656 bytes for the 32-wide inference in a
/// function of its own, past the kernel's 512-byte stack).
#[inline(never)]
fn step<F: FnMut(u32)>(body: &mut F, i: u32) {
    body(i);
}

/// The widest layer of `model`, inputs included: what a [`NeuronLoop::FIXED_WIDTH`] must cover.
///
/// Indexed with a constant bound rather than through a slice iterator: the kernel's bounded
/// programs call it, and the 5.10 verifier cannot bound an iterator's end pointer (it saw a
/// read one past the model's map value).
#[inline(always)]
pub fn required_width(model: &Model) -> usize {
    let layers = model.header.num_layers as usize;
    let mut width = model.header.num_inputs as usize;
    for l in 0..MAX_LAYERS {
        if l >= layers {
            break;
        }
        let layer = &model.layers[l];
        width = width.max(layer.in_dim.max(layer.out_dim) as usize);
    }
    width
}

/// Working memory of one inference: raw features in, activations ping-ponging between the two
/// buffers. Lives in a per-CPU map in the kernel (it is far beyond the 512-byte stack).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Scratch {
    /// Raw integer features, as [`crate::model::InputQuant`] expects them.
    pub features: [i32; MAX_INPUTS],
    pub act: [[i32; MAX_WIDTH]; 2],
}

const _: () = assert!(core::mem::size_of::<Scratch>() == 4 * (MAX_INPUTS + 2 * MAX_WIDTH));

impl Scratch {
    pub const fn new() -> Self {
        Self {
            features: [0; MAX_INPUTS],
            act: [[0; MAX_WIDTH]; 2],
        }
    }

    /// The logits left by the last [`infer`] on `model`: buffer `num_layers % 2`.
    pub fn logits<'a>(&'a self, model: &Model) -> &'a [i32] {
        let classes = (model.header.num_classes as usize).min(MAX_CLASSES);
        &self.act[model.header.num_layers as usize & 1][..classes]
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// Raw feature `i` -> int8 code. [`quantize_feature`] is the same arithmetic for userspace's
/// wide models; the kernel's copy stays written over the model's arrays because calling it
/// here moved loads and stack slots in the bounded programs (disassembly compared), which
/// the verifier would have to accept anew. `slice_layers_match_the_kernel_path` holds the two
/// equal.
#[inline(always)]
fn quantize_input(model: &Model, raw: &[i32; MAX_INPUTS], i: usize) -> i32 {
    let q = &model.input;
    // i64 so that `raw - offset` cannot overflow; clamped to i32 range to keep the
    // requantization product below 2^62.
    let centered = raw[i] as i64 - q.offset[i] as i64;
    let centered = clamp(centered, i32::MIN + 1, i32::MAX) as i64;
    clamp(
        requantize(centered, q.multiplier[i], q.shift[i]),
        INPUT_MIN,
        INPUT_MAX,
    )
}

/// A raw feature -> its int8 input code, as [`crate::model::InputQuant`] describes: the
/// arithmetic of every model's input, the kernel's and userspace's models of any width.
#[inline(always)]
pub fn quantize_feature(raw: i32, offset: i32, multiplier: i32, shift: i32) -> i32 {
    // i64 so that `raw - offset` cannot overflow; clamped to i32 range to keep the
    // requantization product below 2^62.
    let centered = raw as i64 - offset as i64;
    let centered = clamp(centered, i32::MIN + 1, i32::MAX) as i64;
    clamp(
        requantize(centered, multiplier, shift),
        INPUT_MIN,
        INPUT_MAX,
    )
}

/// A neuron's dot product -> its output code, as [`LayerParams`] describes: bias, requantize,
/// output zero point, clamp. Shared by the kernel's layers and userspace's layers of any width.
#[inline(always)]
pub fn requantize_neuron(
    dot: i32,
    bias: i32,
    multiplier: i32,
    shift: i32,
    layer: &Activation,
) -> i32 {
    let v = requantize(bias.wrapping_add(dot) as i64, multiplier, shift) + layer.zero_point as i64;
    clamp(v, layer.min, layer.max)
}

/// What a layer does to its requantized sums: the output zero point and the clamp (the ReLU
/// of a hidden layer, the logit range of the last).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activation {
    pub zero_point: i32,
    pub min: i32,
    pub max: i32,
}

/// One dense layer of any width, as userspace holds it: `[out][in]` row-major int8 weights
/// (no pairs: a userspace layer may be wider than the pair accumulator allows), and per output
/// neuron its bias, multiplier and shift.
///
/// # Shapes
/// `weights`: `out_dim x in_dim`; `bias`, `multiplier`, `shift`: `out_dim`.
#[derive(Clone, Copy, Debug)]
pub struct DenseSlices<'a> {
    pub in_dim: usize,
    pub weights: &'a [i8],
    pub bias: &'a [i32],
    pub multiplier: &'a [i32],
    pub shift: &'a [i32],
    pub activation: Activation,
}

/// Most inputs of a layer [`dense_layer`] computes exactly: `|sum w*x| <= 2^14 * 2^16 = 2^30`,
/// and with `|bias| < 2^30` the sum stays below 2^31 (see the module's overflow argument).
pub const DENSE_MAX_INPUTS: usize = 1 << 16;

/// [`LayerParams`]' formula over slices: `output[o] = requantize_neuron(sum_i w[o][i] *
/// input[i], ...)` for `o < output.len()`. Exact (equal to the kernel's [`infer`] on every layer
/// the kernel holds) for layers of at most [`DENSE_MAX_INPUTS`] inputs with int8 codes in.
/// Rows or inputs missing from short slices count as zero; nothing panics.
pub fn dense_layer(layer: &DenseSlices<'_>, input: &[i32], output: &mut [i32]) {
    let in_dim = layer.in_dim.min(input.len());
    let input = &input[..in_dim];
    let rows = layer.weights.chunks_exact(layer.in_dim.max(1));
    let params = layer.bias.iter().zip(layer.multiplier).zip(layer.shift);
    for ((out, row), ((&bias, &multiplier), &shift)) in output.iter_mut().zip(rows).zip(params) {
        // i32 products and wrapping sums: the same bits as the kernel's pair accumulator, and
        // a loop LLVM vectorizes.
        let dot = row.iter().zip(input).fold(0i32, |acc, (&w, &x)| {
            acc.wrapping_add(i32::from(w).wrapping_mul(x))
        });
        *out = requantize_neuron(dot, bias, multiplier, shift, &layer.activation);
    }
}

/// The class (first largest logit) and its margin over the runner-up, as [`predict`] computes
/// them on the kernel's logits, for logits of any model.
pub fn predict_logits(logits: &[i32]) -> Prediction {
    let mut class = 0;
    for (c, &v) in logits.iter().enumerate() {
        if v > logits[class] {
            class = c;
        }
    }
    let best = logits.get(class).map_or(i32::MIN as i64, |&v| v as i64);
    let runner_up = logits
        .iter()
        .enumerate()
        .filter(|&(c, _)| c != class)
        .map(|(_, &v)| v as i64)
        .max()
        .unwrap_or(i32::MIN as i64);
    Prediction {
        class: class as u32,
        margin: (best - runner_up).clamp(0, u32::MAX as i64) as u32,
    }
}

/// Neurons computed per loop step: each input is loaded once for all of them, and the loop
/// driver's per-step cost is shared. Rows past `out_dim` are zero, so a partial last block
/// computes harmless values in unused slots, identically on both sides.
pub const BLOCK: usize = 4;
/// Inputs per inner step: fixed-size chunks unroll, and a chunk-count bound lets the verifier see
/// every index. 4 rather than 8: LLVM spills accumulators to the stack past that (0.23 vs 0.26
/// ns per multiply-add at 128x128, `npk bench infer`).
const CHUNK: usize = 4;

/// Output neurons `BLOCK * b ..` of a dense layer, two rows per 64-bit multiply-add, over its
/// inputs, or over `fixed_width` inputs (a constant once inlined: the driver's
/// [`NeuronLoop::FIXED_WIDTH`]).
#[inline(always)]
#[expect(
    clippy::needless_range_loop,
    reason = "explicit indices with constant bounds are what the verifier can follow"
)]
fn neuron_block(
    layer: &LayerParams,
    fixed_width: Option<usize>,
    b: usize,
    input: &[i32; MAX_WIDTH],
    output: &mut [i32; MAX_WIDTH],
) {
    const PAIRS: usize = BLOCK / 2;
    let first = (b * BLOCK) & (MAX_WIDTH - 1) & !(BLOCK - 1);
    let rows: [&[i64; MAX_WIDTH]; PAIRS] = core::array::from_fn(|k| &layer.pairs[first / 2 + k]);
    let mut acc = [0i64; PAIRS];
    let chunks = match fixed_width {
        Some(width) => width.min(MAX_WIDTH).div_ceil(CHUNK),
        None => (layer.in_dim as usize).div_ceil(CHUNK),
    };
    // Hidden from LLVM where the width is fixed: fully unrolled (the 8 chunks of 32 inputs),
    // the step's values spilled to 344 bytes of stack, which with its callers' frames was the
    // verifier's whole 512-byte budget for a chain of calls. The verifier still reads the
    // bound off the stack slot it went through.
    let bound = fixed_width
        .unwrap_or(MAX_WIDTH)
        .min(MAX_WIDTH)
        .div_ceil(CHUNK);
    let bound = if fixed_width.is_some() {
        core::hint::black_box(bound)
    } else {
        bound
    };
    for c in 0..bound {
        if c >= chunks {
            break;
        }
        let base = c * CHUNK;
        for i in base..base + CHUNK {
            let x = input[i] as i64;
            for k in 0..PAIRS {
                acc[k] = acc[k].wrapping_add(rows[k][i].wrapping_mul(x));
            }
        }
    }
    for k in 0..PAIRS {
        let (low, high) = split_pair(acc[k]);
        for (o, dot) in [(first + 2 * k, low), (first + 2 * k + 1, high)] {
            let v = requantize(
                layer.bias[o].wrapping_add(dot) as i64,
                layer.multiplier[o],
                layer.shift[o],
            ) + layer.output_zero_point as i64;
            output[o] = clamp(v, layer.act_min, layer.act_max);
        }
    }
}

/// `max(a, b)` by arithmetic on the sign of `a - b` (both within i32: no overflow in i64),
/// hidden from LLVM so that it is not turned back into a compare and branch.
#[inline(always)]
fn max_without_branch(a: i64, b: i64) -> i64 {
    let d = a - b;
    a - (d & core::hint::black_box(d >> 63))
}

/// What one inference decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prediction {
    /// The class of the first largest logit.
    pub class: u32,
    /// How many logit codes the class's logit is above the runner-up's (0 on a tie): the
    /// model's confidence, which a drop needs (see [`Prediction::confident`]).
    pub margin: u32,
}

impl Prediction {
    /// Whether the model is confident enough to act on a drop: the margin reaches the model's
    /// [`crate::model::ModelHeader::drop_margin`].
    #[inline(always)]
    pub fn confident(&self, drop_margin: u32) -> bool {
        self.margin >= drop_margin
    }
}

/// Runs `model` on `scratch.features`; returns the class (the first largest logit). The logits
/// stay in `scratch` (see [`Scratch::logits`]); [`predict`] adds the margin.
///
/// `model` must have passed [`Model::validate`] for the result to mean anything, but no model,
/// however corrupted, makes this function index out of bounds, overflow or loop longer than
/// `MAX_LAYERS * MAX_WIDTH` neurons.
#[inline(always)]
#[expect(
    clippy::needless_range_loop,
    reason = "explicit indices with constant bounds are what the verifier can follow"
)]
pub fn infer<L: NeuronLoop>(model: &Model, scratch: &mut Scratch, looper: &mut L) -> u32 {
    let header = &model.header;
    let num_layers = header.num_layers as usize;
    let Scratch { features, act } = scratch;
    let [a, b] = act;

    // Inputs past num_inputs have multiplier 0 and come out as 0 whatever the feature slot holds.
    let inputs = (header.num_inputs as usize).min(MAX_INPUTS);
    looper.run(inputs.div_ceil(BLOCK) as u32, |b| {
        let first = (b as usize * BLOCK) & (MAX_INPUTS - 1) & !(BLOCK - 1);
        for i in first..first + BLOCK {
            a[i] = quantize_input(model, features, i);
        }
    });

    for l in 0..MAX_LAYERS {
        if l >= num_layers {
            break;
        }
        let layer = &model.layers[l];
        let (input, output) = if l & 1 == 0 {
            (&*a, &mut *b)
        } else {
            (&*b, &mut *a)
        };
        let out_dim = (layer.out_dim as usize).min(MAX_WIDTH);
        looper.run(out_dim.div_ceil(BLOCK) as u32, |b| {
            neuron_block(layer, L::FIXED_WIDTH, b as usize, input, output)
        });
    }

    let logits = if num_layers & 1 == 0 { &*a } else { &*b };
    let classes = (header.num_classes as usize).min(MAX_CLASSES);
    // The best logit kept beside its index rather than read through it: an index the
    // program reads with is one the verifier must track exactly, so every class that could
    // be the best so far was another state to walk the rest of the loop with.
    let (mut best, mut best_logit) = (0, logits[0]);
    for c in 1..MAX_CLASSES {
        if c >= classes {
            break;
        }
        if logits[c] > best_logit {
            (best, best_logit) = (c, logits[c]);
        }
    }
    best as u32
}

/// [`infer`] and the class's margin: what the classifier acts on.
#[inline(always)]
pub fn predict<L: NeuronLoop>(model: &Model, scratch: &mut Scratch, looper: &mut L) -> Prediction {
    let class = infer(model, scratch, looper);
    Prediction {
        class,
        margin: margin(model, scratch, class),
    }
}

/// How far the logit of `class` (the one [`infer`] picked) leads the largest other logit left in
/// `scratch` (0 on a tie). Apart from [`infer`] and without a branch on the logits or on
/// `class`: a branch there gave the verifier a state per class that could be the best so far,
/// each with the runner-up's range refined, and 5.10 refused the 128-wide bounded program at
/// its million instructions.
#[inline(always)]
#[expect(
    clippy::needless_range_loop,
    reason = "explicit indices with constant bounds are what the verifier can follow"
)]
pub fn margin(model: &Model, scratch: &Scratch, class: u32) -> u32 {
    let header = &model.header;
    let logits = &scratch.act[header.num_layers as usize & 1];
    let classes = (header.num_classes as usize).min(MAX_CLASSES);
    let (mut best, mut runner_up) = (i32::MIN as i64, i32::MIN as i64);
    for c in 0..MAX_CLASSES {
        if c >= classes {
            break;
        }
        let logit = logits[c] as i64;
        // -1 when c is the class, else 0 ((d | -d) is negative for every d but 0).
        let d = c as i64 - class as i64;
        let is_class = core::hint::black_box(!((d | -d) >> 63));
        best = max_without_branch(best, (logit & is_class) | (i32::MIN as i64 & !is_class));
        runner_up = max_without_branch(
            runner_up,
            (logit & !is_class) | (i32::MIN as i64 & is_class),
        );
    }
    // A corrupted model of one class leaves the runner-up at i32::MIN.
    (best - runner_up).clamp(0, u32::MAX as i64) as u32
}

#[cfg(test)]
mod tests {
    use bytemuck::Zeroable;
    use proptest::prelude::*;

    use super::*;

    /// A model of the given layer widths with weights, biases and requantization from `seed`.
    fn model(dims: &[usize], seed: u64) -> Model {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut m = Model::zeroed();
        m.header.magic = crate::model::MODEL_MAGIC;
        m.header.format_version = crate::model::MODEL_FORMAT_VERSION;
        m.header.feature_schema = crate::model::FeatureSchema::Tabular as u32;
        m.header.num_inputs = dims[0] as u32;
        m.header.num_layers = (dims.len() - 1) as u32;
        m.header.num_classes = dims[dims.len() - 1] as u32;
        for i in 0..dims[0] {
            m.input.multiplier[i] = (next() % (1 << 30)) as i32;
            m.input.shift[i] = 20 + (next() % 8) as i32;
        }
        for (l, io) in dims.windows(2).enumerate() {
            let layer = &mut m.layers[l];
            let last = l + 2 == dims.len();
            (layer.in_dim, layer.out_dim) = (io[0] as u32, io[1] as u32);
            (layer.act_min, layer.act_max) = if last { (-32767, 32767) } else { (-128, 127) };
            layer.output_zero_point = if last { 0 } else { -128 };
            for o in 0..io[1] {
                layer.bias[o] = (next() % 20_000) as i32 - 10_000;
                layer.multiplier[o] = (1 << 30) + (next() % (1 << 30)) as i32;
                layer.shift[o] = 36 + (next() % 4) as i32;
                for i in 0..io[0] {
                    layer.set_weight(o, i, next() as i8);
                }
            }
        }
        m
    }

    proptest! {
        /// The kernel's bounded driver computes what userspace's plain loop does, for every
        /// valid model it covers.
        #[test]
        fn bounded_loop_matches_the_plain_loop(
            hidden in prop::collection::vec(1usize..=32, 1..=MAX_LAYERS),
            classes in 2usize..=MAX_CLASSES,
            features in prop::collection::vec(-100_000i32..100_000, MAX_INPUTS),
            seed in any::<u64>(),
        ) {
            let dims: std::vec::Vec<usize> = hidden.into_iter().chain([classes]).collect();
            let m = model(&dims, seed);
            prop_assert!(m.validate().is_ok(), "{:?}", m.validate());
            prop_assert!(required_width(&m) <= 32);
            let mut plain = Scratch::new();
            plain.features.copy_from_slice(&features);
            let mut bounded = plain;
            let class = infer(&m, &mut plain, &mut PlainLoop);
            prop_assert_eq!(infer(&m, &mut bounded, &mut BoundedLoop::<32>), class);
            prop_assert_eq!(bounded.logits(&m), plain.logits(&m));
        }
    }

    /// The reference the optimised [`infer`] is held to: the layer formula of
    /// [`crate::model::LayerParams`] as a plain triple loop over [`LayerParams::weight`], in
    /// i64 without wrapping, weight pairs or blocks (TFLite-micro's reference kernels are
    /// written so). Returns the prediction (first largest logit, its lead over the second
    /// largest of the sorted logits) and the logits.
    fn naive_infer(model: &Model, features: &[i32]) -> (Prediction, std::vec::Vec<i32>) {
        let h = &model.header;
        let mut act: std::vec::Vec<i64> = (0..h.num_inputs as usize)
            .map(|i| {
                let q = &model.input;
                let centered = (features[i] as i64 - q.offset[i] as i64)
                    .clamp(i32::MIN as i64 + 1, i32::MAX as i64);
                requantize(centered, q.multiplier[i], q.shift[i])
                    .clamp(INPUT_MIN as i64, INPUT_MAX as i64)
            })
            .collect();
        for layer in &model.layers[..h.num_layers as usize] {
            act = (0..layer.out_dim as usize)
                .map(|o| {
                    let mut sum = layer.bias[o] as i64;
                    for (i, x) in act.iter().enumerate() {
                        sum += layer.weight(o, i) as i64 * x;
                    }
                    (requantize(sum, layer.multiplier[o], layer.shift[o])
                        + layer.output_zero_point as i64)
                        .clamp(layer.act_min as i64, layer.act_max as i64)
                })
                .collect();
        }
        let logits: std::vec::Vec<i32> = act.iter().map(|&v| v as i32).collect();
        let mut best = 0;
        for (c, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = c;
            }
        }
        let mut sorted = logits.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let margin = (sorted[0] - sorted[1]) as u32;
        (
            Prediction {
                class: best as u32,
                margin,
            },
            logits,
        )
    }

    proptest! {
        /// The optimised inference (blocks of neurons, two rows per 64-bit multiply-add,
        /// wrapping sums) equals the naive triple loop on every valid model up to the
        /// kernel's limits: logits, class and margin.
        #[test]
        fn infer_matches_the_naive_reference(
            inputs in 1usize..=MAX_INPUTS,
            hidden in prop::collection::vec(1usize..=MAX_WIDTH, 1..MAX_LAYERS),
            classes in 2usize..=MAX_CLASSES,
            features in prop::collection::vec(any::<i32>(), MAX_INPUTS),
            seed in any::<u64>(),
        ) {
            let dims: std::vec::Vec<usize> =
                [inputs].into_iter().chain(hidden).chain([classes]).collect();
            let m = model(&dims, seed);
            prop_assert!(m.validate().is_ok(), "{:?}", m.validate());
            let mut scratch = Scratch::new();
            scratch.features.copy_from_slice(&features);
            let prediction = predict(&m, &mut scratch, &mut PlainLoop);
            let (naive, naive_logits) = naive_infer(&m, &features);
            prop_assert_eq!(scratch.logits(&m), &naive_logits[..]);
            prop_assert_eq!(prediction, naive);
        }
    }

    /// `model` through the slice functions userspace runs wide models with: its input
    /// quantization and [`dense_layer`] per layer over `[out][in]` weights unpacked from the
    /// pairs, then [`predict_logits`]. Returns the prediction and the logits.
    fn slice_infer(model: &Model, features: &[i32]) -> (Prediction, std::vec::Vec<i32>) {
        let h = &model.header;
        let q = &model.input;
        let mut act: std::vec::Vec<i32> = (0..h.num_inputs as usize)
            .map(|i| quantize_feature(features[i], q.offset[i], q.multiplier[i], q.shift[i]))
            .collect();
        for layer in model.active_layers() {
            let (in_dim, out_dim) = (layer.in_dim as usize, layer.out_dim as usize);
            let weights: std::vec::Vec<i8> = (0..out_dim * in_dim)
                .map(|k| layer.weight(k / in_dim, k % in_dim))
                .collect();
            let slices = DenseSlices {
                in_dim,
                weights: &weights,
                bias: &layer.bias[..out_dim],
                multiplier: &layer.multiplier[..out_dim],
                shift: &layer.shift[..out_dim],
                activation: Activation {
                    zero_point: layer.output_zero_point,
                    min: layer.act_min,
                    max: layer.act_max,
                },
            };
            let mut out = std::vec![0; out_dim];
            dense_layer(&slices, &act, &mut out);
            act = out;
        }
        (predict_logits(&act), act)
    }

    proptest! {
        /// The slice functions of userspace's wide models compute, bit for bit, what the
        /// kernel's [`predict`] does, on every valid model the kernel holds: logits, class and
        /// margin, over any raw features (i32 extremes included).
        #[test]
        fn slice_layers_match_the_kernel_path(
            inputs in 1usize..=MAX_INPUTS,
            hidden in prop::collection::vec(1usize..=MAX_WIDTH, 0..MAX_LAYERS),
            classes in 2usize..=MAX_CLASSES,
            features in prop::collection::vec(any::<i32>(), MAX_INPUTS),
            seed in any::<u64>(),
        ) {
            let dims: std::vec::Vec<usize> =
                [inputs].into_iter().chain(hidden).chain([classes]).collect();
            let m = model(&dims, seed);
            prop_assert!(m.validate().is_ok(), "{:?}", m.validate());
            let mut scratch = Scratch::new();
            scratch.features.copy_from_slice(&features);
            let kernel = predict(&m, &mut scratch, &mut PlainLoop);
            let (slices, logits) = slice_infer(&m, &features);
            prop_assert_eq!(scratch.logits(&m), &logits[..]);
            prop_assert_eq!(slices, kernel);
        }
    }

    #[test]
    fn predict_logits_takes_the_first_largest_and_its_lead() {
        for (logits, class, margin) in [
            (&[5, 90, 40, 89][..], 1, 1),
            (&[7, 50, 50, 3], 1, 0),
            (&[-32767, -32767], 0, 0),
            (&[32767, -32767], 0, 65534),
        ] {
            assert_eq!(
                predict_logits(logits),
                Prediction { class, margin },
                "{logits:?}"
            );
        }
    }

    /// A model of `classes` classes whose logits are its first inputs (one layer, identity
    /// weights, no scaling): the argmax and margin rules on chosen logits.
    fn identity(classes: usize) -> Model {
        let mut m = model(&[classes, classes], 1);
        for i in 0..classes {
            (m.input.offset[i], m.input.multiplier[i], m.input.shift[i]) = (0, 1 << 30, 30);
        }
        let l = &mut m.layers[0];
        (l.act_min, l.act_max, l.output_zero_point) = (-32767, 32767, 0);
        for o in 0..classes {
            (l.bias[o], l.multiplier[o], l.shift[o]) = (0, 1 << 30, 30);
            for i in 0..classes {
                l.set_weight(o, i, i8::from(o == i));
            }
        }
        m
    }

    #[test]
    fn the_margin_is_the_lead_over_the_runner_up_and_zero_on_a_tie() {
        let m = identity(4);
        assert_eq!(m.validate(), Ok(()));
        for (logits, class, margin) in [
            ([5, 90, 40, 89], 1, 1),
            ([90, 10, 40, 60], 0, 30),
            ([-100, -20, -120, -127], 1, 80),
            ([7, 50, 50, 3], 1, 0),
            ([3, 3, 3, 3], 0, 0),
        ] {
            let mut scratch = Scratch::new();
            scratch.features[..4].copy_from_slice(&logits);
            let p = predict(&m, &mut scratch, &mut PlainLoop);
            assert_eq!((p.class, p.margin), (class, margin), "logits {logits:?}");
            assert!(p.confident(margin) && (margin == 0 || !p.confident(margin + 1)));
        }
    }

    #[test]
    fn required_width_is_the_widest_layer_or_the_inputs() {
        assert_eq!(required_width(&model(&[16, 32, 8, 4], 1)), 32);
        assert_eq!(required_width(&model(&[64, 16, 4], 1)), 64);
    }
}
