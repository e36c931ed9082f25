//! Test fixtures for quantization and model files: a seeded RNG, datasets (the repository's CSV
//! files and a synthetic one with raw features of very different ranges), a standardizer fit
//! and a small SGD trainer so that tests get realistic float models.

use std::path::Path;

use crate::dataset::{Dataset, Standardizer};
use crate::train::{Dense, Mlp};

/// splitmix64: tiny, seeded, good enough for fixtures.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize
    }
}

/// Reads one of the repository's CSV files (`data/NAME`): header row, label last.
pub(crate) fn load_csv(name: &str) -> Dataset {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let num_features = header.len() - 1;
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    for line in lines.filter(|l| !l.is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        features.extend(
            cells[..num_features]
                .iter()
                .map(|c| c.parse::<f32>().unwrap()),
        );
        labels.push(cells[num_features].parse::<u32>().unwrap());
    }
    let num_classes = *labels.iter().max().unwrap() as usize + 1;
    Dataset {
        feature_names: header[..num_features].to_vec(),
        features,
        labels,
        num_features,
        num_classes,
    }
}

/// Raw, unscaled features of very different ranges, labelled by a rule a small MLP can learn:
/// `ratio` in 0..1, `bytes` in 0..1e6, `latency_ms` ~ N(50, 10) with 2% outliers at 20-100x,
/// `count` an integer in 0..100, `tiny` ~ 1e-3 * N(1, 1) (pure noise).
/// Class 0: `ratio + bytes / 1e6 < 0.8`; else class 1 when `latency_ms > 52`, else class 2.
pub(crate) fn mixed_ranges(rng: &mut Rng, rows: usize, outliers: f64) -> Dataset {
    let names = ["ratio", "bytes", "latency_ms", "count", "tiny"];
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..rows {
        let ratio = rng.uniform();
        let bytes = rng.uniform() * 1e6;
        let mut latency = 50.0 + 10.0 * rng.normal();
        if rng.uniform() < outliers {
            latency *= 20.0 + 80.0 * rng.uniform();
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
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
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

/// Mean and population standard deviation per feature; constant features get std 1.
pub(crate) fn fit_standardizer(d: &Dataset) -> Standardizer {
    let n = d.len() as f64;
    let (mut mean, mut std) = (Vec::new(), Vec::new());
    for j in 0..d.num_features {
        let col = || (0..d.len()).map(|r| f64::from(d.row(r)[j]));
        let m = col().sum::<f64>() / n;
        let s = (col().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt();
        mean.push(m as f32);
        std.push(if s > 0.0 { s as f32 } else { 1.0 });
    }
    Standardizer { mean, std }
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

/// Minibatch SGD with momentum on softmax cross-entropy, in f64 for determinism.
pub(crate) fn train(
    mlp: &mut Mlp,
    std: &Standardizer,
    d: &Dataset,
    epochs: usize,
    lr: f64,
    rng: &mut Rng,
) {
    const BATCH: usize = 16;
    const MOMENTUM: f64 = 0.9;
    let z: Vec<Vec<f64>> = (0..d.len()).map(|r| standardized(std, d.row(r))).collect();
    let n_layers = mlp.layers.len();
    let mut vel: Vec<(Vec<f64>, Vec<f64>)> = mlp
        .layers
        .iter()
        .map(|l| (vec![0.0; l.weights.len()], vec![0.0; l.bias.len()]))
        .collect();
    let mut order: Vec<usize> = (0..d.len()).collect();
    let mut acts = Vec::new();
    for _ in 0..epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        for batch in order.chunks(BATCH) {
            let mut grad: Vec<(Vec<f64>, Vec<f64>)> = mlp
                .layers
                .iter()
                .map(|l| (vec![0.0; l.weights.len()], vec![0.0; l.bias.len()]))
                .collect();
            for &r in batch {
                super::forward(mlp, &z[r], &mut acts);
                let logits = &acts[n_layers - 1];
                let max = logits.iter().fold(f64::MIN, |a, &b| a.max(b));
                let exp: Vec<f64> = logits.iter().map(|&v| (v - max).exp()).collect();
                let sum: f64 = exp.iter().sum();
                let mut delta: Vec<f64> = exp.iter().map(|e| e / sum).collect();
                delta[d.labels[r] as usize] -= 1.0;
                for l in (0..n_layers).rev() {
                    let layer = &mlp.layers[l];
                    let input = if l == 0 { &z[r] } else { &acts[l - 1] };
                    let mut back = vec![0.0; layer.in_dim];
                    let (gw, gb) = &mut grad[l];
                    let rows = gw
                        .chunks_mut(layer.in_dim)
                        .zip(layer.weights.chunks(layer.in_dim));
                    for ((&dl, b), (g_row, w_row)) in delta.iter().zip(gb.iter_mut()).zip(rows) {
                        *b += dl;
                        for (((g, bk), &x), &w) in
                            g_row.iter_mut().zip(&mut back).zip(input).zip(w_row)
                        {
                            *g += dl * x;
                            *bk += dl * f64::from(w);
                        }
                    }
                    if l > 0 {
                        delta = back
                            .iter()
                            .zip(&acts[l - 1])
                            .map(|(g, &a)| if a > 0.0 { *g } else { 0.0 })
                            .collect();
                    }
                }
            }
            let step = lr / batch.len() as f64;
            for ((layer, (gw, gb)), (vw, vb)) in mlp.layers.iter_mut().zip(&grad).zip(&mut vel) {
                for ((w, g), v) in layer.weights.iter_mut().zip(gw).zip(vw.iter_mut()) {
                    *v = MOMENTUM * *v - step * g;
                    *w += *v as f32;
                }
                for ((b, g), v) in layer.bias.iter_mut().zip(gb).zip(vb.iter_mut()) {
                    *v = MOMENTUM * *v - step * g;
                    *b += *v as f32;
                }
            }
        }
    }
}
