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
//! program runs the same closure through the `bpf_loop` helper. The arithmetic is identical.

use crate::fixed::{clamp, requantize};
use crate::model::{
    INPUT_MAX, INPUT_MIN, LayerParams, MAX_CLASSES, MAX_INPUTS, MAX_LAYERS, MAX_WIDTH, Model,
    split_pair,
};

/// Drives `body(i)` for `i in 0..n`.
pub trait NeuronLoop {
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

/// Raw feature `i` -> int8 code.
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

/// Neurons computed per loop step: each input is loaded once for all of them, and the loop
/// driver's per-step cost is shared. Rows past `out_dim` are zero, so a partial last block
/// computes harmless values in unused slots, identically on both sides.
pub const BLOCK: usize = 4;
/// Inputs per inner step: fixed-size chunks unroll, and a chunk-count bound lets the verifier see
/// every index. 4 rather than 8: LLVM spills accumulators to the stack past that (0.23 vs 0.26
/// ns per multiply-add at 128x128, `npk bench infer`).
const CHUNK: usize = 4;

/// Output neurons `BLOCK * b ..` of a dense layer, two rows per 64-bit multiply-add.
#[inline(always)]
#[expect(
    clippy::needless_range_loop,
    reason = "explicit indices with constant bounds are what the verifier can follow"
)]
fn neuron_block(
    layer: &LayerParams,
    b: usize,
    input: &[i32; MAX_WIDTH],
    output: &mut [i32; MAX_WIDTH],
) {
    const PAIRS: usize = BLOCK / 2;
    let first = (b * BLOCK) & (MAX_WIDTH - 1) & !(BLOCK - 1);
    let rows: [&[i64; MAX_WIDTH]; PAIRS] = core::array::from_fn(|k| &layer.pairs[first / 2 + k]);
    let mut acc = [0i64; PAIRS];
    let chunks = (layer.in_dim as usize).div_ceil(CHUNK);
    for c in 0..MAX_WIDTH / CHUNK {
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

/// Runs `model` on `scratch.features`; returns the class (the first largest logit). The logits
/// stay in `scratch` (see [`Scratch::logits`]).
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
            neuron_block(layer, b as usize, input, output)
        });
    }

    let logits = if num_layers & 1 == 0 { &*a } else { &*b };
    let classes = (header.num_classes as usize).min(MAX_CLASSES);
    let mut best = 0;
    for c in 1..MAX_CLASSES {
        if c >= classes {
            break;
        }
        if logits[c] > logits[best] {
            best = c;
        }
    }
    best as u32
}
