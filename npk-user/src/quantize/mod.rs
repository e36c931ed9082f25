//! Post-training int8 quantization of a float [`Mlp`] into an [`IntModel`]: the kernel's
//! [`npk_common::model::Model`] when it fits ([`IntModel::kernel_model`]), a userspace model of
//! up to [`USER_MAX_WIDTH`] wide layers otherwise.
//!
//! # Scheme
//! Every scale is per channel, and every layer's input scales are folded into its weights, so a
//! feature or neuron with a wide range never costs the others their resolution:
//! - Input feature `j`: raw `i32` = `round(x * 2^f_j)` ([`InputEncoding`]); the kernel turns it
//!   into the int8 code `q_j = clamp(round((raw - offset_j) * r_j), -127, 127)`, which stands for
//!   the standardized value `z_j = q_j * s_j` with `s_j = c_j / 127`, where the clip `c_j` is a
//!   quantile of `|z_j|` over the calibration set (see [`INPUT_CLIP_QUANTILES`]).
//! - Layer `l`, output `o`: with the layer's input scales `s_in[i]`, the real weight row
//!   `W'[o][i] = W[o][i] * s_in[i]` is quantized symmetrically with `s_acc[o] = max|W'[o]| / 127`,
//!   so one accumulator unit is worth `s_acc[o]`; the bias becomes `round(b[o] / s_acc[o])`.
//! - Hidden outputs (after ReLU, so `>= 0`) get one scale per neuron, `max * HIDDEN_HEADROOM /
//!   255` over the calibration set, and the zero point [`HIDDEN_ZERO_POINT`]: real 0 is code
//!   -128.
//! - Logits share one scale (argmax compares them) chosen so that the largest calibrated |logit|
//!   becomes [`LOGIT_TARGET`].
//! - Requantization multiplier of output `o`: `s_acc[o] / s_out[o]`.
//!
//! Predictions always go through the slice functions of [`npk_common::infer`], whose equality
//! with the kernel's inference is proven there.

use npk_common::fixed::quantize_multiplier;
use npk_common::infer::{Activation, Prediction};
use npk_common::model::{
    BIAS_LIMIT, FeatureSchema, HIDDEN_MAX, HIDDEN_MIN, HIDDEN_ZERO_POINT, INPUT_MAX, LOGIT_MAX,
    LOGIT_MIN, MAX_SHIFT, MAX_WIDTH,
};

use rayon::prelude::*;

use crate::dataset::{Dataset, Standardizer};
use crate::train::Mlp;

mod int_model;
pub mod margin;
#[cfg(test)]
mod tests;

pub use int_model::{
    IntInput, IntLayer, IntModel, IntModelError, IntScratch, KernelFitError, ShapeError,
    USER_MAX_WEIGHTS, USER_MAX_WIDTH, check_user_limits,
};

/// The calibrated maximum |logit| maps to this code: 27% headroom below [`LOGIT_MAX`] for
/// unseen inputs, and 16 bits of resolution for the argmax.
pub const LOGIT_TARGET: f64 = 24000.0;
/// A hidden neuron's calibrated maximum maps to 1/HIDDEN_HEADROOM of its code range. Traffic the
/// calibration set never held (a flood faster than any in training) drives neurons past their
/// calibrated maximum even when every input is within its own range; a neuron saturating there
/// flipped whole scenarios. Measured on the protocol's held-out families (`scripts/heldout.sh`,
/// 2 sets x 2 seeds, the float models re-quantized): at 1, int8 and float disagreed on 3,634
/// of 3,636 family-C ICMP-flood rows (every disagreeing row had a saturated hidden neuron, no
/// saturated input) and on 16,028 of 138,960 family-B rows; at 2 on 0 and 294 (136 of 1,968 on
/// another model); at 4 on 0, 355 and 3, with calibration agreement 0.99981 instead of 0.99993.
pub const HIDDEN_HEADROOM: f64 = 4.0;
/// Raw tabular features are scaled so that the calibrated `max|x| * 2^f <= 2^RAW_TARGET_BITS`:
/// 128x headroom below `i32::MAX` for unseen values.
pub const RAW_TARGET_BITS: i32 = 24;
/// Most fractional bits of a raw tabular feature; tinier features are refused.
pub const MAX_FRAC_BITS: u8 = 30;
/// Where input ranges may be clipped, as quantiles of |z| per feature, least clipping first.
/// `quantize` keeps the one whose model agrees best with the float model on the calibration
/// set: clipping buys resolution for the bulk of a feature with outliers, and loses it where
/// the tail matters. Measured on a synthetic set with 0-2% outliers (see the tests): no single
/// quantile suited every outlier rate.
pub const INPUT_CLIP_QUANTILES: [f64; 5] = [1.0, 0.999, 0.99, 0.98, 0.95];
/// `npk train` and `npk eval` warn when the int8 model agrees with the float model (picks the
/// same class) on fewer than this fraction of the rows scored: the kernel then classifies
/// measurably unlike the trained model. Measured on the README's training runs: iris 16,16
/// agrees on 1.0 of its test rows (seeds 1-8), digits 64,32 on 0.994-0.997 (seeds 1-5); 0.98
/// leaves room for a few borderline rows. (On a 30-row test split one disagreeing row warns.)
pub const MIN_AGREEMENT: f64 = 0.98;

/// The warning for an int8/float `agreement` measured on `rows` rows, `None` at or above
/// [`MIN_AGREEMENT`].
pub fn agreement_warning(agreement: f64, rows: usize) -> Option<String> {
    (agreement < MIN_AGREEMENT).then(|| {
        format!(
            "warning: the int8 model agrees with the float model on only {:.1}% of {rows} rows \
             (below {:.0}%): the kernel will classify unlike the trained model; features with \
             extreme ranges or outliers quantize poorly (see the input scales in `npk inspect`)",
            agreement * 100.0,
            MIN_AGREEMENT * 100.0
        )
    })
}

/// At most this many calibration rows (every k-th) pick the input clip: bounds the memory
/// for quantiles and the time for the trial inferences.
const CLIP_SAMPLE_ROWS: usize = 1 << 16;
/// And at most this many multiply-accumulates per trial over the sample: every model the kernel
/// holds (at most 51,200 MACs) keeps its 65,536 rows; Fashion-MNIST's 784-256-128-10 (234,752)
/// gets 18,295, which cut `npk train --out`'s five trials from about 40 s to a few.
const CLIP_SAMPLE_MACS: u64 = 1 << 32;
/// Largest |bias| of a layer of `in_dim` inputs before the hidden zero point is folded in: the
/// fold adds at most `128 * 127 * in_dim`, kept below [`BIAS_LIMIT`]. Layers the kernel holds
/// keep the room of its widest (`2^21`), as before wide models.
fn bias_q_max(in_dim: usize) -> f64 {
    (BIAS_LIMIT - (1 << 14) * in_dim.max(MAX_WIDTH) as i32) as f64
}

/// How float features become the raw `i32` values the kernel reads: `round(x * 2^frac_bits[j])`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputEncoding {
    pub frac_bits: Vec<u8>,
}

impl InputEncoding {
    /// Fixed-point encoding of `row`; values beyond `i32` saturate and NaN becomes 0.
    ///
    /// # Panics
    /// If `row` and `raw` are not both as long as `frac_bits`.
    pub fn encode(&self, row: &[f32], raw: &mut [i32]) {
        assert!(
            row.len() == self.frac_bits.len() && raw.len() == self.frac_bits.len(),
            "encode: {} features and {} outputs for a model of {} inputs",
            row.len(),
            raw.len(),
            self.frac_bits.len()
        );
        for ((r, &x), &f) in raw.iter_mut().zip(row).zip(&self.frac_bits) {
            // `as` saturates and maps NaN to 0.
            *r = (f64::from(x) * f64::from(f).exp2()).round() as i32;
        }
    }
}

/// The real-valued scales behind the integer model: what one code or accumulator unit is worth.
/// Kept for `npk inspect`, for dequantizing logits, and for error bounds in tests.
#[derive(Clone, Debug, PartialEq)]
pub struct Scales {
    /// Per input feature: the standardized value of one input code.
    pub input: Vec<f64>,
    pub layers: Vec<LayerScales>,
}

/// # Shapes
/// Both vectors have one entry per output neuron of the layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerScales {
    /// The real value of one accumulator unit (also the quantized weight row's scale, since the
    /// layer's input scales are folded into its weights).
    pub acc: Vec<f64>,
    /// The real value of one output code step; equal across the output layer.
    pub output: Vec<f64>,
}

impl Scales {
    /// The real value of one logit unit.
    pub fn logit(&self) -> f64 {
        self.layers
            .last()
            .and_then(|l| l.output.first())
            .copied()
            .unwrap_or(1.0)
    }

    /// The real scales of layer `layer`'s inputs (feature scales for layer 0, the previous
    /// layer's output scales after).
    pub fn layer_input(&self, layer: usize) -> &[f64] {
        match layer {
            0 => &self.input,
            l => &self.layers[l - 1].output,
        }
    }
}

/// How the input clip was chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CalibrationInfo {
    /// The quantile of |z| each feature's range was clipped at (1 = the max).
    pub input_clip: f64,
    /// Fraction of (sampled) calibration rows where the integer and float models agree.
    pub agreement: f64,
}

/// A quantized model with what it takes to feed it float rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    pub model: IntModel,
    pub encoding: InputEncoding,
    pub scales: Scales,
    pub calibration: CalibrationInfo,
}

impl Quantized {
    /// The raw integer features the kernel would read for `row` (unstandardized).
    ///
    /// # Panics
    /// If `row` or `raw` is not as long as the model's input.
    pub fn encode(&self, row: &[f32], raw: &mut [i32]) {
        self.encoding.encode(row, raw);
    }

    /// Runs the integer model on `row` (unstandardized); the logits stay in `scratch`.
    ///
    /// # Panics
    /// If `row` is not as long as the model's input.
    pub fn infer(&self, row: &[f32], scratch: &mut IntScratch) -> Prediction {
        scratch.features.resize(self.encoding.frac_bits.len(), 0);
        self.encode(row, &mut scratch.features);
        self.model.predict(scratch)
    }

    /// The class the integer model (the kernel's arithmetic) picks for `row` (unstandardized).
    ///
    /// # Panics
    /// If `row` is not as long as the model's input.
    pub fn predict(&self, row: &[f32]) -> usize {
        self.infer(row, &mut IntScratch::default()).class as usize
    }

    /// The integer model's logits for `row`, dequantized to the float model's units.
    ///
    /// # Panics
    /// If `row` is not as long as the model's input.
    pub fn logits(&self, row: &[f32]) -> Vec<f64> {
        let mut scratch = IntScratch::default();
        self.infer(row, &mut scratch);
        let scale = self.scales.logit();
        scratch
            .logits(&self.model)
            .iter()
            .map(|&c| f64::from(c) * scale)
            .collect()
    }
}

/// Why a float model cannot be quantized. Layers and neurons count from 0.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum QuantizeError {
    #[error("the MLP has no layers")]
    NoLayers,
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("layer {layer} is {out_dim}x{in_dim} but holds {weights} weights and {biases} biases")]
    LayerShape {
        layer: usize,
        in_dim: usize,
        out_dim: usize,
        weights: usize,
        biases: usize,
    },
    #[error("layer {layer} takes {found} inputs but the previous layer gives {expected}")]
    Chain {
        layer: usize,
        expected: usize,
        found: usize,
    },
    #[error("the standardizer has {mean} means and {std} deviations for {expected} features")]
    StandardizerShape {
        expected: usize,
        mean: usize,
        std: usize,
    },
    #[error(
        "feature {feature} ({name}): standardizer mean {mean} / std {std} must be finite, std > 0"
    )]
    StandardizerValue {
        feature: usize,
        name: String,
        mean: f32,
        std: f32,
    },
    #[error("the calibration set has {found} features, the MLP takes {expected}")]
    CalibrationShape { expected: usize, found: usize },
    #[error("the calibration set holds {values} values for {rows} rows of {features} features")]
    CalibrationSize {
        values: usize,
        rows: usize,
        features: usize,
    },
    #[error("the calibration set is empty")]
    EmptyCalibration,
    #[error("layer {layer} neuron {neuron}: weight or bias is not finite")]
    NonFiniteWeight { layer: usize, neuron: usize },
    #[error("calibration row {row}, feature {feature} ({name}): value is not finite")]
    NonFiniteFeature {
        row: usize,
        feature: usize,
        name: String,
    },
    #[error(
        "feature {feature} ({name}): max |x| = {max_abs:e} does not fit a raw i32 \
         with {frac_bits} fractional bits"
    )]
    FeatureRange {
        feature: usize,
        name: String,
        max_abs: f64,
        frac_bits: u8,
    },
    #[error(
        "feature {feature} ({name}): input multiplier {multiplier:e} is not representable \
         (must be below 2^30: the feature is too small for {MAX_FRAC_BITS} fractional bits)"
    )]
    InputMultiplier {
        feature: usize,
        name: String,
        multiplier: f64,
    },
    #[error(
        "layer {layer} neuron {neuron}: requantization multiplier {multiplier:e} is not \
         representable (must be finite and below 2^30)"
    )]
    Multiplier {
        layer: usize,
        neuron: usize,
        multiplier: f64,
    },
    #[error("the quantized model fails validation: {0}")]
    Invalid(IntModelError),
}

/// Quantizes `mlp` (which reads features standardized by `std`) for the kernel, calibrating
/// activation ranges on `calibration` (the training split, unstandardized).
///
/// Input ranges are clipped at each of [`INPUT_CLIP_QUANTILES`] in turn; the model whose
/// predictions agree most often with the float model's on the calibration set wins.
pub fn quantize(
    mlp: &Mlp,
    std: &Standardizer,
    calibration: &Dataset,
    schema: FeatureSchema,
) -> Result<Quantized, QuantizeError> {
    check_shapes(mlp, std, calibration)?;
    let stats = Calibration::run(mlp, std, calibration)?;
    let mut best: Option<Quantized> = None;
    for &clip in &INPUT_CLIP_QUANTILES {
        let mut q = build(mlp, std, calibration, schema, &stats, clip)?;
        // Rows in parallel, a scratch per task: the trials of a wide model are most of its
        // quantization time.
        let agree = stats
            .sample
            .par_iter()
            .zip(&stats.float_class)
            .map_init(IntScratch::default, |scratch, (&r, &c)| {
                usize::from(q.infer(calibration.row(r), scratch).class as usize == c)
            })
            .sum::<usize>();
        q.calibration.agreement = agree as f64 / stats.sample.len() as f64;
        if best
            .as_ref()
            .is_none_or(|b| q.calibration.agreement > b.calibration.agreement)
        {
            let perfect = q.calibration.agreement == 1.0;
            best = Some(q);
            if perfect {
                break;
            }
        }
    }
    Ok(best.expect("INPUT_CLIP_QUANTILES is not empty"))
}

/// One quantization of `mlp` with input ranges clipped at the `clip` quantile of |z|.
fn build(
    mlp: &Mlp,
    std: &Standardizer,
    calibration: &Dataset,
    schema: FeatureSchema,
    stats: &Calibration,
    clip: f64,
) -> Result<Quantized, QuantizeError> {
    let name = |j: usize| {
        calibration
            .feature_names
            .get(j)
            .cloned()
            .unwrap_or_default()
    };
    let n_in = mlp.layers[0].in_dim;
    let n_layers = mlp.layers.len();

    let hidden: Vec<usize> = mlp.layers[..n_layers - 1]
        .iter()
        .map(|d| d.out_dim)
        .collect();
    let mut model = IntModel::shaped(schema, n_in, &hidden, mlp.layers[n_layers - 1].out_dim)?;

    let mut frac_bits = Vec::with_capacity(n_in);
    let mut input_scales = Vec::with_capacity(n_in);
    // The kernel subtracts an integer offset; what it differs from the mean, in standardized
    // units, is folded into the first layer's biases below.
    let mut offset_shift = Vec::with_capacity(n_in);
    for j in 0..n_in {
        let max_x = stats.max_abs_x[j];
        let f = match schema {
            FeatureSchema::PacketV1
            | FeatureSchema::PacketV2
            | FeatureSchema::PacketV3
            | FeatureSchema::PacketV4
            | FeatureSchema::PacketV5
            | FeatureSchema::PacketV6 => 0,
            FeatureSchema::Tabular => frac_bits_for(max_x),
        };
        if max_x * f64::from(f).exp2() >= crate::dataset::FEATURE_LIMIT {
            return Err(QuantizeError::FeatureRange {
                feature: j,
                name: name(j),
                max_abs: max_x,
                frac_bits: f,
            });
        }
        // A feature constant over the calibration set carries nothing there; a scale of 1
        // would let its weights dominate their rows' weight scales, so it gets that of |z| = 1.
        let range = stats.abs_z_quantile(j, clip);
        let s = if range > 0.0 { range } else { 1.0 } / f64::from(INPUT_MAX);
        let pow = f64::from(f).exp2();
        let r = 1.0 / (f64::from(std.std[j]) * pow * s);
        let (m, sh) = multiplier_pair(r).ok_or_else(|| QuantizeError::InputMultiplier {
            feature: j,
            name: name(j),
            multiplier: r,
        })?;
        let offset = (f64::from(std.mean[j]) * pow).round();
        model.input.offset[j] = offset as i32;
        offset_shift.push((f64::from(std.mean[j]) * pow - offset) / (f64::from(std.std[j]) * pow));
        model.input.multiplier[j] = m;
        model.input.shift[j] = sh;
        frac_bits.push(f);
        input_scales.push(s);
    }

    let logit_max = stats
        .max_out
        .last()
        .map_or(0.0, |v| v.iter().fold(0.0, |a: f64, &b| a.max(b)));
    let logit_scale = if logit_max > 0.0 {
        logit_max / LOGIT_TARGET
    } else {
        1.0
    };

    let mut layer_scales: Vec<LayerScales> = Vec::with_capacity(n_layers);
    for (l, dense) in mlp.layers.iter().enumerate() {
        let hidden = l + 1 < n_layers;
        let in_scales = if l == 0 {
            &input_scales
        } else {
            &layer_scales[l - 1].output
        };
        let zp_in = if l == 0 { 0 } else { HIDDEN_ZERO_POINT };
        let p = &mut model.layers[l];
        let (zero_point, min, max) = if hidden {
            (HIDDEN_ZERO_POINT, HIDDEN_MIN, HIDDEN_MAX)
        } else {
            (0, LOGIT_MIN, LOGIT_MAX)
        };
        p.activation = Activation {
            zero_point,
            min,
            max,
        };
        let row = |o: usize| &dense.weights[o * dense.in_dim..(o + 1) * dense.in_dim];
        // The kernel's first layer sees z + offset_shift: W (z + d) + b' = W z + b needs
        // b' = b - W d.
        let float_bias: Vec<f64> = (0..dense.out_dim)
            .map(|o| {
                let b = f64::from(dense.bias[o]);
                if l == 0 {
                    b - row(o)
                        .iter()
                        .zip(&offset_shift)
                        .map(|(&w, &d)| f64::from(w) * d)
                        .sum::<f64>()
                } else {
                    b
                }
            })
            .collect();
        // A bias too large for BIAS_Q_MAX accumulator units coarsens the row's scale instead:
        // the row's weights are then negligible next to it anyway.
        let mut acc_scales: Vec<f64> = (0..dense.out_dim)
            .map(|o| {
                let max_w = row(o)
                    .iter()
                    .zip(in_scales)
                    .fold(0.0, |a: f64, (&w, &s)| a.max((f64::from(w) * s).abs()));
                (max_w / 127.0).max(float_bias[o].abs() / bias_q_max(dense.in_dim))
            })
            .collect();
        // A neuron with zero weights and bias outputs 0 whatever its scale. The output layer
        // gives it multiplier 1; a hidden one gets the layer's smallest scale, since its output
        // scale multiplies its column in the next layer and must not dominate that row's scale.
        let smallest = acc_scales
            .iter()
            .copied()
            .filter(|&s| s > 0.0)
            .fold(f64::INFINITY, f64::min);
        let zero_row_scale = match (hidden, smallest.is_finite()) {
            (false, _) => logit_scale,
            (true, true) => smallest,
            (true, false) => 1.0,
        };
        let mut out_scales = Vec::with_capacity(dense.out_dim);
        for (o, s_acc) in acc_scales.iter_mut().enumerate() {
            if *s_acc == 0.0 {
                *s_acc = zero_row_scale;
            }
            let s_acc = *s_acc;
            let bias = float_bias[o];
            let s_out = if hidden {
                // Output codes finer than one accumulator unit carry no information, and a
                // nearly dead neuron's tiny max would otherwise need a multiplier beyond 2^30.
                (stats.max_out[l][o] * HIDDEN_HEADROOM / 255.0).max(s_acc)
            } else {
                logit_scale
            };
            let mut sum_w: i32 = 0;
            let weights = &mut p.weights[o * dense.in_dim..(o + 1) * dense.in_dim];
            for ((q, &w), &s) in weights.iter_mut().zip(row(o)).zip(in_scales) {
                *q = (f64::from(w) * s / s_acc).round().clamp(-127.0, 127.0) as i8;
                sum_w += i32::from(*q);
            }
            p.bias[o] = (bias / s_acc).round() as i32 - zp_in * sum_w;
            let r = s_acc / s_out;
            let (m, sh) = multiplier_pair(r).ok_or(QuantizeError::Multiplier {
                layer: l,
                neuron: o,
                multiplier: r,
            })?;
            p.multiplier[o] = m;
            p.shift[o] = sh;
            out_scales.push(s_out);
        }
        layer_scales.push(LayerScales {
            acc: acc_scales,
            output: out_scales,
        });
    }

    model.validate().map_err(QuantizeError::Invalid)?;
    Ok(Quantized {
        model,
        encoding: InputEncoding { frac_bits },
        scales: Scales {
            input: input_scales,
            layers: layer_scales,
        },
        calibration: CalibrationInfo {
            input_clip: clip,
            agreement: 0.0,
        },
    })
}

/// Fractional bits for a tabular feature whose calibrated max |x| is `max_abs`: as many as
/// keep `max_abs * 2^f <= 2^RAW_TARGET_BITS`, within `0..=MAX_FRAC_BITS`.
fn frac_bits_for(max_abs: f64) -> u8 {
    if max_abs <= 0.0 {
        // All zero in calibration: keep unseen values up to 1 within the target.
        return RAW_TARGET_BITS as u8;
    }
    let f = (f64::from(RAW_TARGET_BITS) - max_abs.log2()).floor();
    f.clamp(0.0, f64::from(MAX_FRAC_BITS)) as u8
}

/// [`quantize_multiplier`], except that multipliers below its range (`r < 2^-32`) become
/// exactly `2^-32`: every accumulator and centered input is below `2^31` in magnitude, so both
/// round to 0 and the result is unchanged. `None` when `r` is too large or not finite.
fn multiplier_pair(r: f64) -> Option<(i32, i32)> {
    match quantize_multiplier(r) {
        Some(pair) => Some(pair),
        None if r.is_finite() && r >= 0.0 && r < 2f64.powi(-32) => Some((1 << 30, MAX_SHIFT)),
        None => None,
    }
}

fn check_shapes(mlp: &Mlp, std: &Standardizer, cal: &Dataset) -> Result<(), QuantizeError> {
    let Some(last) = mlp.layers.last() else {
        return Err(QuantizeError::NoLayers);
    };
    let hidden: Vec<usize> = mlp.layers[..mlp.layers.len() - 1]
        .iter()
        .map(|d| d.out_dim)
        .collect();
    check_user_limits(mlp.layers[0].in_dim, &hidden, last.out_dim)?;
    let mut width = mlp.layers[0].in_dim;
    for (layer, d) in mlp.layers.iter().enumerate() {
        if d.in_dim != width {
            return Err(QuantizeError::Chain {
                layer,
                expected: width,
                found: d.in_dim,
            });
        }
        if d.weights.len() != d.in_dim * d.out_dim || d.bias.len() != d.out_dim {
            return Err(QuantizeError::LayerShape {
                layer,
                in_dim: d.in_dim,
                out_dim: d.out_dim,
                weights: d.weights.len(),
                biases: d.bias.len(),
            });
        }
        for o in 0..d.out_dim {
            let row = &d.weights[o * d.in_dim..(o + 1) * d.in_dim];
            if !d.bias[o].is_finite() || row.iter().any(|w| !w.is_finite()) {
                return Err(QuantizeError::NonFiniteWeight { layer, neuron: o });
            }
        }
        width = d.out_dim;
    }
    let n_in = mlp.layers[0].in_dim;
    if std.mean.len() != n_in || std.std.len() != n_in {
        return Err(QuantizeError::StandardizerShape {
            expected: n_in,
            mean: std.mean.len(),
            std: std.std.len(),
        });
    }
    for (j, (&mean, &sd)) in std.mean.iter().zip(&std.std).enumerate() {
        if !mean.is_finite() || !sd.is_finite() || sd <= 0.0 {
            let name = cal.feature_names.get(j).cloned().unwrap_or_default();
            return Err(QuantizeError::StandardizerValue {
                feature: j,
                name,
                mean,
                std: sd,
            });
        }
    }
    if cal.num_features != n_in {
        return Err(QuantizeError::CalibrationShape {
            expected: n_in,
            found: cal.num_features,
        });
    }
    if cal.features.len() != cal.len() * cal.num_features {
        return Err(QuantizeError::CalibrationSize {
            values: cal.features.len(),
            rows: cal.len(),
            features: cal.num_features,
        });
    }
    if cal.is_empty() {
        return Err(QuantizeError::EmptyCalibration);
    }
    Ok(())
}

/// What running the float model over the calibration set showed.
struct Calibration {
    /// Per feature: max |x| (raw, unstandardized).
    max_abs_x: Vec<f64>,
    /// Per feature: max |z| (standardized).
    max_abs_z: Vec<f64>,
    /// Per feature: |z| over the sampled rows, sorted.
    sample_abs_z: Vec<Vec<f32>>,
    /// Per layer, per neuron: max output (after ReLU for hidden layers, |logit| for the last).
    max_out: Vec<Vec<f64>>,
    /// Rows (every k-th, at most [`CLIP_SAMPLE_ROWS`]) that pick the input clip.
    sample: Vec<usize>,
    /// The float model's class for each sampled row.
    float_class: Vec<usize>,
}

impl Calibration {
    fn run(mlp: &Mlp, std: &Standardizer, cal: &Dataset) -> Result<Self, QuantizeError> {
        let n_in = cal.num_features;
        let macs: u64 = mlp
            .layers
            .iter()
            .map(|d| (d.in_dim * d.out_dim) as u64)
            .sum();
        let sample_rows = CLIP_SAMPLE_ROWS.min((CLIP_SAMPLE_MACS / macs.max(1)) as usize);
        let stride = cal.len().div_ceil(sample_rows.max(1));
        let mut stats = Calibration {
            max_abs_x: vec![0.0; n_in],
            max_abs_z: vec![0.0; n_in],
            sample_abs_z: vec![Vec::new(); n_in],
            max_out: mlp.layers.iter().map(|d| vec![0.0; d.out_dim]).collect(),
            sample: Vec::new(),
            float_class: Vec::new(),
        };
        // The features' ranges, in row order.
        for r in 0..cal.len() {
            let sampled = r % stride == 0;
            for (j, &x) in cal.row(r).iter().enumerate() {
                if !x.is_finite() {
                    let name = cal.feature_names.get(j).cloned().unwrap_or_default();
                    return Err(QuantizeError::NonFiniteFeature {
                        row: r,
                        feature: j,
                        name,
                    });
                }
                let z = standardize(std, j, x);
                stats.max_abs_x[j] = stats.max_abs_x[j].max(f64::from(x).abs());
                stats.max_abs_z[j] = stats.max_abs_z[j].max(z.abs());
                if sampled {
                    stats.sample_abs_z[j].push(z.abs() as f32);
                }
            }
        }
        // The float model's activation maxima and its class on the sampled rows: rows in
        // parallel (most of a wide model's calibration), merged by max and by row.
        let (max_out, classes) = (0..cal.len())
            .into_par_iter()
            .fold(
                || (stats.max_out.clone(), Vec::new(), Vec::new(), Vec::new()),
                |(mut max_out, mut classes, mut z, mut acts), r| {
                    z.clear();
                    z.extend(
                        cal.row(r)
                            .iter()
                            .enumerate()
                            .map(|(j, &x)| standardize(std, j, x)),
                    );
                    forward(mlp, &z, &mut acts);
                    for (max, act) in max_out.iter_mut().zip(&acts) {
                        for (m, &a) in max.iter_mut().zip(act) {
                            *m = f64::max(*m, a.abs());
                        }
                    }
                    if r % stride == 0 {
                        let logits = &acts[acts.len() - 1];
                        let class = (1..logits.len())
                            .fold(0, |b, c| if logits[c] > logits[b] { c } else { b });
                        classes.push((r, class));
                    }
                    (max_out, classes, z, acts)
                },
            )
            .map(|(max_out, classes, _, _)| (max_out, classes))
            .reduce(
                || (stats.max_out.clone(), Vec::new()),
                |(mut max_a, mut classes_a), (max_b, classes_b)| {
                    for (a, b) in max_a.iter_mut().zip(&max_b) {
                        for (m, &v) in a.iter_mut().zip(b) {
                            *m = f64::max(*m, v);
                        }
                    }
                    classes_a.extend(classes_b);
                    (max_a, classes_a)
                },
            );
        let mut classes = classes;
        classes.sort_unstable();
        stats.max_out = max_out;
        (stats.sample, stats.float_class) = classes.into_iter().unzip();
        for col in &mut stats.sample_abs_z {
            col.sort_by(f32::total_cmp);
        }
        Ok(stats)
    }

    /// The `q` quantile of feature `j`'s |z| (the exact max for `q = 1`).
    fn abs_z_quantile(&self, j: usize, q: f64) -> f64 {
        let col = &self.sample_abs_z[j];
        if q >= 1.0 || col.is_empty() {
            return self.max_abs_z[j];
        }
        let k = ((q * col.len() as f64).ceil() as usize).clamp(1, col.len()) - 1;
        f64::from(col[k])
    }
}

pub(crate) fn standardize(std: &Standardizer, j: usize, x: f32) -> f64 {
    (f64::from(x) - f64::from(std.mean[j])) / f64::from(std.std[j])
}

/// The float model in f64 on a standardized row: `acts[l]` is layer `l`'s output (after ReLU
/// for hidden layers; the last holds the logits).
pub(crate) fn forward(mlp: &Mlp, z: &[f64], acts: &mut Vec<Vec<f64>>) {
    acts.resize(mlp.layers.len(), Vec::new());
    for (l, d) in mlp.layers.iter().enumerate() {
        let (done, rest) = acts.split_at_mut(l);
        let input: &[f64] = if l == 0 { z } else { &done[l - 1] };
        let out = &mut rest[0];
        out.clear();
        // ROWS outputs at a time, each summed in input order from -0.0 as `Iterator::sum`
        // does (the same bits as one row at a time): independent sums that the CPU overlaps,
        // where one sum waits on the latency of every add (most of a wide model's calibration).
        const ROWS: usize = 8;
        for first in (0..d.out_dim).step_by(ROWS) {
            let rows = ROWS.min(d.out_dim - first);
            let mut sums = [-0.0f64; ROWS];
            for (i, &x) in input.iter().enumerate().take(d.in_dim) {
                for (k, sum) in sums[..rows].iter_mut().enumerate() {
                    *sum += f64::from(d.weights[(first + k) * d.in_dim + i]) * x;
                }
            }
            for (k, &sum) in sums[..rows].iter().enumerate() {
                let y = sum + f64::from(d.bias[first + k]);
                out.push(if l + 1 < mlp.layers.len() {
                    y.max(0.0)
                } else {
                    y
                });
            }
        }
    }
}
