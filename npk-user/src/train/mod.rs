//! Float MLP training: dense layers, ReLU hidden, softmax cross-entropy, SGD with momentum and
//! Adam.
//!
//! [`TrainConfig`] is the validated configuration, [`Mlp`] the model state, [`Trainer`] owns the
//! model plus every buffer a training step needs, sized once for the largest batch.

mod gemm;
pub mod gpu;
pub mod optim;

use std::time::{Duration, Instant};

use crate::quantize::{ShapeError, check_user_limits};

use self::gemm::{Epilogue, Layout, gemm};
pub use self::optim::{Adam, DenseGrads, Optimizer, OptimizerKind, Sgd};
use crate::dataset::Dataset;
use crate::rng::Rng;

/// Why a training configuration cannot be used; each names the limit it breaks.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TrainError {
    #[error("unknown optimizer '{0}': expected adam or sgd")]
    UnknownOptimizer(String),
    #[error(
        "hidden layer list '{list}': '{item}' is not a width (expected positive integers separated by commas, like 16,16, or none)"
    )]
    HiddenList { list: String, item: String },
    #[error("hidden layer {0} has width 0: must be at least 1")]
    ZeroWidth(usize),
    #[error("no input features: the data needs at least one feature column")]
    NoFeatures,
    #[error("{0} classes: need at least 2")]
    TooFewClasses(usize),
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("batch size 0: must be at least 1")]
    Batch,
    #[error("0 epochs: must be at least 1")]
    Epochs,
    #[error("learning rate {0}: must be a finite number > 0")]
    LearningRate(f32),
    #[error("no training rows")]
    NoData,
}

/// Parses a hidden layer list like `16,16` (spaces allowed), or `none`: no hidden layer, so the
/// model is one dense layer from the inputs to the classes (multinomial logistic regression, the
/// linear baseline). Widths are checked by [`TrainConfig::validate`], so that a too-wide layer
/// names the kernel limit.
pub fn parse_hidden(list: &str) -> Result<Vec<usize>, TrainError> {
    if list.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|item| {
            item.trim()
                .parse::<usize>()
                .map_err(|_| TrainError::HiddenList {
                    list: list.to_owned(),
                    item: item.trim().to_owned(),
                })
        })
        .collect()
}

/// Hyperparameters of one training run.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Widths of the hidden layers, input side first.
    pub hidden: Vec<usize>,
    pub epochs: usize,
    pub batch: usize,
    pub optimizer: OptimizerKind,
    pub lr: f32,
    /// Seeds the initial weights and the per-epoch shuffles.
    pub seed: u64,
}

impl TrainConfig {
    /// Checks what any float training needs: non-empty layers and data shape, a usable batch,
    /// epoch count and learning rate. Any width and depth trains; [`Self::check_quantizable`]
    /// adds the limits of a model that is to be quantized.
    pub fn validate(&self, num_inputs: usize, num_classes: usize) -> Result<(), TrainError> {
        if let Some(i) = self.hidden.iter().position(|&w| w == 0) {
            return Err(TrainError::ZeroWidth(i + 1));
        }
        if num_inputs == 0 {
            return Err(TrainError::NoFeatures);
        }
        if num_classes < 2 {
            return Err(TrainError::TooFewClasses(num_classes));
        }
        if self.batch == 0 {
            return Err(TrainError::Batch);
        }
        if self.epochs == 0 {
            return Err(TrainError::Epochs);
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(TrainError::LearningRate(self.lr));
        }
        Ok(())
    }

    /// [`Self::validate`], plus the limits of a model npk quantizes (depth and classes as in
    /// the kernel, widths up to [`crate::quantize::USER_MAX_WIDTH`]): checked before training a
    /// model that will be quantized, so that no time is spent on one that cannot be. Whether
    /// the kernel can hold the result is [`crate::quantize::IntModel::kernel_model`]'s to say.
    pub fn check_quantizable(
        &self,
        num_inputs: usize,
        num_classes: usize,
    ) -> Result<(), TrainError> {
        self.validate(num_inputs, num_classes)?;
        Ok(check_user_limits(num_inputs, &self.hidden, num_classes)?)
    }
}

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

impl Dense {
    /// He initialization for ReLU networks: `W ~ N(0, sqrt(2 / in_dim))`, bias 0. Draws the
    /// weights in row-major order.
    pub fn he(in_dim: usize, out_dim: usize, rng: &mut Rng) -> Self {
        let std = (2.0 / in_dim as f64).sqrt();
        Self {
            in_dim,
            out_dim,
            weights: (0..in_dim * out_dim)
                .map(|_| (rng.normal() * std) as f32)
                .collect(),
            bias: vec![0.0; out_dim],
        }
    }

    /// `y = x Wᵀ + b`, then ReLU when `relu`: bias and activation in one pass over `y`.
    ///
    /// # Shapes
    /// `x`: `batch x in_dim`; `y`: `batch x out_dim`.
    fn forward_into(&self, x: &[f32], batch: usize, relu: bool, y: &mut [f32]) {
        gemm(
            batch,
            self.in_dim,
            self.out_dim,
            x,
            Layout::Normal,
            &self.weights,
            Layout::Transposed,
            Epilogue::Bias {
                bias: &self.bias,
                relu,
            },
            y,
        );
    }
}

/// ReLU after every layer but the last, whose outputs are the logits.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    pub layers: Vec<Dense>,
}

impl Mlp {
    /// A He-initialized network `num_inputs -> hidden... -> num_classes`.
    pub fn new(num_inputs: usize, hidden: &[usize], num_classes: usize, rng: &mut Rng) -> Self {
        let widths: Vec<usize> = std::iter::once(num_inputs)
            .chain(hidden.iter().copied())
            .chain(std::iter::once(num_classes))
            .collect();
        Self {
            layers: widths
                .windows(2)
                .map(|w| Dense::he(w[0], w[1], rng))
                .collect(),
        }
    }

    pub fn num_inputs(&self) -> usize {
        self.layers.first().map_or(0, |l| l.in_dim)
    }

    pub fn num_classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out_dim)
    }

    /// The logits of a batch.
    ///
    /// # Shapes
    /// `x`: `batch x num_inputs()` (standardized features); returns `batch x num_classes()`.
    pub fn forward(&self, x: &[f32], batch: usize) -> Vec<f32> {
        let mut input = x.to_vec();
        for (l, layer) in self.layers.iter().enumerate() {
            let mut out = vec![0.0; batch * layer.out_dim];
            layer.forward_into(&input, batch, l + 1 < self.layers.len(), &mut out);
            input = out;
        }
        input
    }

    /// The predicted class of one standardized row.
    pub fn predict(&self, row: &[f32]) -> usize {
        argmax(&self.forward(row, 1))
    }

    /// Fraction of rows of `data` (standardized) whose label is the predicted class.
    pub fn accuracy(&self, data: &Dataset) -> f64 {
        if data.is_empty() {
            return 0.0;
        }
        let logits = self.forward(&data.features, data.len());
        let correct = logits
            .chunks_exact(self.num_classes())
            .zip(&data.labels)
            .filter(|&(row, &label)| argmax(row) == label as usize)
            .count();
        correct as f64 / data.len() as f64
    }
}

/// Index of the largest value; the first one on ties. Generic over the float type: f32 logits,
/// and the f64 reference of the quantizer's tests.
pub fn argmax<T: Copy + Into<f64>>(values: &[T]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
            let v = v.into();
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// Loss and hits of one training step, measured before the update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Mean softmax cross-entropy over the batch.
    pub loss: f32,
    /// Rows whose argmax logit is their label.
    pub correct: usize,
}

/// A model, its optimizer and every buffer one step needs, allocated once for `max_batch` rows;
/// smaller (last, partial) batches use a prefix of each buffer.
pub struct Trainer {
    mlp: Mlp,
    optimizer: Box<dyn Optimizer>,
    max_batch: usize,
    /// `acts[l]`: `max_batch x out_dim(l)`, the output of layer `l` (after ReLU for hidden
    /// layers; logits for the last).
    acts: Vec<Vec<f32>>,
    /// `deltas[l]`: `max_batch x out_dim(l)`, d loss / d pre-activation of layer `l`.
    deltas: Vec<Vec<f32>>,
    grads: Vec<DenseGrads>,
}

impl Trainer {
    pub fn new(mlp: Mlp, optimizer: Box<dyn Optimizer>, max_batch: usize) -> Self {
        let buffers = || {
            mlp.layers
                .iter()
                .map(|l| vec![0.0; max_batch * l.out_dim])
                .collect()
        };
        Self {
            acts: buffers(),
            deltas: buffers(),
            grads: DenseGrads::zeros_for(&mlp),
            mlp,
            optimizer,
            max_batch,
        }
    }

    pub fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    pub fn into_mlp(self) -> Mlp {
        self.mlp
    }

    /// Forward, backward and one optimizer update on a batch of standardized rows.
    ///
    /// # Shapes
    /// `x`: `labels.len() x num_inputs`, `1 <= labels.len() <= max_batch`, labels `< num_classes`.
    pub fn step(&mut self, x: &[f32], labels: &[u32]) -> StepStats {
        let macs: usize = self.mlp.layers.iter().map(|l| l.in_dim * l.out_dim).sum();
        let mut step = || {
            let stats = self.forward_backward(x, labels);
            self.optimizer.step(&mut self.mlp, &self.grads);
            stats
        };
        if labels.len() * macs >= gemm::PARALLEL_MACS {
            // On a rayon worker, each product or update the step splits is pushed onto that
            // worker's own deque, for the other to steal, instead of waking the pool from
            // outside and this thread after it, several times a step. A small step would
            // only pay for the one hand-over.
            rayon::scope(|_| step())
        } else {
            step()
        }
    }

    /// The predicted class of each row of a batch, into `out` (one per row), through the
    /// trainer's own buffers: nothing is allocated.
    ///
    /// # Shapes
    /// `x`: `out.len() x num_inputs`, `1 <= out.len() <= max_batch`.
    pub fn predict(&mut self, x: &[f32], out: &mut [u32]) {
        let m = out.len();
        self.forward(x, m);
        let k = self.mlp.num_classes();
        let logits = &self.acts[self.acts.len() - 1][..m * k];
        for (o, z) in out.iter_mut().zip(logits.chunks_exact(k)) {
            *o = argmax(z) as u32;
        }
    }

    /// Fills `self.acts` for a batch of `m` rows.
    fn forward(&mut self, x: &[f32], m: usize) {
        assert!(
            (1..=self.max_batch).contains(&m),
            "batch of {m} rows, buffers hold {}",
            self.max_batch
        );
        let layers = &self.mlp.layers;
        let last = layers.len() - 1;
        for (l, layer) in layers.iter().enumerate() {
            let (done, rest) = self.acts.split_at_mut(l);
            let input = if l == 0 {
                x
            } else {
                &done[l - 1][..m * layer.in_dim]
            };
            layer.forward_into(input, m, l < last, &mut rest[0][..m * layer.out_dim]);
        }
    }

    /// Forward and backward without the update: the gradient of the mean loss over the batch
    /// (kept in the trainer; the next [`Self::step`] overwrites it). For timing the backward
    /// pass apart from the update.
    ///
    /// # Shapes
    /// As [`Self::step`].
    pub fn gradients(&mut self, x: &[f32], labels: &[u32]) -> StepStats {
        self.forward_backward(x, labels)
    }

    /// Fills `self.grads` with the gradient of the mean loss over the batch.
    fn forward_backward(&mut self, x: &[f32], labels: &[u32]) -> StepStats {
        let m = labels.len();
        self.forward(x, m);
        let layers = &self.mlp.layers;
        let last = layers.len() - 1;
        let k = layers[last].out_dim;
        let logits = &self.acts[last][..m * k];
        let delta = &mut self.deltas[last][..m * k];
        let mut loss = 0.0;
        let mut correct = 0;
        for ((z, d), &y) in logits
            .chunks_exact(k)
            .zip(delta.chunks_exact_mut(k))
            .zip(labels)
        {
            let y = y as usize;
            let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            correct += usize::from(argmax(z) == y);
            let mut sum = 0.0;
            for (d, &v) in d.iter_mut().zip(z) {
                *d = (v - max).exp();
                sum += *d;
            }
            loss += sum.ln() + max - z[y];
            // d loss_mean / d z = (softmax(z) - onehot(y)) / m.
            for d in d.iter_mut() {
                *d /= sum * m as f32;
            }
            d[y] -= 1.0 / m as f32;
        }

        for l in (0..=last).rev() {
            let layer = &layers[l];
            let (lower, upper) = self.deltas.split_at_mut(l);
            let delta = &upper[0][..m * layer.out_dim];
            let input = if l == 0 {
                x
            } else {
                &self.acts[l - 1][..m * layer.in_dim]
            };
            let g = &mut self.grads[l];
            // dW = deltaᵀ · input: (out x m) · (m x in).
            gemm(
                layer.out_dim,
                m,
                layer.in_dim,
                delta,
                Layout::Transposed,
                input,
                Layout::Normal,
                Epilogue::Plain,
                &mut g.weights,
            );
            g.bias.fill(0.0);
            for row in delta.chunks_exact(layer.out_dim) {
                for (b, &d) in g.bias.iter_mut().zip(row) {
                    *b += d;
                }
            }
            if l > 0 {
                // d input = delta · W: (m x out) · (out x in), gated by the ReLU's derivative
                // (the input is the previous layer's ReLU output).
                gemm(
                    m,
                    layer.out_dim,
                    layer.in_dim,
                    delta,
                    Layout::Normal,
                    &layer.weights,
                    Layout::Normal,
                    Epilogue::Gate(input),
                    &mut lower[l - 1][..m * layer.in_dim],
                );
            }
        }
        StepStats {
            loss: loss / m as f32,
            correct,
        }
    }
}

/// What one epoch achieved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochStats {
    /// 1-based.
    pub epoch: usize,
    /// Mean training loss over the epoch's rows, measured before each batch's update.
    pub loss: f32,
    /// Training accuracy over the epoch, measured like `loss`; `None` on the GPU, whose step
    /// reports the loss only.
    pub train_accuracy: Option<f32>,
    /// Since training started.
    pub elapsed: Duration,
}

/// Trains a new model on `data` (standardized features): He init and per-epoch shuffles both
/// seeded by `config.seed`, mini-batches of `config.batch` rows (the last one may be smaller).
/// Calls `on_epoch` after every epoch. Any layer sizes train; see
/// [`TrainConfig::check_quantizable`] for a model meant to be quantized.
pub fn train(
    data: &Dataset,
    config: &TrainConfig,
    on_epoch: impl FnMut(&EpochStats),
) -> Result<Mlp, TrainError> {
    let (mut rng, mlp) = init(data, config)?;
    let optimizer = config.optimizer.build(&mlp, config.lr);
    let mut trainer = Trainer::new(mlp, optimizer, config.batch.min(data.len()));
    run_epochs(data, config, &mut rng, on_epoch, |x, y| {
        let s = trainer.step(x, y);
        Ok::<_, std::convert::Infallible>((s.loss, Some(s.correct)))
    })
    .unwrap_or_else(|never| match never {});
    Ok(trainer.into_mlp())
}

/// Validates `config` against `data` and draws the initial He weights; the returned generator
/// goes on to draw the shuffles, as in every run with this seed.
fn init(data: &Dataset, config: &TrainConfig) -> Result<(Rng, Mlp), TrainError> {
    config.validate(data.num_features, data.num_classes)?;
    if data.is_empty() {
        return Err(TrainError::NoData);
    }
    let mut rng = Rng::new(config.seed);
    let mlp = Mlp::new(
        data.num_features,
        &config.hidden,
        data.num_classes,
        &mut rng,
    );
    Ok((rng, mlp))
}

/// The epoch loop of every device: shuffle, gather each mini-batch into one buffer, call
/// `step(x, labels)`, which returns the batch's mean loss and, where the device reports it,
/// its number of correct predictions.
fn run_epochs<E>(
    data: &Dataset,
    config: &TrainConfig,
    rng: &mut Rng,
    mut on_epoch: impl FnMut(&EpochStats),
    mut step: impl FnMut(&[f32], &[u32]) -> Result<(f32, Option<usize>), E>,
) -> Result<(), E> {
    let (n, d) = (data.len(), data.num_features);
    let batch = config.batch.min(n);
    let mut order: Vec<usize> = (0..n).collect();
    let mut x = vec![0.0; batch * d];
    let mut y = vec![0; batch];
    let start = Instant::now();
    for epoch in 1..=config.epochs {
        rng.shuffle(&mut order);
        let mut loss = 0.0;
        let mut correct = Some(0);
        for rows in order.chunks(batch) {
            let m = rows.len();
            for (r, &i) in rows.iter().enumerate() {
                x[r * d..(r + 1) * d].copy_from_slice(data.row(i));
                y[r] = data.labels[i];
            }
            let (batch_loss, batch_correct) = step(&x[..m * d], &y[..m])?;
            loss += f64::from(batch_loss) * m as f64;
            correct = correct.zip(batch_correct).map(|(a, b)| a + b);
        }
        on_epoch(&EpochStats {
            epoch,
            loss: (loss / n as f64) as f32,
            train_accuracy: correct.map(|c| c as f32 / n as f32),
            elapsed: start.elapsed(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use npk_common::model::LimitError;

    use super::*;
    use crate::dataset::Standardizer;

    fn config() -> TrainConfig {
        TrainConfig {
            hidden: vec![16, 16],
            epochs: 100,
            batch: 16,
            optimizer: OptimizerKind::Adam,
            lr: 0.01,
            seed: 1,
        }
    }

    /// Mean cross-entropy from [`Mlp::forward`], in f64 after the logits.
    fn mean_loss(mlp: &Mlp, x: &[f32], labels: &[u32]) -> f64 {
        let k = mlp.num_classes();
        let logits = mlp.forward(x, labels.len());
        let total: f64 = logits
            .chunks_exact(k)
            .zip(labels)
            .map(|(z, &y)| {
                let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                let sum: f64 = z.iter().map(|&v| (v as f64 - max).exp()).sum();
                sum.ln() + max - z[y as usize] as f64
            })
            .sum();
        total / labels.len() as f64
    }

    fn param(m: &mut Mlp, layer: usize, is_bias: bool, i: usize) -> &mut f32 {
        let layer = &mut m.layers[layer];
        if is_bias {
            &mut layer.bias[i]
        } else {
            &mut layer.weights[i]
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = Rng::new(11);
        let mut mlp = Mlp::new(3, &[5, 4], 3, &mut rng);
        // Nonzero biases so that the bias gradients of ReLU units are exercised.
        for layer in &mut mlp.layers {
            layer
                .bias
                .iter_mut()
                .for_each(|b| *b = rng.normal() as f32 * 0.1);
        }
        let x: Vec<f32> = (0..4 * 3).map(|_| rng.normal() as f32).collect();
        let labels = [0, 2, 1, 2];
        let mut trainer = Trainer::new(mlp.clone(), OptimizerKind::Sgd.build(&mlp, 0.1), 8);
        let stats = trainer.forward_backward(&x, &labels);
        assert!((f64::from(stats.loss) - mean_loss(&mlp, &x, &labels)).abs() < 1e-5);

        let eps = 1e-2;
        let mut checked = 0;
        for l in 0..mlp.layers.len() {
            for (is_bias, n) in [
                (false, mlp.layers[l].weights.len()),
                (true, mlp.layers[l].bias.len()),
            ] {
                for i in 0..n {
                    let mut plus = mlp.clone();
                    *param(&mut plus, l, is_bias, i) += eps;
                    let mut minus = mlp.clone();
                    *param(&mut minus, l, is_bias, i) -= eps;
                    let numeric = (mean_loss(&plus, &x, &labels) - mean_loss(&minus, &x, &labels))
                        / (2.0 * f64::from(eps));
                    let g = &trainer.grads[l];
                    let analytic = f64::from(if is_bias { g.bias[i] } else { g.weights[i] });
                    assert!(
                        (numeric - analytic).abs() <= 1e-3 + 1e-2 * analytic.abs(),
                        "layer {l} {} {i}: numeric {numeric}, analytic {analytic}",
                        if is_bias { "bias" } else { "weight" }
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, (3 * 5 + 5) + (5 * 4 + 4) + (4 * 3 + 3));
    }

    #[test]
    fn he_init_has_the_right_spread_and_zero_bias() {
        let mut rng = Rng::new(2);
        let layer = Dense::he(50, 200, &mut rng);
        let var = layer
            .weights
            .iter()
            .map(|w| f64::from(*w).powi(2))
            .sum::<f64>()
            / layer.weights.len() as f64;
        assert!((var - 2.0 / 50.0).abs() < 0.004, "var {var}");
        assert!(layer.bias.iter().all(|&b| b == 0.0));
    }

    fn iris() -> (Dataset, Dataset) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/iris.csv");
        let (train, test) = Dataset::load_csv(&path).unwrap().split(0.2, 1).unwrap();
        let s = Standardizer::fit(&train);
        (s.apply(&train), s.apply(&test))
    }

    #[test]
    fn same_seed_gives_identical_weights() {
        let (train_set, _) = iris();
        let cfg = TrainConfig {
            epochs: 3,
            ..config()
        };
        let a = train(&train_set, &cfg, |_| {}).unwrap();
        let b = train(&train_set, &cfg, |_| {}).unwrap();
        assert_eq!(a, b);
        let c = train(&train_set, &TrainConfig { seed: 2, ..cfg }, |_| {}).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn learns_iris_with_both_optimizers() {
        let (train_set, test_set) = iris();
        for (optimizer, lr) in [(OptimizerKind::Adam, 0.01), (OptimizerKind::Sgd, 0.05)] {
            let mut epochs = Vec::new();
            let cfg = TrainConfig {
                optimizer,
                lr,
                epochs: 60,
                ..config()
            };
            let mlp = train(&train_set, &cfg, |e| epochs.push(*e)).unwrap();
            assert_eq!(epochs.len(), 60);
            assert!(
                epochs[59].loss < epochs[0].loss / 4.0,
                "{optimizer}: {:?}",
                (epochs[0], epochs[59])
            );
            let acc = mlp.accuracy(&test_set);
            assert!(acc >= 0.9, "{optimizer}: test accuracy {acc}");
            let predicted: Vec<usize> = (0..test_set.len())
                .map(|i| mlp.predict(test_set.row(i)))
                .collect();
            let hits = predicted
                .iter()
                .zip(&test_set.labels)
                .filter(|&(&p, &l)| p == l as usize)
                .count();
            assert_eq!(hits as f64 / test_set.len() as f64, acc);
        }
    }

    #[test]
    fn partial_last_batch_and_batch_larger_than_data() {
        let (train_set, _) = iris();
        assert_eq!(train_set.len(), 120);
        for batch in [7, 1000] {
            let mut seen = 0;
            train(
                &train_set,
                &TrainConfig {
                    epochs: 1,
                    batch,
                    ..config()
                },
                |_| seen += 1,
            )
            .unwrap();
            assert_eq!(seen, 1);
        }
    }

    #[test]
    fn validation_names_each_limit() {
        let err = |c: TrainConfig| c.check_quantizable(4, 3).unwrap_err().to_string();
        assert_eq!(
            err(TrainConfig {
                hidden: vec![16, 4097],
                ..config()
            }),
            "hidden layer 2 has width 4097: must be 1..=4096 (the widest layer npk quantizes)"
        );
        assert_eq!(
            err(TrainConfig {
                hidden: vec![8, 0],
                ..config()
            }),
            "hidden layer 2 has width 0: must be at least 1"
        );
        assert_eq!(
            err(TrainConfig {
                hidden: vec![8; 4],
                ..config()
            }),
            "4 hidden layers: at most 3 (the kernel runs at most MAX_LAYERS = 4 dense layers, the output layer included)"
        );
        assert_eq!(
            err(TrainConfig {
                batch: 0,
                ..config()
            }),
            "batch size 0: must be at least 1"
        );
        assert_eq!(
            err(TrainConfig {
                epochs: 0,
                ..config()
            }),
            "0 epochs: must be at least 1"
        );
        assert_eq!(
            err(TrainConfig {
                lr: f32::NAN,
                ..config()
            }),
            "learning rate NaN: must be a finite number > 0"
        );
        assert!(
            TrainConfig {
                lr: 0.0,
                ..config()
            }
            .validate(4, 3)
            .is_err()
        );
        assert_eq!(
            config().check_quantizable(4, 17).unwrap_err().to_string(),
            "17 classes: must be 2..=16 (the kernel's MAX_CLASSES)"
        );
        assert_eq!(
            config().check_quantizable(4097, 3).unwrap_err().to_string(),
            "4097 input features: must be 1..=4096 (the widest layer npk quantizes)"
        );
        assert_eq!(
            config().validate(0, 3).unwrap_err().to_string(),
            "no input features: the data needs at least one feature column"
        );
        assert_eq!(
            config().validate(4, 1).unwrap_err().to_string(),
            "1 classes: need at least 2"
        );
        assert!(
            TrainConfig {
                hidden: vec![128; 3],
                ..config()
            }
            .check_quantizable(128, 16)
            .is_ok()
        );
        // Wider than the kernel: Fashion-MNIST's network, and 1,024 inputs into layers of 2,048.
        for (inputs, hidden) in [(784, vec![256, 128]), (1024, vec![2048; 3])] {
            let c = TrainConfig { hidden, ..config() };
            assert_eq!(c.check_quantizable(inputs, 10), Ok(()));
        }
        assert_eq!(
            TrainConfig {
                hidden: vec![4096; 3],
                ..config()
            }
            .check_quantizable(4096, 10)
            .unwrap_err()
            .to_string(),
            "50372608 weights: at most 16777216 (what a model file holds)"
        );
        assert!(
            TrainConfig {
                hidden: vec![],
                ..config()
            }
            .check_quantizable(4, 3)
            .is_ok()
        );
        // Float training alone takes any width, depth, input and class count.
        let wide = TrainConfig {
            hidden: vec![1600, 2600, 1600, 2500],
            ..config()
        };
        assert!(wide.validate(200, 40).is_ok());
        assert_eq!(
            wide.check_quantizable(4, 3).unwrap_err(),
            TrainError::Shape(ShapeError::Kernel(LimitError::HiddenLayers(4)))
        );
        let (mut empty, _) = iris();
        empty.features.clear();
        empty.labels.clear();
        assert_eq!(
            train(&empty, &config(), |_| {}).unwrap_err(),
            TrainError::NoData
        );
    }

    #[test]
    fn hidden_lists_parse_or_name_the_bad_item() {
        assert_eq!(parse_hidden("16,16").unwrap(), [16, 16]);
        assert_eq!(parse_hidden(" 64, 32 ").unwrap(), [64, 32]);
        assert_eq!(parse_hidden("none").unwrap(), [] as [usize; 0]);
        assert_eq!(parse_hidden(" None ").unwrap(), [] as [usize; 0]);
        for (list, item) in [
            ("16,,16", ""),
            ("16,x", "x"),
            ("", ""),
            ("-4", "-4"),
            ("16;16", "16;16"),
        ] {
            assert_eq!(
                parse_hidden(list).unwrap_err(),
                TrainError::HiddenList {
                    list: list.into(),
                    item: item.into()
                }
            );
        }
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, -1.0]), 1);
        assert_eq!(argmax(&[-3.0]), 0);
    }
}
