//! The model a server answers with and the features a client asks about.
//!
//! Servers and clients agree on the model by loading the same model file, or by building the
//! same random tabular model from the same arguments (inputs, hidden widths, classes, seed).

use npk_common::{
    fixed::quantize_multiplier,
    model::{
        FeatureSchema, HIDDEN_MAX, HIDDEN_MIN, LOGIT_MAX, LOGIT_MIN, MAX_INPUTS, MAX_LAYERS,
        MAX_WIDTH, MODEL_FORMAT_VERSION, MODEL_MAGIC, Model,
    },
};

use crate::rng::Rng;

/// The random model's raw features are fixed point with 16 fractional bits, its input scales
/// made for values of a few units.
const FEATURE_ONE: i32 = 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum ModelSpecError {
    #[error("{0} inputs: a model takes 1..={MAX_INPUTS}")]
    Inputs(usize),
    #[error("{0} classes: a model has 2..={max}", max = npk_common::model::MAX_CLASSES)]
    Classes(usize),
    #[error("{0} hidden layers: at most {max}", max = MAX_LAYERS - 1)]
    Layers(usize),
    #[error("hidden width {0} outside 1..={MAX_WIDTH}")]
    Width(usize),
    #[error("layer {layer}: scale {scale} has no fixed-point multiplier")]
    Scale { layer: usize, scale: f64 },
    #[error("the random model is invalid: {0}")]
    Invalid(npk_common::model::ModelError),
}

/// A random but well-formed tabular model: int8 weights, scales that spread activations over
/// the int8 range so that any arithmetic difference between two servers shows in the logits.
pub fn random_tabular_model(
    inputs: usize,
    hidden: &[usize],
    classes: usize,
    seed: u64,
) -> Result<Box<Model>, ModelSpecError> {
    if !(1..=MAX_INPUTS).contains(&inputs) {
        return Err(ModelSpecError::Inputs(inputs));
    }
    if !(2..=npk_common::model::MAX_CLASSES).contains(&classes) {
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
    m.header.feature_schema = FeatureSchema::Tabular as u32;
    m.header.num_inputs = inputs as u32;
    m.header.num_classes = classes as u32;
    m.header.num_layers = hidden.len() as u32 + 1;
    let scale = |layer, scale: f64| {
        quantize_multiplier(scale).ok_or(ModelSpecError::Scale { layer, scale })
    };
    for i in 0..inputs {
        // Features of about +-2 units map onto +-127.
        let (mult, shift) = scale(0, 64.0 / FEATURE_ONE as f64 * (0.5 + rng.unit_f64()))?;
        m.input.offset[i] = rng.range_i64(-(FEATURE_ONE as i64) / 4, FEATURE_ONE as i64 / 4) as i32;
        m.input.multiplier[i] = mult;
        m.input.shift[i] = shift;
    }
    let mut dims = vec![inputs];
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
                layer.weights[o][i] = rng.range_i64(-127, 127) as i8;
            }
            layer.bias[o] = rng.range_i64(-2_000, 2_000) as i32;
            let (mult, shift) = scale(l + 1, real * (0.5 + rng.unit_f64()))?;
            layer.multiplier[o] = mult;
            layer.shift[o] = shift;
        }
    }
    m.validate().map_err(ModelSpecError::Invalid)?;
    Ok(m)
}

/// Random features for `model`, spread over its input codes: each feature is the raw value
/// that quantizes to a code drawn from -160..=160 (so some clip), and 1 in 32 is an i32
/// extreme, so that the clamping paths are exercised too. Works for any model, random or
/// trained, whatever its fixed-point encoding.
pub fn random_features(rng: &mut Rng, model: &Model) -> Vec<i32> {
    let q = &model.input;
    (0..model.header.num_inputs as usize)
        .map(|i| match rng.below(64) {
            0 => i32::MIN,
            1 => i32::MAX,
            _ => {
                // code = (raw - offset) * multiplier / 2^shift
                let raw_per_code = (q.shift[i] as f64).exp2() / f64::from(q.multiplier[i].max(1));
                let code = rng.range_i64(-160, 160) as f64;
                (f64::from(q.offset[i]) + code * raw_per_code).round() as i32
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use npk_common::infer::{PlainLoop, Scratch, infer};

    #[test]
    fn random_models_are_valid_and_use_every_class() {
        for (inputs, hidden, classes) in [(4, vec![16, 16], 3), (64, vec![64, 32], 10)] {
            let m = random_tabular_model(inputs, &hidden, classes, 1).unwrap();
            let mut rng = Rng::new(2);
            let mut seen = vec![false; classes];
            let mut scratch = Scratch::new();
            for _ in 0..4000 {
                let f = random_features(&mut rng, &m);
                scratch.features[..inputs].copy_from_slice(&f);
                seen[infer(&m, &mut scratch, &mut PlainLoop) as usize] = true;
            }
            assert!(seen.iter().all(|&s| s), "classes seen: {seen:?}");
        }
    }

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
            random_tabular_model(4, &[0], 2, 1),
            Err(ModelSpecError::Width(0))
        ));
    }
}
