//! The quantized model exactly as it lies in a BPF map value.
//!
//! One [`Model`] is a fixed-size, `#[repr(C)]` block with no implicit padding: a [`ModelHeader`],
//! the input quantizer ([`InputQuant`]) and [`MAX_LAYERS`] dense layers ([`LayerParams`]) of at
//! most [`MAX_WIDTH`] inputs and outputs each. Unused layers, rows and columns are zero, so the
//! kernel can loop over fixed bounds while userspace still describes any smaller network.

use bytemuck::{Pod, Zeroable};

/// Dense layers a model may have (hidden layers + the output layer).
pub const MAX_LAYERS: usize = 4;
/// Widest layer: inputs and outputs of any layer.
pub const MAX_WIDTH: usize = 128;
/// Most input features (the first layer's input width).
pub const MAX_INPUTS: usize = MAX_WIDTH;
/// Most classes (the last layer's output width).
pub const MAX_CLASSES: usize = 16;

/// `b"NPKM"` read as a little-endian u32.
pub const MODEL_MAGIC: u32 = u32::from_le_bytes(*b"NPKM");
/// Bumped whenever the layout of [`Model`] changes (2: weights stored as row pairs).
pub const MODEL_FORMAT_VERSION: u32 = 2;

/// The activations of hidden layers are int8 with this zero point: real 0 (the ReLU floor)
/// maps to -128 so all 256 codes carry information.
pub const HIDDEN_ZERO_POINT: i32 = -128;
/// Hidden activations after requantization are clamped to int8.
pub const HIDDEN_MIN: i32 = -128;
pub const HIDDEN_MAX: i32 = 127;
/// Logits keep 16 bits: argmax over 256 int8 levels would turn near-ties into ties.
pub const LOGIT_MIN: i32 = -32767;
pub const LOGIT_MAX: i32 = 32767;
/// Quantized inputs are symmetric int8 (zero point 0).
/// The largest useful [`ModelHeader::drop_margin`]: the widest gap two logits can have. A
/// larger margin could never be met, so that no packet would ever drop: refused as a mistake.
pub const MAX_DROP_MARGIN: u32 = (LOGIT_MAX - LOGIT_MIN) as u32;
pub const INPUT_MIN: i32 = -127;
pub const INPUT_MAX: i32 = 127;
/// Biases are limited so that bias + the largest possible dot product fits in i32 (see
/// [`crate::infer`]).
pub const BIAS_LIMIT: i32 = 1 << 30;
/// Requantization shifts must lie in `1..=MAX_SHIFT` (see [`crate::fixed::requantize`]).
pub const MAX_SHIFT: i32 = 62;

/// What the input features mean: a model is only accepted where its schema is expected.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureSchema {
    /// Columns of a CSV file, in file order; values are fixed point (see the model file).
    Tabular = 1,
    /// npk's packet feature vector, version 1: the 16 packet and flow features. Known so that
    /// such a model is refused by name; no program computes it any more.
    PacketV1 = 2,
    /// Version 2: v1's features, then the source host's and the service's. Refused by name
    /// like v1.
    PacketV2 = 3,
    /// Version 3: no TTL or TCP window, ports and flow counters on the log scale, the host's
    /// pacing. Refused by name like v1.
    PacketV3 = 4,
    /// Version 4: v3, with UDP datagrams' sizes left out and their ports as classes. Refused
    /// by name like v1.
    PacketV4 = 5,
    /// Version 5: v4 without ports, ICMP without sizes, a TCP flow's ACK share and half-open
    /// state: the first [`crate::packet::INGRESS_FEATURES`] of v6, which the classifier still
    /// computes (for kernels where npk cannot see replies).
    PacketV5 = 6,
    /// Version 6: v5, then the replies this machine sends (see [`crate::packet`],
    /// [`crate::host`]).
    PacketV6 = 7,
}

impl FeatureSchema {
    /// How messages name it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Tabular => "tabular (CSV columns)",
            Self::PacketV1 => "packet features v1",
            Self::PacketV2 => "packet features v2",
            Self::PacketV3 => "packet features v3",
            Self::PacketV4 => "packet features v4",
            Self::PacketV5 => "packet features v5",
            Self::PacketV6 => "packet features v6",
        }
    }

    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Tabular),
            2 => Some(Self::PacketV1),
            3 => Some(Self::PacketV2),
            4 => Some(Self::PacketV3),
            5 => Some(Self::PacketV4),
            6 => Some(Self::PacketV5),
            7 => Some(Self::PacketV6),
            _ => None,
        }
    }

    /// How many of the classifier's features a model of this schema reads (the first ones):
    /// `None` for the schemas no program computes (tabular, v1-v4).
    pub const fn packet_inputs(self) -> Option<usize> {
        match self {
            Self::PacketV5 => Some(crate::packet::INGRESS_FEATURES),
            Self::PacketV6 => Some(crate::packet::NUM_FEATURES),
            _ => None,
        }
    }

    /// Whether a model of this schema runs in a program that computes `program`'s features:
    /// the same schema, or v5 (v6's first features) in a v6 program.
    pub const fn computed_by(self, program: FeatureSchema) -> bool {
        self as u32 == program as u32
            || (program as u32 == Self::PacketV6 as u32 && self as u32 == Self::PacketV5 as u32)
    }

    /// Whether a model of this schema needs the replies this machine sends (the egress
    /// program) to see what it was trained on.
    pub const fn needs_replies(self) -> bool {
        matches!(self, Self::PacketV6)
    }
}

/// # Layout
/// 32 bytes, all u32.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct ModelHeader {
    pub magic: u32,
    pub format_version: u32,
    /// Increases with every model pushed; the kernel tags verdicts with it.
    pub model_version: u32,
    /// A [`FeatureSchema`] value.
    pub feature_schema: u32,
    pub num_layers: u32,
    pub num_inputs: u32,
    pub num_classes: u32,
    /// A class whose action is drop drops a packet only when the class's logit beats the
    /// runner-up's by at least this many logit codes (see [`crate::infer::Prediction`]): below
    /// it the model is not confident and the packet passes, counted. 0 drops on every win.
    /// Part of the model, not of the configuration, so that a push swaps weights and margin at
    /// once: a margin chosen for other logits would mean nothing.
    pub drop_margin: u32,
}

/// Raw integer feature `x` becomes `clamp(requantize(x - offset, multiplier, shift))` in
/// `INPUT_MIN..=INPUT_MAX`: standardization and the input scale folded into one step.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct InputQuant {
    pub offset: [i32; MAX_INPUTS],
    pub multiplier: [i32; MAX_INPUTS],
    pub shift: [i32; MAX_INPUTS],
}

/// One dense layer: `out[o] = clamp(requantize(bias[o] + sum_i w[o][i] * in[i], m[o], s[o]) + zp)`.
///
/// The input zero point is folded into `bias` by the quantizer, so the kernel never subtracts it.
///
/// # Weight pairs
/// The int8 weights of rows `2p` and `2p + 1` are stored together, one i64 per input:
/// `pairs[p][i] = w[2p][i] + w[2p+1][i] * 2^32`. Multiplying that by an input computes both
/// rows' products in one 64-bit multiply, and the two sums stay apart: the low row's sum is
/// below 2^21 in magnitude (see [`crate::infer`]), so the low 32 bits of the total are exactly
/// it and the rest, shifted down, exactly the high row's. eBPF has no vector instructions;
/// this halves the multiplies, loads and adds of every layer. Use [`LayerParams::weight`] and
/// [`LayerParams::set_weight`] to read and write single weights.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct LayerParams {
    pub in_dim: u32,
    pub out_dim: u32,
    pub output_zero_point: i32,
    pub act_min: i32,
    pub act_max: i32,
    pub _pad: [u32; 3],
    pub bias: [i32; MAX_WIDTH],
    pub multiplier: [i32; MAX_WIDTH],
    pub shift: [i32; MAX_WIDTH],
    /// `[out / 2][in]` weight pairs (see above); weights past `in_dim`/`out_dim` are zero.
    pub pairs: [[i64; MAX_WIDTH]; MAX_WIDTH / 2],
}

impl LayerParams {
    /// Weight `[o][i]` (0 outside `MAX_WIDTH`, and for a pair that is not two int8 weights:
    /// [`Model::validate`] rejects those).
    pub fn weight(&self, o: usize, i: usize) -> i8 {
        let Some(&pair) = self.pairs.get(o / 2).and_then(|row| row.get(i)) else {
            return 0;
        };
        let (low, high) = split_pair(pair);
        i8::try_from(if o.is_multiple_of(2) { low } else { high }).unwrap_or(0)
    }

    /// Sets weight `[o][i]`; indices outside `MAX_WIDTH` are ignored.
    pub fn set_weight(&mut self, o: usize, i: usize, w: i8) {
        let Some(pair) = self.pairs.get_mut(o / 2).and_then(|row| row.get_mut(i)) else {
            return;
        };
        let (low, high) = split_pair(*pair);
        *pair = if o.is_multiple_of(2) {
            join_pair(w as i32, high)
        } else {
            join_pair(low, w as i32)
        };
    }
}

/// `low + high * 2^32`, as [`LayerParams::pairs`] stores two weights and
/// [`crate::infer`] accumulates two rows.
#[inline(always)]
pub const fn join_pair(low: i32, high: i32) -> i64 {
    ((high as i64) << 32).wrapping_add(low as i64)
}

/// The two signed 32-bit halves of `low + high * 2^32` (exact for any i32 pair).
#[inline(always)]
pub const fn split_pair(pair: i64) -> (i32, i32) {
    let low = pair as i32;
    let high = (pair.wrapping_sub(low as i64) >> 32) as i32;
    (low, high)
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Model {
    pub header: ModelHeader,
    pub input: InputQuant,
    pub layers: [LayerParams; MAX_LAYERS],
}

const _: () = assert!(core::mem::size_of::<ModelHeader>() == 32);
const _: () = assert!(core::mem::size_of::<InputQuant>() == 3 * 4 * MAX_INPUTS);
const _: () = assert!(
    core::mem::size_of::<LayerParams>() == 32 + 3 * 4 * MAX_WIDTH + 8 * MAX_WIDTH * MAX_WIDTH / 2
);
const _: () = assert!(
    core::mem::size_of::<Model>()
        == 32 + 3 * 4 * MAX_INPUTS + MAX_LAYERS * core::mem::size_of::<LayerParams>()
);
const _: () = assert!(MAX_WIDTH.is_power_of_two() && MAX_CLASSES <= MAX_WIDTH);

/// Why a [`Model`] cannot be used. Checked by userspace before anything reaches the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelError {
    BadMagic(u32),
    BadFormatVersion(u32),
    BadSchema(u32),
    Layers(u32),
    Inputs(u32),
    Classes(u32),
    DropMargin(u32),
    /// Layer `layer`'s input width differs from the previous layer's output width.
    Chain {
        layer: u32,
        expected: u32,
        found: u32,
    },
    Width {
        layer: u32,
        width: u32,
    },
    Shift {
        layer: u32,
        neuron: u32,
        shift: i32,
    },
    Bias {
        layer: u32,
        neuron: u32,
    },
    /// A weight outside `in_dim`/`out_dim` is not zero.
    Padding {
        layer: u32,
    },
    /// A weight pair that is not two int8 weights.
    WeightPair {
        layer: u32,
        row_pair: u32,
        input: u32,
    },
    Clamp {
        layer: u32,
    },
}

impl core::fmt::Display for ModelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::BadMagic(m) => write!(f, "bad magic {m:#010x}, expected {MODEL_MAGIC:#010x}"),
            Self::BadFormatVersion(v) => write!(
                f,
                "layout version {v} is not supported (this build reads {MODEL_FORMAT_VERSION})"
            ),
            Self::BadSchema(s) => write!(f, "unknown feature schema {s}"),
            Self::Layers(n) => write!(f, "{n} layers: must be 1..={MAX_LAYERS}"),
            Self::Inputs(n) => write!(f, "{n} inputs: must be 1..={MAX_INPUTS}"),
            Self::Classes(n) => write!(f, "{n} classes: must be 2..={MAX_CLASSES}"),
            Self::DropMargin(m) => write!(
                f,
                "drop margin {m}: must be 0..={MAX_DROP_MARGIN} (no two logits are further apart)"
            ),
            Self::Chain {
                layer,
                expected,
                found,
            } => write!(
                f,
                "layer {layer} takes {found} inputs but the previous layer gives {expected}"
            ),
            Self::Width { layer, width } => {
                write!(
                    f,
                    "layer {layer} has width {width}: must be 1..={MAX_WIDTH}"
                )
            }
            Self::Shift {
                layer,
                neuron,
                shift,
            } => write!(
                f,
                "layer {layer} neuron {neuron}: shift {shift} outside 1..={MAX_SHIFT}"
            ),
            Self::Bias { layer, neuron } => {
                write!(f, "layer {layer} neuron {neuron}: |bias| >= 2^30")
            }
            Self::Padding { layer } => {
                write!(
                    f,
                    "layer {layer}: weights outside its dimensions are not zero"
                )
            }
            Self::WeightPair {
                layer,
                row_pair,
                input,
            } => write!(
                f,
                "layer {layer} rows {}-{} input {input}: the weight pair is not two int8 weights",
                2 * row_pair,
                2 * row_pair + 1
            ),
            Self::Clamp { layer } => write!(f, "layer {layer}: activation clamp is inverted"),
        }
    }
}

impl core::error::Error for ModelError {}

/// An MLP shape the kernel's model layout cannot hold: the one check of the limits above, for
/// training, quantization, the fixtures and the CLI alike. Hidden layers count from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitError {
    Inputs(usize),
    HiddenLayers(usize),
    Width { layer: usize, width: usize },
    Classes(usize),
}

impl core::fmt::Display for LimitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Inputs(n) => write!(
                f,
                "{n} input features: must be 1..={MAX_INPUTS} (the kernel's MAX_INPUTS)"
            ),
            Self::HiddenLayers(n) => write!(
                f,
                "{n} hidden layers: at most {} (the kernel runs at most MAX_LAYERS = {MAX_LAYERS} \
                 dense layers, the output layer included)",
                MAX_LAYERS - 1
            ),
            Self::Width { layer, width } => write!(
                f,
                "hidden layer {layer} has width {width}: must be 1..={MAX_WIDTH} (the kernel's \
                 MAX_WIDTH)"
            ),
            Self::Classes(n) => write!(
                f,
                "{n} classes: must be 2..={MAX_CLASSES} (the kernel's MAX_CLASSES)"
            ),
        }
    }
}

impl core::error::Error for LimitError {}

/// Checks hidden layer widths against MAX_LAYERS and MAX_WIDTH.
pub fn check_hidden(hidden: &[usize]) -> Result<(), LimitError> {
    if hidden.len() > MAX_LAYERS - 1 {
        return Err(LimitError::HiddenLayers(hidden.len()));
    }
    match hidden
        .iter()
        .enumerate()
        .find(|&(_, &w)| !(1..=MAX_WIDTH).contains(&w))
    {
        Some((i, &width)) => Err(LimitError::Width {
            layer: i + 1,
            width,
        }),
        None => Ok(()),
    }
}

/// Checks an MLP of `inputs` features, `hidden` layers and `classes` outputs against every
/// kernel limit.
pub fn check_limits(inputs: usize, hidden: &[usize], classes: usize) -> Result<(), LimitError> {
    check_hidden(hidden)?;
    if !(1..=MAX_INPUTS).contains(&inputs) {
        return Err(LimitError::Inputs(inputs));
    }
    if !(2..=MAX_CLASSES).contains(&classes) {
        return Err(LimitError::Classes(classes));
    }
    Ok(())
}

impl Model {
    /// Shapes a zeroed model as a version-1 MLP of `schema`: the header and every layer's
    /// dimensions, once the shape passes [`check_limits`]. Weights, scales and activation
    /// ranges are the caller's to fill.
    pub fn set_shape(
        &mut self,
        schema: FeatureSchema,
        inputs: usize,
        hidden: &[usize],
        classes: usize,
    ) -> Result<(), LimitError> {
        check_limits(inputs, hidden, classes)?;
        let layers = hidden.len() + 1;
        self.header = ModelHeader {
            magic: MODEL_MAGIC,
            format_version: MODEL_FORMAT_VERSION,
            model_version: 1,
            feature_schema: schema as u32,
            num_layers: layers as u32,
            num_inputs: inputs as u32,
            num_classes: classes as u32,
            drop_margin: 0,
        };
        let mut in_dim = inputs;
        for (l, layer) in self.layers[..layers].iter_mut().enumerate() {
            let out_dim = hidden.get(l).copied().unwrap_or(classes);
            layer.in_dim = in_dim as u32;
            layer.out_dim = out_dim as u32;
            in_dim = out_dim;
        }
        Ok(())
    }

    /// Layers in use.
    pub fn active_layers(&self) -> &[LayerParams] {
        let n = (self.header.num_layers as usize).min(MAX_LAYERS);
        &self.layers[..n]
    }

    /// Multiply-accumulates per inference (real dimensions, not the padded ones).
    pub fn macs(&self) -> u64 {
        self.active_layers()
            .iter()
            .map(|l| u64::from(l.in_dim) * u64::from(l.out_dim))
            .sum()
    }

    /// Checks every invariant [`crate::infer::infer`] relies on: dimensions chain and fit,
    /// shifts are in range, biases cannot overflow the accumulator, padding is zero.
    pub fn validate(&self) -> Result<(), ModelError> {
        let h = &self.header;
        if h.magic != MODEL_MAGIC {
            return Err(ModelError::BadMagic(h.magic));
        }
        if h.format_version != MODEL_FORMAT_VERSION {
            return Err(ModelError::BadFormatVersion(h.format_version));
        }
        if FeatureSchema::from_u32(h.feature_schema).is_none() {
            return Err(ModelError::BadSchema(h.feature_schema));
        }
        if h.num_layers == 0 || h.num_layers as usize > MAX_LAYERS {
            return Err(ModelError::Layers(h.num_layers));
        }
        if h.num_inputs == 0 || h.num_inputs as usize > MAX_INPUTS {
            return Err(ModelError::Inputs(h.num_inputs));
        }
        if h.num_classes < 2 || h.num_classes as usize > MAX_CLASSES {
            return Err(ModelError::Classes(h.num_classes));
        }
        if h.drop_margin > MAX_DROP_MARGIN {
            return Err(ModelError::DropMargin(h.drop_margin));
        }
        for i in 0..MAX_INPUTS {
            let s = self.input.shift[i];
            if i < h.num_inputs as usize && !(1..=MAX_SHIFT).contains(&s) {
                return Err(ModelError::Shift {
                    layer: 0,
                    neuron: i as u32,
                    shift: s,
                });
            }
        }
        let mut width = h.num_inputs;
        for (li, l) in self.layers.iter().enumerate() {
            let layer = li as u32;
            if li >= h.num_layers as usize {
                if *l != LayerParams::zeroed() {
                    return Err(ModelError::Padding { layer });
                }
                continue;
            }
            if l.in_dim != width {
                return Err(ModelError::Chain {
                    layer,
                    expected: width,
                    found: l.in_dim,
                });
            }
            if l.out_dim == 0 || l.out_dim as usize > MAX_WIDTH {
                return Err(ModelError::Width {
                    layer,
                    width: l.out_dim,
                });
            }
            if l.act_min > l.act_max {
                return Err(ModelError::Clamp { layer });
            }
            for (p, row) in l.pairs.iter().enumerate() {
                for (i, &pair) in row.iter().enumerate() {
                    let (low, high) = split_pair(pair);
                    if i8::try_from(low).is_err() || i8::try_from(high).is_err() {
                        return Err(ModelError::WeightPair {
                            layer,
                            row_pair: p as u32,
                            input: i as u32,
                        });
                    }
                }
            }
            for o in 0..MAX_WIDTH {
                let live = o < l.out_dim as usize;
                if live {
                    let shift = l.shift[o];
                    if !(1..=MAX_SHIFT).contains(&shift) {
                        return Err(ModelError::Shift {
                            layer,
                            neuron: o as u32,
                            shift,
                        });
                    }
                    if l.bias[o].unsigned_abs() >= BIAS_LIMIT as u32 {
                        return Err(ModelError::Bias {
                            layer,
                            neuron: o as u32,
                        });
                    }
                }
                let first_dead = if live { l.in_dim as usize } else { 0 };
                if (first_dead..MAX_WIDTH).any(|i| l.weight(o, i) != 0) {
                    return Err(ModelError::Padding { layer });
                }
            }
            width = l.out_dim;
        }
        if width != h.num_classes {
            return Err(ModelError::Chain {
                layer: h.num_layers,
                expected: width,
                found: h.num_classes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::string::ToString;

    use bytemuck::Zeroable;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn pairs_split_into_what_was_joined(low in any::<i32>(), high in any::<i32>()) {
            prop_assert_eq!(split_pair(join_pair(low, high)), (low, high));
        }

        /// The arithmetic `infer` relies on: one i64 accumulator of weight pairs holds both
        /// rows' dot products exactly, for int8 weights and inputs and up to MAX_WIDTH inputs.
        #[test]
        fn pair_accumulator_holds_both_dot_products(
            terms in prop::collection::vec((any::<i8>(), any::<i8>(), -128i32..=128), 0..=MAX_WIDTH),
        ) {
            let mut acc = 0i64;
            let (mut low, mut high) = (0i32, 0i32);
            for &(w_low, w_high, x) in &terms {
                acc = acc.wrapping_add(join_pair(w_low.into(), w_high.into()).wrapping_mul(x.into()));
                low += i32::from(w_low) * x;
                high += i32::from(w_high) * x;
            }
            prop_assert_eq!(split_pair(acc), (low, high));
        }

        #[test]
        fn set_weight_changes_that_weight_only(o in 0..MAX_WIDTH, i in 0..MAX_WIDTH, w in any::<i8>()) {
            let mut l = LayerParams::zeroed();
            for (oo, ii, ww) in [(o ^ 1, i, -128), (o, (i + 1) % MAX_WIDTH, 127)] {
                l.set_weight(oo, ii, ww);
            }
            l.set_weight(o, i, w);
            prop_assert_eq!(l.weight(o, i), w);
            prop_assert_eq!(l.weight(o ^ 1, i), -128);
            prop_assert_eq!(l.weight(o, (i + 1) % MAX_WIDTH), 127);
        }
    }

    #[test]
    fn validate_names_a_pair_that_is_not_two_int8_weights() {
        let mut m = Model::zeroed();
        m.header = ModelHeader {
            magic: MODEL_MAGIC,
            format_version: MODEL_FORMAT_VERSION,
            model_version: 0,
            feature_schema: FeatureSchema::Tabular as u32,
            num_layers: 1,
            num_inputs: 2,
            num_classes: 2,
            drop_margin: 0,
        };
        m.input.shift[..2].fill(30);
        let l = &mut m.layers[0];
        (l.in_dim, l.out_dim, l.act_min, l.act_max) = (2, 2, LOGIT_MIN, LOGIT_MAX);
        l.shift[..2].fill(30);
        l.set_weight(1, 1, -128);
        assert_eq!(m.validate(), Ok(()));
        m.layers[0].pairs[0][1] = join_pair(0, 128);
        assert_eq!(
            m.validate(),
            Err(ModelError::WeightPair {
                layer: 0,
                row_pair: 0,
                input: 1
            })
        );
        assert_eq!(
            m.validate().unwrap_err().to_string(),
            "layer 0 rows 0-1 input 1: the weight pair is not two int8 weights"
        );
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data with no padding (checked by the size asserts above).
    unsafe impl aya::Pod for super::Model {}
}
