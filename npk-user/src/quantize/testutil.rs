//! Test fixtures for quantization and model files: datasets (the repository's CSV
//! files and a synthetic one with raw features of very different ranges), a standardizer fit
//! and a small SGD trainer so that tests get realistic float models.

use std::path::Path;

use crate::dataset::{Dataset, Standardizer};
use crate::train::{Dense, Mlp};

pub(crate) use crate::rng::Rng;

/// Reads one of the repository's CSV files (`data/NAME`).
pub(crate) fn load_csv(name: &str) -> Dataset {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name);
    Dataset::load_csv(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Raw, unscaled features of very different ranges, labelled by a rule a small MLP can learn:
/// `ratio` in 0..1, `bytes` in 0..1e6, `latency_ms` ~ N(50, 10) with 2% outliers at 20-100x,
/// `count` an integer in 0..100, `tiny` ~ 1e-3 * N(1, 1) (pure noise).
/// Class 0: `ratio + bytes / 1e6 < 0.8`; else class 1 when `latency_ms > 52`, else class 2.
pub(crate) fn mixed_ranges(rng: &mut Rng, rows: usize, outliers: f64) -> Dataset {
    let names = ["ratio", "bytes", "latency_ms", "count", "tiny"];
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..rows {
        let ratio = rng.next_f64();
        let bytes = rng.next_f64() * 1e6;
        let mut latency = 50.0 + 10.0 * rng.normal();
        if rng.next_f64() < outliers {
            latency *= 20.0 + 80.0 * rng.next_f64();
        }
        let count = rng.below(100) as f64;
        let tiny = 1e-3 * (1.0 + rng.normal());
        let label = if ratio + bytes / 1e6 < 0.8 {
            0
        } else if latency > 52.0 {
            1
        } else {
            2
        };
        features.extend([ratio, bytes, latency, count, tiny].map(|v| v as f32));
        labels.push(label);
    }
    Dataset {
        feature_names: names.map(String::from).to_vec(),
        features,
        labels,
        num_features: names.len(),
        num_classes: 3,
    }
}

/// Splits off every `k`-th row (after a seeded shuffle) as the test set.
pub(crate) fn split(d: &Dataset, k: usize, rng: &mut Rng) -> (Dataset, Dataset) {
    let mut order: Vec<usize> = (0..d.len()).collect();
    rng.shuffle(&mut order);
    let pick = |keep: &dyn Fn(usize) -> bool| {
        let rows: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(n, _)| keep(*n))
            .map(|(_, &r)| r)
            .collect();
        Dataset {
            feature_names: d.feature_names.clone(),
            features: rows
                .iter()
                .flat_map(|&r| d.row(r).iter().copied())
                .collect(),
            labels: rows.iter().map(|&r| d.labels[r]).collect(),
            num_features: d.num_features,
            num_classes: d.num_classes,
        }
    };
    (pick(&|n| n % k != 0), pick(&|n| n % k == 0))
}

/// He-initialized MLP with layer widths `dims` (inputs first, classes last).
pub(crate) fn random_mlp(rng: &mut Rng, dims: &[usize]) -> Mlp {
    let layers = dims
        .windows(2)
        .map(|w| {
            let (in_dim, out_dim) = (w[0], w[1]);
            let a = (2.0 / in_dim as f64).sqrt();
            Dense {
                in_dim,
                out_dim,
                weights: (0..in_dim * out_dim)
                    .map(|_| (a * rng.normal()) as f32)
                    .collect(),
                bias: (0..out_dim).map(|_| (0.1 * rng.normal()) as f32).collect(),
            }
        })
        .collect();
    Mlp { layers }
}

pub(crate) fn standardized(std: &Standardizer, row: &[f32]) -> Vec<f64> {
    (0..row.len())
        .map(|j| super::standardize(std, j, row[j]))
        .collect()
}

/// The float model's logits for an unstandardized row.
pub(crate) fn float_logits(mlp: &Mlp, std: &Standardizer, row: &[f32]) -> Vec<f64> {
    let mut acts = Vec::new();
    super::forward(mlp, &standardized(std, row), &mut acts);
    acts.pop().unwrap()
}

pub(crate) fn argmax(v: &[f64]) -> usize {
    (1..v.len()).fold(0, |best, c| if v[c] > v[best] { c } else { best })
}

pub(crate) fn accuracy(d: &Dataset, predict: impl Fn(&[f32]) -> usize) -> f64 {
    let right = (0..d.len())
        .filter(|&r| predict(d.row(r)) == d.labels[r] as usize)
        .count();
    right as f64 / d.len() as f64
}
