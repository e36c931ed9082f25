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
/// Bumped whenever the layout of [`Model`] changes.
pub const MODEL_FORMAT_VERSION: u32 = 1;

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
    /// npk's packet feature vector, version 1 (see [`crate::packet`]).
    PacketV1 = 2,
}

impl FeatureSchema {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Tabular),
            2 => Some(Self::PacketV1),
            _ => None,
        }
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
    pub _pad: u32,
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
    /// Row-major `[out][in]`; entries past `in_dim`/`out_dim` are zero.
    pub weights: [[i8; MAX_WIDTH]; MAX_WIDTH],
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
const _: () =
    assert!(core::mem::size_of::<LayerParams>() == 32 + 3 * 4 * MAX_WIDTH + MAX_WIDTH * MAX_WIDTH);
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
            Self::Clamp { layer } => write!(f, "layer {layer}: activation clamp is inverted"),
        }
    }
}

impl core::error::Error for ModelError {}

impl Model {
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
                let row = &l.weights[o];
                let first_dead = if live { l.in_dim as usize } else { 0 };
                if row[first_dead..].iter().any(|&w| w != 0) {
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

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data with no padding (checked by the size asserts above).
    unsafe impl aya::Pod for super::Model {}
}
