//! GpuTrainer against a plain-loop CPU reference of the same training step.
//!
//! The reference runs in f64, so the comparison measures the GPU's f32 error. Without a GPU
//! (driver, device or CUDA library missing) the GPU tests print `skipped: <reason>` and pass;
//! the checks that need no GPU still run.

use gpu_offload::{GpuError, GpuOptimizer, GpuTrainer, LayerWeights, gpu_available};

/// Relative tolerance on weights and losses, with an absolute floor for values near zero
/// (weights here are of order 0.1 to 1).
const REL_TOL: f64 = 1e-4;
const ABS_TOL: f64 = 1e-5;

/// Layer widths: 6 inputs, two hidden ReLU layers, 3 classes.
const WIDTHS: [usize; 4] = [6, 16, 8, 3];
const MAX_BATCH: usize = 64;
/// Batch sizes of the steps compared: full, partial and tiny batches against one allocation.
const BATCHES: [usize; 5] = [32, 32, 20, 64, 7];

const SGD: GpuOptimizer = GpuOptimizer::Sgd {
    lr: 0.05,
    momentum: 0.9,
};
const ADAM: GpuOptimizer = GpuOptimizer::Adam {
    lr: 1e-2,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
};

/// xorshift64*: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40; // 24 bits
        bits as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn network(rng: &mut Rng) -> Vec<LayerWeights> {
    WIDTHS
        .windows(2)
        .map(|w| {
            let (in_dim, out_dim) = (w[0], w[1]);
            let scale = 1.0 / (in_dim as f32).sqrt();
            LayerWeights {
                in_dim,
                out_dim,
                weights: (0..in_dim * out_dim)
                    .map(|_| rng.uniform() * scale)
                    .collect(),
                bias: (0..out_dim).map(|_| rng.uniform() * 0.1).collect(),
            }
        })
        .collect()
}

fn batch(rng: &mut Rng, rows: usize) -> (Vec<f32>, Vec<u32>) {
    let x = (0..rows * WIDTHS[0]).map(|_| rng.uniform() * 2.0).collect();
    let classes = WIDTHS[WIDTHS.len() - 1] as u32;
    let labels = (0..rows)
        .map(|_| (rng.uniform().abs() * classes as f32) as u32 % classes)
        .collect();
    (x, labels)
}

/// One layer and its optimizer state, all f64.
struct RefLayer {
    in_dim: usize,
    out_dim: usize,
    /// Weights `[out][in]` then bias `[out]`, like the GPU's packed buffer.
    params: Vec<f64>,
    /// Momentum velocity (SGD) or first moment (Adam).
    m: Vec<f64>,
    /// Second moment (Adam only).
    v: Vec<f64>,
}

struct Reference {
    layers: Vec<RefLayer>,
    optimizer: GpuOptimizer,
    t: i32,
}

impl Reference {
    fn new(layers: &[LayerWeights], optimizer: GpuOptimizer) -> Self {
        let layers = layers
            .iter()
            .map(|l| {
                let params: Vec<f64> = l.weights.iter().chain(&l.bias).map(|&p| p as f64).collect();
                let n = params.len();
                RefLayer {
                    in_dim: l.in_dim,
                    out_dim: l.out_dim,
                    params,
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                }
            })
            .collect();
        Self {
            layers,
            optimizer,
            t: 0,
        }
    }

    /// `acts[0]` = x, `acts[l + 1]` = layer l's output (ReLU on all but the last).
    fn forward(&self, x: &[f32], rows: usize) -> Vec<Vec<f64>> {
        let mut acts = vec![x.iter().map(|&v| v as f64).collect::<Vec<f64>>()];
        for (l, layer) in self.layers.iter().enumerate() {
            let (w, b) = layer.params.split_at(layer.in_dim * layer.out_dim);
            let input = &acts[l];
            let mut out = vec![0.0; rows * layer.out_dim];
            for r in 0..rows {
                for o in 0..layer.out_dim {
                    let mut s = b[o];
                    for i in 0..layer.in_dim {
                        s += w[o * layer.in_dim + i] * input[r * layer.in_dim + i];
                    }
                    let relu = l + 1 < self.layers.len();
                    out[r * layer.out_dim + o] = if relu { s.max(0.0) } else { s };
                }
            }
            acts.push(out);
        }
        acts
    }

    /// Mean loss of a batch at the current parameters.
    fn loss(&self, x: &[f32], labels: &[u32]) -> f64 {
        let acts = self.forward(x, labels.len());
        let logits = &acts[acts.len() - 1];
        let classes = self.layers[self.layers.len() - 1].out_dim;
        let total: f64 = logits
            .chunks(classes)
            .zip(labels)
            .map(|(z, &label)| {
                let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                z.iter().map(|&v| (v - max).exp()).sum::<f64>().ln() + max - z[label as usize]
            })
            .sum();
        total / labels.len() as f64
    }

    /// One step; returns the mean loss before the update.
    fn step(&mut self, x: &[f32], labels: &[u32]) -> f64 {
        let rows = labels.len();
        let acts = self.forward(x, rows);
        let classes = self.layers[self.layers.len() - 1].out_dim;
        let logits = &acts[acts.len() - 1];
        let mut loss = 0.0;
        let mut delta = vec![0.0; rows * classes];
        for r in 0..rows {
            let z = &logits[r * classes..(r + 1) * classes];
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = z.iter().map(|&v| (v - max).exp()).sum();
            loss += sum.ln() + max - z[labels[r] as usize];
            for c in 0..classes {
                let onehot = if c == labels[r] as usize { 1.0 } else { 0.0 };
                delta[r * classes + c] = ((z[c] - max).exp() / sum - onehot) / rows as f64;
            }
        }
        let mut grads = vec![Vec::new(); self.layers.len()];
        for l in (0..self.layers.len()).rev() {
            let layer = &self.layers[l];
            let (n_in, n_out) = (layer.in_dim, layer.out_dim);
            let mut g = vec![0.0; n_in * n_out + n_out];
            for r in 0..rows {
                for o in 0..n_out {
                    let d = delta[r * n_out + o];
                    for i in 0..n_in {
                        g[o * n_in + i] += d * acts[l][r * n_in + i];
                    }
                    g[n_in * n_out + o] += d;
                }
            }
            if l > 0 {
                let mut dx = vec![0.0; rows * n_in];
                for r in 0..rows {
                    for i in 0..n_in {
                        if acts[l][r * n_in + i] > 0.0 {
                            dx[r * n_in + i] = (0..n_out)
                                .map(|o| delta[r * n_out + o] * layer.params[o * n_in + i])
                                .sum();
                        }
                    }
                }
                delta = dx;
            }
            grads[l] = g;
        }
        self.t += 1;
        for (layer, g) in self.layers.iter_mut().zip(&grads) {
            for (j, &gj) in g.iter().enumerate() {
                match self.optimizer {
                    GpuOptimizer::Sgd { lr, momentum } => {
                        layer.m[j] = momentum as f64 * layer.m[j] + gj;
                        layer.params[j] -= lr as f64 * layer.m[j];
                    }
                    GpuOptimizer::Adam {
                        lr,
                        beta1,
                        beta2,
                        eps,
                    } => {
                        let (b1, b2) = (beta1 as f64, beta2 as f64);
                        layer.m[j] = b1 * layer.m[j] + (1.0 - b1) * gj;
                        layer.v[j] = b2 * layer.v[j] + (1.0 - b2) * gj * gj;
                        let m_hat = layer.m[j] / (1.0 - b1.powi(self.t));
                        let v_hat = layer.v[j] / (1.0 - b2.powi(self.t));
                        layer.params[j] -= lr as f64 * m_hat / (v_hat.sqrt() + eps as f64);
                    }
                }
            }
        }
        loss / rows as f64
    }
}

#[track_caller]
fn assert_close(what: &str, got: f64, want: f64) {
    let err = (got - want).abs();
    assert!(
        err <= REL_TOL * want.abs() + ABS_TOL,
        "{what}: GPU {got} vs reference {want} (error {err:e})"
    );
}

/// Compares every downloaded weight and bias; returns the largest relative error seen.
#[track_caller]
fn assert_weights_match(when: &str, gpu: &[LayerWeights], reference: &Reference) -> f64 {
    let mut worst = 0.0f64;
    for (l, (g, r)) in gpu.iter().zip(&reference.layers).enumerate() {
        assert_eq!(
            (g.in_dim, g.out_dim),
            (r.in_dim, r.out_dim),
            "layer {l} shape"
        );
        for (j, (&got, &want)) in g.weights.iter().chain(&g.bias).zip(&r.params).enumerate() {
            assert_close(
                &format!("{when}: layer {l} parameter {j}"),
                got as f64,
                want,
            );
            worst = worst.max((got as f64 - want).abs() / want.abs().max(1e-3));
        }
    }
    worst
}

/// The trainer, or `None` after printing why the test is skipped.
fn trainer_or_skip(layers: &[LayerWeights], optimizer: GpuOptimizer) -> Option<GpuTrainer> {
    match GpuTrainer::new(layers, optimizer, MAX_BATCH) {
        Ok(trainer) => Some(trainer),
        Err(GpuError::Unavailable(reason)) => {
            println!("skipped: {reason}");
            None
        }
        Err(e) => panic!("GpuTrainer::new failed: {e}"),
    }
}

fn compare_with_reference(optimizer: GpuOptimizer, seed: u64) {
    let mut rng = Rng(seed);
    let layers = network(&mut rng);
    let Some(mut gpu) = trainer_or_skip(&layers, optimizer) else {
        return;
    };
    let mut reference = Reference::new(&layers, optimizer);
    assert_weights_match("upload", &gpu.download().unwrap(), &reference);
    let mut worst = 0.0f64;
    for (step, &rows) in BATCHES.iter().enumerate() {
        let (x, labels) = batch(&mut rng, rows);
        let got = gpu.step(&x, &labels).unwrap();
        let want = reference.step(&x, &labels);
        assert_close(&format!("step {step} loss"), got as f64, want);
        if step == 0 || step == BATCHES.len() - 1 {
            let when = format!("after step {step}");
            worst = worst.max(assert_weights_match(
                &when,
                &gpu.download().unwrap(),
                &reference,
            ));
        }
    }
    println!(
        "{optimizer:?} on {}: worst relative weight error {worst:e}",
        gpu.device_name()
    );

    // Predictions match the reference's argmax wherever the top two logits are not near-tied.
    let (x, _) = batch(&mut rng, MAX_BATCH);
    let mut predicted = vec![0u32; MAX_BATCH];
    gpu.predict(&x, &mut predicted).unwrap();
    let acts = reference.forward(&x, MAX_BATCH);
    let classes = WIDTHS[WIDTHS.len() - 1];
    for (r, z) in acts[acts.len() - 1].chunks(classes).enumerate() {
        let mut order: Vec<usize> = (0..classes).collect();
        order.sort_by(|&a, &b| z[b].total_cmp(&z[a]));
        if z[order[0]] - z[order[1]] > 1e-4 {
            assert_eq!(predicted[r] as usize, order[0], "row {r}: logits {z:?}");
        }
    }
}

#[test]
fn sgd_matches_reference() {
    compare_with_reference(SGD, 0x5EED_0001);
}

#[test]
fn adam_matches_reference() {
    compare_with_reference(ADAM, 0x5EED_0002);
}

/// The reference's gradient (read back from one plain SGD step with lr 1) equals the central
/// finite difference of its loss: checks the reference itself, with or without a GPU.
#[test]
fn reference_gradient_matches_finite_differences() {
    let mut rng = Rng(3);
    let layers = network(&mut rng);
    let (x, labels) = batch(&mut rng, 16);
    let plain = GpuOptimizer::Sgd {
        lr: 1.0,
        momentum: 0.0,
    };
    let mut stepped = Reference::new(&layers, plain);
    let loss = stepped.step(&x, &labels);
    let mut probe = Reference::new(&layers, plain);
    assert_close("loss", probe.loss(&x, &labels), loss);
    let h = 1e-6;
    for l in 0..layers.len() {
        for j in 0..probe.layers[l].params.len() {
            let p = probe.layers[l].params[j];
            probe.layers[l].params[j] = p + h;
            let up = probe.loss(&x, &labels);
            probe.layers[l].params[j] = p - h;
            let down = probe.loss(&x, &labels);
            probe.layers[l].params[j] = p;
            let numeric = (up - down) / (2.0 * h);
            let analytic = p - stepped.layers[l].params[j];
            let err = (numeric - analytic).abs();
            assert!(
                err <= 1e-6 + 1e-4 * numeric.abs(),
                "layer {l} parameter {j}: {analytic} vs {numeric}"
            );
        }
    }
}

/// On a machine without a GPU `new` must say what is missing; with one it must succeed.
#[test]
fn new_reports_what_is_missing_or_succeeds() {
    let layers = network(&mut Rng(7));
    match gpu_available() {
        Ok(name) => {
            let trainer = GpuTrainer::new(&layers, SGD, MAX_BATCH)
                .unwrap_or_else(|e| panic!("a GPU ({name}) is available but new failed: {e}"));
            assert_eq!(trainer.device_name(), name);
        }
        Err(GpuError::Unavailable(reason)) => {
            println!("no GPU: {reason}");
            let names_it = ["libcuda", "libcublas", "libnvrtc", "device"]
                .iter()
                .any(|w| reason.contains(w));
            assert!(
                names_it,
                "the reason should name the missing library or device: {reason}"
            );
            match GpuTrainer::new(&layers, SGD, MAX_BATCH) {
                Err(e @ GpuError::Unavailable(_)) => {
                    assert_eq!(e.to_string(), format!("GPU unavailable: {reason}"));
                }
                Err(e) => panic!("expected Unavailable, got {e}"),
                Ok(_) => panic!("gpu_available said no GPU ({reason}) but new succeeded"),
            }
        }
        Err(e) => panic!("gpu_available failed with something other than Unavailable: {e}"),
    }
}

/// Bad input is reported before any GPU call, so the same error comes with or without a GPU.
#[test]
fn shape_errors_come_before_the_device() {
    let mut layers = network(&mut Rng(9));
    layers[1].in_dim += 1;
    match GpuTrainer::new(&layers, SGD, MAX_BATCH) {
        Err(GpuError::LayerChain {
            layer: 1,
            in_dim: 17,
            previous_out: 16,
        }) => {}
        Err(e) => panic!("expected LayerChain for layer 1, got {e}"),
        Ok(_) => panic!("a broken network was accepted"),
    }
    let bad_lr = GpuOptimizer::Adam {
        lr: f32::NAN,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    match GpuTrainer::new(&network(&mut Rng(9)), bad_lr, MAX_BATCH) {
        Err(GpuError::Hyperparameter { name: "lr", .. }) => {}
        Err(e) => panic!("expected Hyperparameter lr, got {e}"),
        Ok(_) => panic!("a NaN learning rate was accepted"),
    }
}

/// On a GPU: `step` and `predict` reject bad batches with the documented errors.
#[test]
fn step_rejects_bad_batches() {
    let layers = network(&mut Rng(11));
    let Some(mut gpu) = trainer_or_skip(&layers, ADAM) else {
        return;
    };
    let (x, mut labels) = batch(&mut Rng(12), 4);
    labels[3] = 3;
    assert!(matches!(
        gpu.step(&x, &labels),
        Err(GpuError::Label {
            row: 3,
            label: 3,
            classes: 3
        })
    ));
    assert!(matches!(
        gpu.step(&x[1..], &labels),
        Err(GpuError::InputLength { got: 23, .. })
    ));
    let mut out = vec![0u32; MAX_BATCH + 1];
    let big = vec![0.0f32; (MAX_BATCH + 1) * WIDTHS[0]];
    assert!(matches!(
        gpu.predict(&big, &mut out),
        Err(GpuError::BatchSize { batch: 65, max: 64 })
    ));
    // The rejected calls left the weights untouched.
    assert_eq!(gpu.download().unwrap(), layers);
}
