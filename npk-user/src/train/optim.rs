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
pub trait Optimizer {
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
            for ((w, &g), v) in w.iter_mut().zip(g).zip(v) {
                *v = mu * *v + g;
                *w -= lr * *v;
            }
        });
    }
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
    pub fn new(mlp: &Mlp, lr: f32) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
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
        for_each_tensor(mlp, grads, [&mut self.m, &mut self.v], |w, g, [m, v]| {
            for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *w -= lr * (*m * c1) / ((*v * c2).sqrt() + eps);
            }
        });
    }
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
