//! Optimizers: SGD with momentum and Adam. Their state is allocated once, shaped like the model.

use std::{fmt, str::FromStr};

use super::{Dense, Mlp, TrainError};

/// The gradients of one [`Dense`] layer, or any per-parameter state shaped like it.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseGrads {
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

impl DenseGrads {
    pub fn zeros_like(layer: &Dense) -> Self {
        Self {
            weights: vec![0.0; layer.weights.len()],
            bias: vec![0.0; layer.bias.len()],
        }
    }

    /// One `DenseGrads` of zeros per layer of `mlp`.
    pub fn zeros_for(mlp: &Mlp) -> Vec<Self> {
        mlp.layers.iter().map(Self::zeros_like).collect()
    }
}

/// Updates a model from the gradients of one batch.
///
/// `Send`, so that a training step can run on a rayon worker.
pub trait Optimizer: Send {
    /// `grads` has one entry per layer of `mlp`, with the same shapes, on every call.
    fn step(&mut self, mlp: &mut Mlp, grads: &[DenseGrads]);
}

/// Calls `f(params, grads, state...)` for the weights and the bias of every layer.
fn for_each_tensor<const S: usize>(
    mlp: &mut Mlp,
    grads: &[DenseGrads],
    mut states: [&mut [DenseGrads]; S],
    mut f: impl FnMut(&mut [f32], &[f32], [&mut [f32]; S]),
) {
    assert_eq!(grads.len(), mlp.layers.len(), "one gradient per layer");
    for (l, (layer, g)) in mlp.layers.iter_mut().zip(grads).enumerate() {
        f(
            &mut layer.weights,
            &g.weights,
            states.each_mut().map(|s| &mut s[l].weights[..]),
        );
        f(
            &mut layer.bias,
            &g.bias,
            states.each_mut().map(|s| &mut s[l].bias[..]),
        );
    }
}

/// `v = momentum * v + g; w -= lr * v`.
#[derive(Clone, Debug)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    velocity: Vec<DenseGrads>,
}

impl Sgd {
    pub const DEFAULT_MOMENTUM: f32 = 0.9;

    pub fn new(mlp: &Mlp, lr: f32, momentum: f32) -> Self {
        Self {
            lr,
            momentum,
            velocity: DenseGrads::zeros_for(mlp),
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, mlp: &mut Mlp, grads: &[DenseGrads]) {
        let (lr, mu) = (self.lr, self.momentum);
        for_each_tensor(mlp, grads, [&mut self.velocity], |w, g, [v]| {
            in_chunks(w, g, [v], |w, g, [v]| {
                #[cfg(target_arch = "x86_64")]
                if super::gemm::avx2_fma() {
                    // SAFETY: the CPU has AVX2 and FMA (checked just above).
                    unsafe { sgd_avx2(w, g, v, lr, mu) };
                    return;
                }
                sgd_update(w, g, v, lr, mu);
            });
        });
    }
}

/// Below this many parameters a tensor is updated on the calling thread. Adam takes about 1 ns
/// a parameter on one core, so a tensor of this size (65 µs) amply pays for a split.
const PARALLEL_PARAMS: usize = 1 << 16;
/// Parameters per parallel task, at most.
const TASK_PARAMS: usize = 1 << 15;

/// Runs `f` on the tensor and its states as a whole, or on matching pieces of them over the
/// rayon pool when the tensor is large: the update is memory-bound, and one core does not
/// saturate the memory bus. Halves recursively through `rayon::join`, which allocates nothing.
fn in_chunks<const S: usize, F>(w: &mut [f32], g: &[f32], states: [&mut [f32]; S], f: F)
where
    F: Fn(&mut [f32], &[f32], [&mut [f32]; S]) + Sync,
{
    fn halves<const S: usize, F>(w: &mut [f32], g: &[f32], states: [&mut [f32]; S], f: &F)
    where
        F: Fn(&mut [f32], &[f32], [&mut [f32]; S]) + Sync,
    {
        if w.len() <= TASK_PARAMS {
            return f(w, g, states);
        }
        let mid = w.len() / 2;
        let (w1, w2) = w.split_at_mut(mid);
        let (g1, g2) = g.split_at(mid);
        let mut right: [&mut [f32]; S] = [(); S].map(|_| <&mut [f32]>::default());
        let mut i = 0;
        let left = states.map(|s| {
            let (a, b) = s.split_at_mut(mid);
            right[i] = b;
            i += 1;
            a
        });
        rayon::join(|| halves(w1, g1, left, f), || halves(w2, g2, right, f));
    }
    if w.len() < PARALLEL_PARAMS {
        f(w, g, states);
    } else {
        halves(w, g, states, &f);
    }
}

#[inline(always)]
fn sgd_update(w: &mut [f32], g: &[f32], v: &mut [f32], lr: f32, mu: f32) {
    let n = w.len();
    let (g, v) = (&g[..n], &mut v[..n]);
    for i in 0..n {
        v[i] = mu * v[i] + g[i];
        w[i] -= lr * v[i];
    }
}

/// [`sgd_update`] vectorized for AVX2; the same arithmetic (no fused multiply-adds), so the
/// same results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sgd_avx2(w: &mut [f32], g: &[f32], v: &mut [f32], lr: f32, mu: f32) {
    sgd_update(w, g, v, lr, mu);
}

/// Adam (Kingma & Ba) with bias correction:
/// `m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g²; w -= lr * m̂ / (sqrt(v̂) + eps)`.
#[derive(Clone, Debug)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    steps: i32,
    m: Vec<DenseGrads>,
    v: Vec<DenseGrads>,
}

impl Adam {
    /// The usual defaults (Kingma & Ba), also handed to the GPU trainer.
    pub const BETA1: f32 = 0.9;
    pub const BETA2: f32 = 0.999;
    pub const EPS: f32 = 1e-8;

    pub fn new(mlp: &Mlp, lr: f32) -> Self {
        Self {
            lr,
            beta1: Self::BETA1,
            beta2: Self::BETA2,
            eps: Self::EPS,
            steps: 0,
            m: DenseGrads::zeros_for(mlp),
            v: DenseGrads::zeros_for(mlp),
        }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, mlp: &mut Mlp, grads: &[DenseGrads]) {
        self.steps = self.steps.saturating_add(1);
        let (b1, b2, lr, eps) = (self.beta1, self.beta2, self.lr, self.eps);
        let c1 = 1.0 / (1.0 - f64::from(b1).powi(self.steps)) as f32;
        let c2 = 1.0 / (1.0 - f64::from(b2).powi(self.steps)) as f32;
        let k = AdamStep {
            b1,
            b2,
            lr,
            eps,
            c1,
            c2,
        };
        for_each_tensor(mlp, grads, [&mut self.m, &mut self.v], |w, g, [m, v]| {
            in_chunks(w, g, [m, v], |w, g, [m, v]| {
                #[cfg(target_arch = "x86_64")]
                if super::gemm::avx2_fma() {
                    // SAFETY: the CPU has AVX2 and FMA (checked just above).
                    unsafe { adam_avx2(w, g, m, v, &k) };
                    return;
                }
                adam_update(w, g, m, v, &k);
            });
        });
    }
}

/// The scalars of one Adam step; `c1`, `c2` are the bias corrections `1 / (1 - beta^t)`.
struct AdamStep {
    b1: f32,
    b2: f32,
    lr: f32,
    eps: f32,
    c1: f32,
    c2: f32,
}

#[inline(always)]
fn adam_update(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &AdamStep) {
    let n = w.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        m[i] = k.b1 * m[i] + (1.0 - k.b1) * g[i];
        v[i] = k.b2 * v[i] + (1.0 - k.b2) * g[i] * g[i];
        w[i] -= k.lr * (m[i] * k.c1) / ((v[i] * k.c2).sqrt() + k.eps);
    }
}

/// [`adam_update`] vectorized for AVX2 (8 square roots and divisions at a time); the same
/// arithmetic, so the same results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn adam_avx2(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &AdamStep) {
    adam_update(w, g, m, v, k);
}

/// Which optimizer `npk train --optimizer` builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    /// SGD with momentum [`Sgd::DEFAULT_MOMENTUM`].
    Sgd,
    Adam,
}

impl OptimizerKind {
    pub fn build(self, mlp: &Mlp, lr: f32) -> Box<dyn Optimizer> {
        match self {
            Self::Sgd => Box::new(Sgd::new(mlp, lr, Sgd::DEFAULT_MOMENTUM)),
            Self::Adam => Box::new(Adam::new(mlp, lr)),
        }
    }
}

impl FromStr for OptimizerKind {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, TrainError> {
        match s {
            "sgd" => Ok(Self::Sgd),
            "adam" => Ok(Self::Adam),
            _ => Err(TrainError::UnknownOptimizer(s.to_owned())),
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sgd => "sgd",
            Self::Adam => "adam",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One layer, one weight 1.0 and one bias 0.5.
    fn scalar_mlp() -> Mlp {
        Mlp {
            layers: vec![Dense {
                in_dim: 1,
                out_dim: 1,
                weights: vec![1.0],
                bias: vec![0.5],
            }],
        }
    }

    fn grads(w: f32, b: f32) -> Vec<DenseGrads> {
        vec![DenseGrads {
            weights: vec![w],
            bias: vec![b],
        }]
    }

    #[track_caller]
    fn close(a: f32, b: f32) {
        assert!((a - b).abs() < 1e-6, "{a} != {b}");
    }

    #[test]
    fn sgd_momentum_accumulates_velocity() {
        let mut mlp = scalar_mlp();
        let mut opt = Sgd::new(&mlp, 0.1, 0.9);
        opt.step(&mut mlp, &grads(2.0, -1.0));
        close(mlp.layers[0].weights[0], 0.8); // v = 2
        close(mlp.layers[0].bias[0], 0.6); // v = -1
        opt.step(&mut mlp, &grads(2.0, -1.0));
        close(mlp.layers[0].weights[0], 0.42); // v = 0.9 * 2 + 2 = 3.8
        close(mlp.layers[0].bias[0], 0.79); // v = -1.9
    }

    #[test]
    fn adam_matches_hand_computed_steps() {
        let mut mlp = scalar_mlp();
        let mut opt = Adam::new(&mlp, 0.1);
        // Step 1: m̂ = g and v̂ = g², so the update is lr * sign(g).
        opt.step(&mut mlp, &grads(2.0, -1.0));
        close(mlp.layers[0].weights[0], 0.9);
        close(mlp.layers[0].bias[0], 0.6);
        // Step 2 with g = -1 on the weight: m̂ = 0.08 / 0.19, v̂ = 0.004996 / 0.001999
        // (computed in f64: w = 0.87336630).
        opt.step(&mut mlp, &grads(-1.0, -1.0));
        close(mlp.layers[0].weights[0], 0.873_366_3);
        close(mlp.layers[0].bias[0], 0.7);
    }

    #[test]
    fn kind_parses_and_prints_and_rejects_unknown_names() {
        assert_eq!(
            "adam".parse::<OptimizerKind>().unwrap(),
            OptimizerKind::Adam
        );
        assert_eq!("sgd".parse::<OptimizerKind>().unwrap(), OptimizerKind::Sgd);
        assert_eq!(OptimizerKind::Adam.to_string(), "adam");
        assert_eq!(
            "rmsprop".parse::<OptimizerKind>().unwrap_err().to_string(),
            "unknown optimizer 'rmsprop': expected adam or sgd"
        );
    }
}
