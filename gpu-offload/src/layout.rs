//! Shape checks and the packed parameter layout: everything that needs no GPU.

use crate::{GpuError, GpuOptimizer, LayerWeights};

/// Counts handed to cuBLAS (`c_int`) and to the kernels (`int`) must fit in an `i32`.
pub(crate) const MAX_COUNT: usize = i32::MAX as usize;

/// One dense layer's place in the packed parameter buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LayerSlot {
    pub in_dim: usize,
    pub out_dim: usize,
    /// Offset of `weights` (`out_dim * in_dim` floats, `[out][in]` row-major).
    pub weights: usize,
    /// Offset of `bias` (`out_dim` floats), right after the weights.
    pub bias: usize,
}

/// A validated network: all layers' weights and biases packed into one buffer so the gradient
/// and the optimizer state share its layout and one optimizer launch updates every parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub slots: Vec<LayerSlot>,
    /// Total floats in the packed buffer.
    pub params: usize,
    pub max_batch: usize,
}

impl Layout {
    /// Checks the layers chain, their buffers have the stated lengths and every count fits the
    /// `i32` the GPU side uses.
    pub fn new(layers: &[LayerWeights], max_batch: usize) -> Result<Self, GpuError> {
        if layers.is_empty() {
            return Err(GpuError::NoLayers);
        }
        if max_batch == 0 {
            return Err(GpuError::ZeroMaxBatch);
        }
        let mut slots = Vec::with_capacity(layers.len());
        let mut params = 0usize;
        for (layer, l) in layers.iter().enumerate() {
            if l.in_dim == 0 || l.out_dim == 0 {
                return Err(GpuError::EmptyLayer {
                    layer,
                    in_dim: l.in_dim,
                    out_dim: l.out_dim,
                });
            }
            if let Some(prev) = slots.last().map(|s: &LayerSlot| s.out_dim)
                && prev != l.in_dim
            {
                return Err(GpuError::LayerChain {
                    layer,
                    in_dim: l.in_dim,
                    previous_out: prev,
                });
            }
            let n_weights = l.in_dim.checked_mul(l.out_dim).filter(|&n| n <= MAX_COUNT);
            let Some(n_weights) = n_weights else {
                return Err(GpuError::TooLarge {
                    what: "a layer's in_dim * out_dim",
                    value: l.in_dim.saturating_mul(l.out_dim),
                });
            };
            check_len(layer, "weights", n_weights, &l.weights)?;
            check_len(layer, "bias", l.out_dim, &l.bias)?;
            for dim in [l.in_dim, l.out_dim] {
                if max_batch.checked_mul(dim).is_none_or(|n| n > MAX_COUNT) {
                    return Err(GpuError::TooLarge {
                        what: "max_batch * layer width",
                        value: max_batch.saturating_mul(dim),
                    });
                }
            }
            let weights = params;
            let bias = weights + n_weights;
            params = bias + l.out_dim;
            if params > MAX_COUNT {
                return Err(GpuError::TooLarge {
                    what: "total parameter count",
                    value: params,
                });
            }
            slots.push(LayerSlot {
                in_dim: l.in_dim,
                out_dim: l.out_dim,
                weights,
                bias,
            });
        }
        Ok(Self {
            slots,
            params,
            max_batch,
        })
    }

    pub fn in_dim(&self) -> usize {
        self.slots[0].in_dim
    }

    pub fn classes(&self) -> usize {
        self.slots[self.slots.len() - 1].out_dim
    }

    /// Copies every layer into one buffer in this layout.
    pub fn pack(&self, layers: &[LayerWeights]) -> Vec<f32> {
        let mut packed = Vec::with_capacity(self.params);
        for l in layers {
            packed.extend_from_slice(&l.weights);
            packed.extend_from_slice(&l.bias);
        }
        packed
    }

    /// Splits a packed buffer back into layers.
    pub fn unpack(&self, packed: &[f32]) -> Vec<LayerWeights> {
        self.slots
            .iter()
            .map(|s| LayerWeights {
                in_dim: s.in_dim,
                out_dim: s.out_dim,
                weights: packed[s.weights..s.bias].to_vec(),
                bias: packed[s.bias..s.bias + s.out_dim].to_vec(),
            })
            .collect()
    }

    /// Checks a batch of `batch` rows for `step` (with labels) or `predict` (without). Labels
    /// are checked here, on the host, because the loss kernel indexes the logits with them.
    pub fn check_batch(
        &self,
        x: &[f32],
        batch: usize,
        labels: Option<&[u32]>,
    ) -> Result<(), GpuError> {
        if batch == 0 || batch > self.max_batch {
            return Err(GpuError::BatchSize {
                batch,
                max: self.max_batch,
            });
        }
        let expected = batch * self.in_dim();
        if x.len() != expected {
            return Err(GpuError::InputLength {
                batch,
                in_dim: self.in_dim(),
                expected,
                got: x.len(),
            });
        }
        if let Some(index) = x.iter().position(|v| !v.is_finite()) {
            return Err(GpuError::NonFiniteInput {
                row: index / self.in_dim(),
                column: index % self.in_dim(),
            });
        }
        let classes = self.classes();
        if let Some(labels) = labels
            && let Some(row) = labels.iter().position(|&c| c as usize >= classes)
        {
            return Err(GpuError::Label {
                row,
                label: labels[row],
                classes,
            });
        }
        Ok(())
    }
}

fn check_len(
    layer: usize,
    field: &'static str,
    expected: usize,
    values: &[f32],
) -> Result<(), GpuError> {
    if values.len() != expected {
        return Err(GpuError::LayerLength {
            layer,
            field,
            expected,
            got: values.len(),
        });
    }
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(GpuError::NonFiniteWeight {
            layer,
            field,
            index,
        });
    }
    Ok(())
}

/// Rejects hyper-parameters that make the update meaningless (NaN, negative, or a decay of 1
/// or more, which never forgets and divides by zero in Adam's bias correction).
pub(crate) fn check_optimizer(optimizer: &GpuOptimizer) -> Result<(), GpuError> {
    let positive = |name, value: f32| {
        if value.is_finite() && value > 0.0 {
            Ok(())
        } else {
            Err(GpuError::Hyperparameter {
                name,
                value,
                expected: "finite and > 0",
            })
        }
    };
    let decay = |name, value: f32| {
        if (0.0..1.0).contains(&value) {
            Ok(())
        } else {
            Err(GpuError::Hyperparameter {
                name,
                value,
                expected: "in [0, 1)",
            })
        }
    };
    match *optimizer {
        GpuOptimizer::Sgd { lr, momentum } => {
            positive("lr", lr)?;
            decay("momentum", momentum)
        }
        GpuOptimizer::Adam {
            lr,
            beta1,
            beta2,
            eps,
        } => {
            positive("lr", lr)?;
            decay("beta1", beta1)?;
            decay("beta2", beta2)?;
            positive("eps", eps)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(in_dim: usize, out_dim: usize) -> LayerWeights {
        LayerWeights {
            in_dim,
            out_dim,
            weights: vec![0.5; in_dim * out_dim],
            bias: vec![0.0; out_dim],
        }
    }

    #[test]
    fn packs_layers_back_to_back() {
        let layers = [layer(3, 4), layer(4, 2)];
        let layout = Layout::new(&layers, 8).unwrap();
        assert_eq!(
            layout.slots,
            [
                LayerSlot {
                    in_dim: 3,
                    out_dim: 4,
                    weights: 0,
                    bias: 12
                },
                LayerSlot {
                    in_dim: 4,
                    out_dim: 2,
                    weights: 16,
                    bias: 24
                },
            ]
        );
        assert_eq!(layout.params, 26);
        let mut distinct = layers.clone();
        distinct[1].bias = vec![7.0, 8.0];
        assert_eq!(layout.unpack(&layout.pack(&distinct)), distinct);
    }

    #[test]
    fn rejects_bad_networks() {
        assert!(matches!(Layout::new(&[], 1), Err(GpuError::NoLayers)));
        assert!(matches!(
            Layout::new(&[layer(3, 4)], 0),
            Err(GpuError::ZeroMaxBatch)
        ));
        assert!(matches!(
            Layout::new(&[layer(3, 0)], 1),
            Err(GpuError::EmptyLayer {
                layer: 0,
                in_dim: 3,
                out_dim: 0
            })
        ));
        assert!(matches!(
            Layout::new(&[layer(3, 4), layer(5, 2)], 1),
            Err(GpuError::LayerChain {
                layer: 1,
                in_dim: 5,
                previous_out: 4
            })
        ));
        let mut short = layer(3, 4);
        short.weights.pop();
        assert!(matches!(
            Layout::new(&[short], 1),
            Err(GpuError::LayerLength {
                layer: 0,
                field: "weights",
                expected: 12,
                got: 11
            })
        ));
        let mut nan = layer(3, 4);
        nan.bias[2] = f32::NAN;
        assert!(matches!(
            Layout::new(&[nan], 1),
            Err(GpuError::NonFiniteWeight {
                layer: 0,
                field: "bias",
                index: 2
            })
        ));
        assert!(matches!(
            Layout::new(&[layer(1 << 16, 1)], 1 << 16),
            Err(GpuError::TooLarge {
                what: "max_batch * layer width",
                ..
            })
        ));
    }

    #[test]
    fn rejects_bad_batches() {
        let layout = Layout::new(&[layer(3, 4), layer(4, 2)], 2).unwrap();
        assert!(layout.check_batch(&[0.0; 6], 2, Some(&[0, 1])).is_ok());
        assert!(matches!(
            layout.check_batch(&[], 0, Some(&[])),
            Err(GpuError::BatchSize { batch: 0, max: 2 })
        ));
        assert!(matches!(
            layout.check_batch(&[0.0; 9], 3, None),
            Err(GpuError::BatchSize { batch: 3, max: 2 })
        ));
        assert!(matches!(
            layout.check_batch(&[0.0; 5], 2, None),
            Err(GpuError::InputLength {
                batch: 2,
                in_dim: 3,
                expected: 6,
                got: 5
            })
        ));
        assert!(matches!(
            layout.check_batch(&[0.0; 6], 2, Some(&[1, 2])),
            Err(GpuError::Label {
                row: 1,
                label: 2,
                classes: 2
            })
        ));
        let mut x = [0.0; 6];
        x[4] = f32::INFINITY;
        assert!(matches!(
            layout.check_batch(&x, 2, None),
            Err(GpuError::NonFiniteInput { row: 1, column: 1 })
        ));
    }

    #[test]
    fn rejects_bad_hyperparameters() {
        let sgd = |lr, momentum| check_optimizer(&GpuOptimizer::Sgd { lr, momentum });
        assert!(sgd(0.1, 0.9).is_ok());
        assert!(matches!(
            sgd(0.0, 0.9),
            Err(GpuError::Hyperparameter { name: "lr", .. })
        ));
        assert!(matches!(
            sgd(0.1, 1.0),
            Err(GpuError::Hyperparameter {
                name: "momentum",
                ..
            })
        ));
        let adam = |beta2, eps| {
            check_optimizer(&GpuOptimizer::Adam {
                lr: 1e-3,
                beta1: 0.9,
                beta2,
                eps,
            })
        };
        assert!(adam(0.999, 1e-8).is_ok());
        assert!(matches!(
            adam(f32::NAN, 1e-8),
            Err(GpuError::Hyperparameter { name: "beta2", .. })
        ));
        assert!(matches!(
            adam(0.999, -1.0),
            Err(GpuError::Hyperparameter { name: "eps", .. })
        ));
    }
}
