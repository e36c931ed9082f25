//! Training on an NVIDIA GPU (`npk train --device gpu`) through [`gpu_offload::GpuTrainer`].
//!
//! Same run as [`super::train`]: the He weights are drawn on the CPU from the seed and uploaded,
//! the shuffles and batches come from the same generator and loop, the update rule is the same;
//! the trained weights are downloaded into an [`Mlp`].

use gpu_offload::{GpuError, GpuOptimizer, GpuTrainer, LayerWeights};

use super::{Adam, Dense, EpochStats, Mlp, OptimizerKind, Sgd, TrainConfig, TrainError};
use crate::dataset::Dataset;

/// Why GPU training failed.
#[derive(Debug, thiserror::Error)]
pub enum GpuTrainError {
    /// No driver, device or CUDA library: the reason names which.
    #[error("no GPU: {0}")]
    NoGpu(String),
    #[error(transparent)]
    Config(#[from] TrainError),
    #[error("GPU training: {0}")]
    Gpu(GpuError),
}

impl From<GpuError> for GpuTrainError {
    fn from(e: GpuError) -> Self {
        match e {
            GpuError::Unavailable(reason) => Self::NoGpu(reason),
            other => Self::Gpu(other),
        }
    }
}

/// The GPU optimizer with the hyperparameters the CPU one uses for `kind`.
pub fn gpu_optimizer(kind: OptimizerKind, lr: f32) -> GpuOptimizer {
    match kind {
        OptimizerKind::Sgd => GpuOptimizer::Sgd {
            lr,
            momentum: Sgd::DEFAULT_MOMENTUM,
        },
        OptimizerKind::Adam => GpuOptimizer::Adam {
            lr,
            beta1: Adam::BETA1,
            beta2: Adam::BETA2,
            eps: Adam::EPS,
        },
    }
}

pub fn to_gpu_layers(mlp: &Mlp) -> Vec<LayerWeights> {
    mlp.layers
        .iter()
        .map(|l| LayerWeights {
            in_dim: l.in_dim,
            out_dim: l.out_dim,
            weights: l.weights.clone(),
            bias: l.bias.clone(),
        })
        .collect()
}

pub fn from_gpu_layers(layers: Vec<LayerWeights>) -> Mlp {
    Mlp {
        layers: layers
            .into_iter()
            .map(|l| Dense {
                in_dim: l.in_dim,
                out_dim: l.out_dim,
                weights: l.weights,
                bias: l.bias,
            })
            .collect(),
    }
}

/// Like [`super::train`] on the GPU; the epochs' `train_accuracy` is `None` (the GPU step
/// reports the loss only).
pub fn train_gpu(
    data: &Dataset,
    config: &TrainConfig,
    on_epoch: impl FnMut(&EpochStats),
) -> Result<Mlp, GpuTrainError> {
    let (mut rng, mlp) = super::init(data, config)?;
    let mut gpu = GpuTrainer::new(
        &to_gpu_layers(&mlp),
        gpu_optimizer(config.optimizer, config.lr),
        config.batch.min(data.len()),
    )?;
    super::run_epochs(data, config, &mut rng, on_epoch, |x, y| {
        Ok::<_, GpuError>((gpu.step(x, y)?, None))
    })?;
    Ok(from_gpu_layers(gpu.download()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn layers_round_trip_and_hyperparameters_match_the_cpu() {
        let mlp = Mlp::new(4, &[5, 3], 2, &mut Rng::new(9));
        assert_eq!(from_gpu_layers(to_gpu_layers(&mlp)), mlp);
        assert_eq!(
            gpu_optimizer(OptimizerKind::Sgd, 0.5),
            GpuOptimizer::Sgd {
                lr: 0.5,
                momentum: 0.9
            }
        );
        let adam = Adam::new(&mlp, 0.01);
        assert_eq!(
            gpu_optimizer(OptimizerKind::Adam, 0.01),
            GpuOptimizer::Adam {
                lr: adam.lr,
                beta1: adam.beta1,
                beta2: adam.beta2,
                eps: adam.eps
            }
        );
    }

    #[test]
    fn unavailable_becomes_no_gpu_with_its_reason() {
        let e = GpuTrainError::from(GpuError::Unavailable("libcuda not found".into()));
        assert_eq!(e.to_string(), "no GPU: libcuda not found");
    }
}
