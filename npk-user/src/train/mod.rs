//! Float MLP training: dense layers, ReLU hidden, softmax cross-entropy, SGD with momentum and
//! Adam.

/// A dense layer `y = W x + b`.
///
/// # Shapes
/// `weights`: `out_dim x in_dim` row-major (`[out][in]`, like the kernel layout); `bias`: `out_dim`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub in_dim: usize,
    pub out_dim: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// ReLU after every layer but the last, whose outputs are the logits.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    pub layers: Vec<Dense>,
}
