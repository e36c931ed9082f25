//! Random but well-formed quantized models: fixtures for `npk verify`, the benchmarks, the
//! inference servers and the tests, where any arithmetic difference between two runs of the same
//! model must show in the logits.

use npk_common::{
    fixed::quantize_multiplier,
    model::{
        FeatureSchema, HIDDEN_MAX, HIDDEN_MIN, LOGIT_MAX, LOGIT_MIN, MAX_CLASSES, MAX_INPUTS,
        MAX_LAYERS, MAX_WIDTH, MODEL_FORMAT_VERSION, MODEL_MAGIC, Model, ModelError,
    },
    packet::NUM_FEATURES,
};

use crate::rng::Rng;

#[derive(Debug, thiserror::Error)]
pub enum ModelSpecError {
    #[error("{0} inputs: a model takes 1..={MAX_INPUTS}")]
    Inputs(usize),
    #[error("{0} classes: a model has 2..={MAX_CLASSES}")]
    Classes(usize),
    #[error("{0} hidden layers: at most {max}", max = MAX_LAYERS - 1)]
    Layers(usize),
    #[error("hidden width {0} outside 1..={MAX_WIDTH}")]
    Width(usize),
    #[error("layer {layer}: scale {scale} has no fixed-point multiplier")]
    Scale { layer: usize, scale: f64 },
    #[error("the random model is invalid: {0}")]
    Invalid(ModelError),
}

/// A tabular model's raw features are fixed point with 16 fractional bits; its input scales
/// are made for values of a few units.
pub const TABULAR_FEATURE_ONE: i32 = 1 << 16;

/// Typical magnitude of each packet feature (see npk_common::packet), for input scales that
/// put ordinary traffic on the int8 codes.
const PACKET_FEATURE_RANGE: [f64; NUM_FEATURES] = [
    6.0, 60.0, 1500.0, 255.0, 80.0, 65535.0, 65535.0, 255.0, 65535.0, 1500.0, 140.0, 1000.0,
    1500.0, 1e7, 100.0, 100.0, 300.0, 400.0, 300.0, 300.0, 300.0, 64.0, 64.0, 300.0, 300.0, 64.0,
];

/// How raw feature `i` becomes a code: about `(raw - offset) * scale`, with the offset drawn
/// from `offset` and the scale jittered by 0.5..1.5.
struct InputSpec {
    offset: (i64, i64),
    scale: f64,
}

/// A random tabular model on `inputs` fixed-point features (see [`TABULAR_FEATURE_ONE`]).
pub fn random_tabular_model(
    inputs: usize,
    hidden: &[usize],
    classes: usize,
    seed: u64,
) -> Result<Box<Model>, ModelSpecError> {
    let one = i64::from(TABULAR_FEATURE_ONE);
    let spec = InputSpec {
        offset: (-one / 4, one / 4),
        scale: 64.0 / one as f64,
    };
    let specs: Vec<InputSpec> = (0..inputs).map(|_| InputSpec { ..spec }).collect();
    random_model(FeatureSchema::Tabular, &specs, hidden, classes, seed)
}

/// A random model on npk's packet features.
pub fn random_packet_model(
    hidden: &[usize],
    classes: usize,
    seed: u64,
) -> Result<Box<Model>, ModelSpecError> {
    let specs: Vec<InputSpec> = PACKET_FEATURE_RANGE
        .iter()
        .map(|&range| InputSpec {
            offset: (0, (range * 0.2) as i64),
            scale: 127.0 / range,
        })
        .collect();
    random_model(npk_common::packet::SCHEMA, &specs, hidden, classes, seed)
}

fn random_model(
    schema: FeatureSchema,
    inputs: &[InputSpec],
    hidden: &[usize],
    classes: usize,
    seed: u64,
) -> Result<Box<Model>, ModelSpecError> {
    if !(1..=MAX_INPUTS).contains(&inputs.len()) {
        return Err(ModelSpecError::Inputs(inputs.len()));
    }
    if !(2..=MAX_CLASSES).contains(&classes) {
        return Err(ModelSpecError::Classes(classes));
    }
    if hidden.len() >= MAX_LAYERS {
        return Err(ModelSpecError::Layers(hidden.len()));
    }
    if let Some(&w) = hidden.iter().find(|&&w| !(1..=MAX_WIDTH).contains(&w)) {
        return Err(ModelSpecError::Width(w));
    }
    let mut rng = Rng::new(seed);
    let mut m: Box<Model> = bytemuck::allocation::zeroed_box();
    m.header.magic = MODEL_MAGIC;
    m.header.format_version = MODEL_FORMAT_VERSION;
    m.header.model_version = 1;
    m.header.feature_schema = schema as u32;
    m.header.num_inputs = inputs.len() as u32;
    m.header.num_classes = classes as u32;
    m.header.num_layers = hidden.len() as u32 + 1;
    let scale = |layer, scale: f64| {
        quantize_multiplier(scale).ok_or(ModelSpecError::Scale { layer, scale })
    };
    for (i, spec) in inputs.iter().enumerate() {
        let (mult, shift) = scale(0, spec.scale * (0.5 + rng.next_f64()))?;
        m.input.offset[i] = rng.range_i64(spec.offset.0, spec.offset.1) as i32;
        m.input.multiplier[i] = mult;
        m.input.shift[i] = shift;
    }
    let mut dims = vec![inputs.len()];
    dims.extend_from_slice(hidden);
    dims.push(classes);
    for l in 0..dims.len() - 1 {
        let (inp, out) = (dims[l], dims[l + 1]);
        let last = l == dims.len() - 2;
        let layer = &mut m.layers[l];
        layer.in_dim = inp as u32;
        layer.out_dim = out as u32;
        // Hidden activations are signed (zero point 0, clamped to int8) rather than ReLU:
        // untrained ReLU units mostly sit at the floor and every input gets the same class.
        (layer.output_zero_point, layer.act_min, layer.act_max) = if last {
            (0, LOGIT_MIN, LOGIT_MAX)
        } else {
            (0, HIDDEN_MIN, HIDDEN_MAX)
        };
        // Accumulators spread about sqrt(in) * 73 * 73; aim at ~40 (int8) or ~4000 (logits).
        let target = if last { 4000.0 } else { 40.0 };
        let real = target / ((inp as f64).sqrt() * 73.0 * 73.0);
        for o in 0..out {
            for i in 0..inp {
                layer.set_weight(o, i, rng.range_i64(-127, 127) as i8);
            }
            layer.bias[o] = rng.range_i64(-2_000, 2_000) as i32;
            let (mult, shift) = scale(l + 1, real * (0.5 + rng.next_f64()))?;
            layer.multiplier[o] = mult;
            layer.shift[o] = shift;
        }
    }
    m.validate().map_err(ModelSpecError::Invalid)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_specs_are_refused() {
        assert!(matches!(
            random_tabular_model(0, &[4], 2, 1),
            Err(ModelSpecError::Inputs(0))
        ));
        assert!(matches!(
            random_tabular_model(4, &[4], 1, 1),
            Err(ModelSpecError::Classes(1))
        ));
        assert!(matches!(
            random_tabular_model(4, &[4, 4, 4, 4], 2, 1),
            Err(ModelSpecError::Layers(4))
        ));
        assert!(matches!(
            random_packet_model(&[0], 2, 1),
            Err(ModelSpecError::Width(0))
        ));
    }
}
