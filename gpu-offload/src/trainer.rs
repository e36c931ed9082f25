//! The trainer: device buffers allocated once, cuBLAS for the matrix products, the NVRTC
//! kernels of [`crate::kernels`] for everything else.
//!
//! # cuBLAS and row-major buffers
//! cuBLAS is column-major: a row-major `r x c` buffer read column-major is the `c x r` matrix,
//! its transpose. Every matrix here is row-major, so cuBLAS sees `X^T` (`in x batch`), `W^T`
//! (`in x out`), `Y^T` and `dY^T` (`out x batch`), and each product is written for those
//! transposes (leading dimension = the row-major row length):
//! - forward `Y = X W^T`  <=> `Y^T = W X^T`   = op_T(W^T buf) * X^T buf:   T, N, m=out, n=batch, k=in
//! - `dW = dY^T X`        <=> `dW^T = X^T dY` = X^T buf * op_T(dY^T buf):  N, T, m=in, n=out, k=batch
//! - `dX = dY W`          <=> `dX^T = W^T dY^T` = W^T buf * dY^T buf:      N, N, m=in, n=batch, k=out

use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaSlice, CudaStream, LaunchConfig, PushKernelArg};

use crate::kernels::{BLOCK, Kernels, grid};
use crate::layout::{Layout, check_optimizer};
use crate::{GpuError, GpuOptimizer, LayerWeights, open_device};

/// Trains one MLP on device 0.
///
/// Each [`GpuTrainer::step`] uploads the batch and labels, runs forward, loss, backward and
/// the optimizer update on the device, and downloads only the mean loss.
pub struct GpuTrainer {
    layout: Layout,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    kernels: Kernels,
    device_name: String,
    /// Every layer's weights then bias, back to back (see [`Layout`]).
    params: CudaSlice<f32>,
    /// Gradient of the mean loss, in the layout of `params`.
    grads: CudaSlice<f32>,
    optimizer: OptimizerState,
    /// `acts[0]` is the input batch, `acts[l + 1]` layer `l`'s output (after ReLU but the last).
    acts: Vec<CudaSlice<f32>>,
    /// `deltas[l]`: gradient of the mean loss with respect to layer `l`'s pre-activation output.
    deltas: Vec<CudaSlice<f32>>,
    labels: CudaSlice<u32>,
    row_loss: CudaSlice<f32>,
    mean_loss: CudaSlice<f32>,
    predictions: CudaSlice<u32>,
}

// npk may move a trainer to a worker thread: every public call starts with a copy or an
// allocation, which binds the CUDA context to the calling thread first.
const _: fn() = || {
    fn is_send<T: Send>() {}
    is_send::<GpuTrainer>();
};

/// Hyper-parameters plus the per-parameter state, in the layout of `params`.
enum OptimizerState {
    Sgd {
        lr: f32,
        momentum: f32,
        velocity: CudaSlice<f32>,
    },
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        m: CudaSlice<f32>,
        v: CudaSlice<f32>,
        t: i32,
    },
}

impl GpuTrainer {
    /// Uploads `layers` and allocates every buffer for batches of up to `max_batch` rows.
    ///
    /// Shapes and hyper-parameters are checked before any GPU call; fails with
    /// [`GpuError::Unavailable`] when no driver/device/library is there, the message naming it.
    pub fn new(
        layers: &[LayerWeights],
        optimizer: GpuOptimizer,
        max_batch: usize,
    ) -> Result<Self, GpuError> {
        let layout = Layout::new(layers, max_batch)?;
        check_optimizer(&optimizer)?;
        let ctx = open_device()?;
        let device_name = ctx.name()?;
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone())?;
        let kernels = Kernels::load(&ctx)?;

        let params = stream.clone_htod(&layout.pack(layers))?;
        let grads = stream.alloc_zeros::<f32>(layout.params)?;
        let optimizer = match optimizer {
            GpuOptimizer::Sgd { lr, momentum } => OptimizerState::Sgd {
                lr,
                momentum,
                velocity: stream.alloc_zeros(layout.params)?,
            },
            GpuOptimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => OptimizerState::Adam {
                lr,
                beta1,
                beta2,
                eps,
                m: stream.alloc_zeros(layout.params)?,
                v: stream.alloc_zeros(layout.params)?,
                t: 0,
            },
        };
        let mut acts = vec![stream.alloc_zeros(max_batch * layout.in_dim())?];
        let mut deltas = Vec::with_capacity(layout.slots.len());
        for s in &layout.slots {
            acts.push(stream.alloc_zeros(max_batch * s.out_dim)?);
            deltas.push(stream.alloc_zeros(max_batch * s.out_dim)?);
        }
        Ok(Self {
            labels: stream.alloc_zeros(max_batch)?,
            row_loss: stream.alloc_zeros(max_batch)?,
            mean_loss: stream.alloc_zeros(1)?,
            predictions: stream.alloc_zeros(max_batch)?,
            layout,
            stream,
            blas,
            kernels,
            device_name,
            params,
            grads,
            optimizer,
            acts,
            deltas,
        })
    }

    /// One training step on a batch and returns its mean loss (before the update).
    ///
    /// # Shapes
    /// `x`: `batch x in_dim` row-major; `labels`: `batch`, each below the class count.
    pub fn step(&mut self, x: &[f32], labels: &[u32]) -> Result<f32, GpuError> {
        let batch = labels.len();
        self.layout.check_batch(x, batch, Some(labels))?;
        self.stream.memcpy_htod(labels, &mut self.labels)?;
        self.forward(x, batch)?;
        self.loss_and_gradient(batch)?;
        self.backward(batch)?;
        self.update()?;
        let mut loss = [0.0f32];
        self.stream.memcpy_dtoh(&self.mean_loss, &mut loss)?;
        self.stream.synchronize()?;
        Ok(loss[0])
    }

    /// Forward only: the predicted class of each row (the lowest index on ties).
    ///
    /// # Shapes
    /// `x`: `batch x in_dim` row-major with `batch = out.len()`.
    pub fn predict(&mut self, x: &[f32], out: &mut [u32]) -> Result<(), GpuError> {
        let batch = out.len();
        self.layout.check_batch(x, batch, None)?;
        self.forward(x, batch)?;
        let (rows, classes) = (batch as i32, self.layout.classes() as i32);
        let mut launch = self.stream.launch_builder(&self.kernels.argmax);
        launch
            .arg(&self.acts[self.acts.len() - 1])
            .arg(&mut self.predictions)
            .arg(&rows)
            .arg(&classes);
        // SAFETY: argmax(const float*, unsigned*, int, int); logits hold rows x classes floats
        // and predictions max_batch >= rows entries.
        unsafe { launch.launch(grid(batch)) }?;
        self.stream
            .memcpy_dtoh(&self.predictions.slice(..batch), out)?;
        self.stream.synchronize()?;
        Ok(())
    }

    /// The current weights.
    pub fn download(&self) -> Result<Vec<LayerWeights>, GpuError> {
        let packed = self.stream.clone_dtoh(&self.params)?;
        self.stream.synchronize()?;
        Ok(self.layout.unpack(&packed))
    }

    pub fn device_name(&self) -> String {
        self.device_name.clone()
    }

    /// Uploads `x` into `acts[0]` and fills `acts[1..]`.
    fn forward(&mut self, x: &[f32], batch: usize) -> Result<(), GpuError> {
        self.stream.memcpy_htod(x, &mut self.acts[0])?;
        let last = self.layout.slots.len() - 1;
        for (l, s) in self.layout.slots.iter().enumerate() {
            let (done, rest) = self.acts.split_at_mut(l + 1);
            let (input, output) = (&done[l], &mut rest[0]);
            let w = self.params.slice(s.weights..s.bias);
            let b = self.params.slice(s.bias..s.bias + s.out_dim);
            let cfg = gemm(
                CUBLAS_OP_T,
                CUBLAS_OP_N,
                s.out_dim,
                batch,
                s.in_dim,
                s.in_dim,
                s.in_dim,
                s.out_dim,
            );
            // SAFETY: W^T buf is in x out (lda in), X^T buf in x batch (ldb in), Y^T buf
            // out x batch (ldc out); every buffer holds at least that many floats.
            unsafe { self.blas.gemm(cfg, &w, input, output) }?;
            let (rows, cols, relu) = (batch as i32, s.out_dim as i32, i32::from(l < last));
            let mut launch = self.stream.launch_builder(&self.kernels.bias_act);
            launch.arg(output).arg(&b).arg(&rows).arg(&cols).arg(&relu);
            // SAFETY: bias_act(float*, const float*, int, int, int) over rows x cols floats.
            unsafe { launch.launch(grid(batch * s.out_dim)) }?;
        }
        Ok(())
    }

    /// Per-row losses and their mean into `mean_loss`; the logits' gradient into the last delta.
    fn loss_and_gradient(&mut self, batch: usize) -> Result<(), GpuError> {
        let (rows, classes) = (batch as i32, self.layout.classes() as i32);
        let logits = &self.acts[self.acts.len() - 1];
        let last = self.deltas.len() - 1;
        let delta = &mut self.deltas[last];
        let mut launch = self.stream.launch_builder(&self.kernels.softmax_ce);
        launch
            .arg(logits)
            .arg(&self.labels)
            .arg(delta)
            .arg(&mut self.row_loss)
            .arg(&rows)
            .arg(&classes);
        // SAFETY: softmax_ce(const float*, const unsigned*, float*, float*, int, int); labels
        // were checked below `classes` on the host; every buffer holds `rows` rows.
        unsafe { launch.launch(grid(batch)) }?;
        let mut launch = self.stream.launch_builder(&self.kernels.sum_losses);
        launch
            .arg(&self.row_loss)
            .arg(&mut self.mean_loss)
            .arg(&rows);
        let one_block = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: sum_losses(const float*, float*, int) as the single block it requires.
        unsafe { launch.launch(one_block) }?;
        Ok(())
    }

    /// Fills `grads` from the last delta back to the first layer.
    fn backward(&mut self, batch: usize) -> Result<(), GpuError> {
        let rows = batch as i32;
        for (l, s) in self.layout.slots.iter().enumerate().rev() {
            let mut dw = self.grads.slice_mut(s.weights..s.bias);
            let cfg = gemm(
                CUBLAS_OP_N,
                CUBLAS_OP_T,
                s.in_dim,
                s.out_dim,
                batch,
                s.in_dim,
                s.out_dim,
                s.in_dim,
            );
            // SAFETY: X^T buf in x batch (lda in), dY^T buf out x batch (ldb out), dW^T in x out
            // (ldc in), the view holding exactly in x out floats.
            unsafe { self.blas.gemm(cfg, &self.acts[l], &self.deltas[l], &mut dw) }?;
            let mut db = self.grads.slice_mut(s.bias..s.bias + s.out_dim);
            let cols = s.out_dim as i32;
            let mut launch = self.stream.launch_builder(&self.kernels.bias_grad);
            launch
                .arg(&self.deltas[l])
                .arg(&mut db)
                .arg(&rows)
                .arg(&cols);
            // SAFETY: bias_grad(const float*, float*, int, int); db holds cols floats.
            unsafe { launch.launch(grid(s.out_dim)) }?;
            if l == 0 {
                break; // the input's gradient is not needed
            }
            let (before, from_l) = self.deltas.split_at_mut(l);
            let (dx, dy) = (&mut before[l - 1], &from_l[0]);
            let w = self.params.slice(s.weights..s.bias);
            let cfg = gemm(
                CUBLAS_OP_N,
                CUBLAS_OP_N,
                s.in_dim,
                batch,
                s.out_dim,
                s.in_dim,
                s.out_dim,
                s.in_dim,
            );
            // SAFETY: W^T buf in x out (lda in), dY^T buf out x batch (ldb out), dX^T buf
            // in x batch (ldc in): deltas[l - 1] is layer l-1's output, in_dim wide.
            unsafe { self.blas.gemm(cfg, &w, dy, dx) }?;
            let n = (batch * s.in_dim) as i32;
            let mut launch = self.stream.launch_builder(&self.kernels.relu_backward);
            launch.arg(dx).arg(&self.acts[l]).arg(&n);
            // SAFETY: relu_backward(float*, const float*, int) over batch x in floats of both.
            unsafe { launch.launch(grid(batch * s.in_dim)) }?;
        }
        Ok(())
    }

    /// One optimizer launch over every parameter.
    fn update(&mut self) -> Result<(), GpuError> {
        let n = self.layout.params as i32;
        match &mut self.optimizer {
            OptimizerState::Sgd {
                lr,
                momentum,
                velocity,
            } => {
                let (lr, momentum) = (*lr, *momentum);
                let mut launch = self.stream.launch_builder(&self.kernels.sgd);
                launch
                    .arg(&mut self.params)
                    .arg(velocity)
                    .arg(&self.grads)
                    .arg(&n)
                    .arg(&lr)
                    .arg(&momentum);
                // SAFETY: sgd(float*, float*, const float*, int, float, float); all n long.
                unsafe { launch.launch(grid(self.layout.params)) }?;
            }
            OptimizerState::Adam {
                lr,
                beta1,
                beta2,
                eps,
                m,
                v,
                t,
            } => {
                *t = t.saturating_add(1);
                let bc1 = 1.0 - beta1.powi(*t);
                let bc2 = 1.0 - beta2.powi(*t);
                let mut launch = self.stream.launch_builder(&self.kernels.adam);
                launch
                    .arg(&mut self.params)
                    .arg(m)
                    .arg(v)
                    .arg(&self.grads)
                    .arg(&n);
                launch
                    .arg(&*lr)
                    .arg(&*beta1)
                    .arg(&*beta2)
                    .arg(&*eps)
                    .arg(&bc1)
                    .arg(&bc2);
                // SAFETY: adam(float*, float*, float*, const float*, int, float x 6); all n long.
                unsafe { launch.launch(grid(self.layout.params)) }?;
            }
        }
        Ok(())
    }
}

/// A plain (alpha 1, beta 0) cuBLAS product; see the module docs for how each is derived.
#[expect(
    clippy::too_many_arguments,
    reason = "mirrors cublasSgemm's own parameter list"
)]
fn gemm(
    transa: cudarc::cublas::sys::cublasOperation_t,
    transb: cudarc::cublas::sys::cublasOperation_t,
    m: usize,
    n: usize,
    k: usize,
    lda: usize,
    ldb: usize,
    ldc: usize,
) -> GemmConfig<f32> {
    // Every dimension is a layer width or the batch size, checked below i32::MAX by Layout.
    GemmConfig {
        transa,
        transb,
        m: m as i32,
        n: n as i32,
        k: k as i32,
        alpha: 1.0,
        lda: lda as i32,
        ldb: ldb as i32,
        beta: 0.0,
        ldc: ldc as i32,
    }
}
