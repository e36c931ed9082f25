//! The model a server answers with and the features a client asks about.
//!
//! Servers and clients agree on the model by loading the same model file, or by building the
//! same random tabular model from the same arguments (inputs, hidden widths, classes, seed).

use npk_common::model::Model;

pub use crate::fixtures::{ModelSpecError, random_tabular_model};
use crate::rng::Rng;

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
}
