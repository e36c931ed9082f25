//! The element-wise and reduction kernels, compiled once by NVRTC when a trainer is built.
//!
//! Matrices are row-major `[rows][cols]` like the host buffers. Every count is an `int`: the
//! layout checks keep them below `i32::MAX`.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, LaunchConfig};
use cudarc::nvrtc::{self, CompileError, Ptx};

use crate::GpuError;

/// Threads per block for every launch; `sum_losses` relies on it being a power of two.
pub(crate) const BLOCK: u32 = 256;

/// CUDA C for every kernel; `compile` prepends `#define BLOCK` from [`BLOCK`].
pub(crate) const SOURCE: &str = r#"
// y[r][c] += bias[c], then ReLU when `relu` is set (every layer but the last).
extern "C" __global__ void bias_act(float *y, const float *bias, int rows, int cols, int relu) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    float v = y[i] + bias[i % cols];
    y[i] = (relu && !(v > 0.0f)) ? 0.0f : v;
}

// Back through ReLU: `act` is the layer's output after ReLU, positive exactly where the
// pre-activation was, so the gradient passes there and is zero elsewhere.
extern "C" __global__ void relu_backward(float *grad, const float *act, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (!(act[i] > 0.0f)) grad[i] = 0.0f;
}

// One thread per row: loss[r] = logsumexp(logits[r]) - logits[r][label], and the gradient of
// the batch-mean loss, grad[r][c] = (softmax(logits[r])[c] - [c == label]) / rows.
extern "C" __global__ void softmax_ce(const float *logits, const unsigned int *labels, float *grad,
                                      float *loss, int rows, int classes) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float *z = logits + (size_t)r * classes;
    float *g = grad + (size_t)r * classes;
    float max = z[0];
    for (int c = 1; c < classes; c++) max = fmaxf(max, z[c]);
    float sum = 0.0f;
    for (int c = 0; c < classes; c++) sum += expf(z[c] - max);
    unsigned int label = labels[r];
    loss[r] = logf(sum) + max - z[label];
    float inv_rows = 1.0f / (float)rows;
    for (int c = 0; c < classes; c++) {
        float p = expf(z[c] - max) / sum;
        g[c] = (p - (c == (int)label ? 1.0f : 0.0f)) * inv_rows;
    }
}

// Launched as ONE block of BLOCK threads: out[0] = mean of loss[0..n], in a fixed order so
// the result does not depend on scheduling.
extern "C" __global__ void sum_losses(const float *loss, float *out, int n) {
    __shared__ float part[BLOCK];
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += BLOCK) s += loss[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (int w = BLOCK / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = part[0] / (float)n;
}

// One thread per column: db[c] = sum over rows of dy[r][c] (adjacent threads read adjacent
// addresses, so each row's read is coalesced).
extern "C" __global__ void bias_grad(const float *dy, float *db, int rows, int cols) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float s = 0.0f;
    for (int r = 0; r < rows; r++) s += dy[(size_t)r * cols + c];
    db[c] = s;
}

// SGD with momentum: v = momentum * v + g; w -= lr * v.
extern "C" __global__ void sgd(float *w, float *v, const float *g, int n, float lr, float momentum) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float vi = momentum * v[i] + g[i];
    v[i] = vi;
    w[i] -= lr * vi;
}

// Adam with bias correction; bc1 = 1 - beta1^t and bc2 = 1 - beta2^t come from the host.
extern "C" __global__ void adam(float *w, float *m, float *v, const float *g, int n, float lr,
                                float beta1, float beta2, float eps, float bc1, float bc2) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i];
    float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] -= lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
}

// One thread per row: the index of the largest logit, the lowest one on ties.
extern "C" __global__ void argmax(const float *logits, unsigned int *out, int rows, int classes) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float *z = logits + (size_t)r * classes;
    int best = 0;
    for (int c = 1; c < classes; c++) if (z[c] > z[best]) best = c;
    out[r] = (unsigned int)best;
}
"#;

/// The entry points of [`SOURCE`], in [`Kernels`] field order.
pub(crate) const NAMES: [&str; 8] = [
    "bias_act",
    "relu_backward",
    "softmax_ce",
    "sum_losses",
    "bias_grad",
    "sgd",
    "adam",
    "argmax",
];

pub(crate) struct Kernels {
    pub bias_act: CudaFunction,
    pub relu_backward: CudaFunction,
    pub softmax_ce: CudaFunction,
    pub sum_losses: CudaFunction,
    pub bias_grad: CudaFunction,
    pub sgd: CudaFunction,
    pub adam: CudaFunction,
    pub argmax: CudaFunction,
}

impl Kernels {
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self, GpuError> {
        let module = ctx.load_module(compile()?).map_err(GpuError::KernelLoad)?;
        let [
            bias_act,
            relu_backward,
            softmax_ce,
            sum_losses,
            bias_grad,
            sgd,
            adam,
            argmax,
        ] = NAMES.map(|name| module.load_function(name).map_err(GpuError::KernelLoad));
        Ok(Self {
            bias_act: bias_act?,
            relu_backward: relu_backward?,
            softmax_ce: softmax_ce?,
            sum_losses: sum_losses?,
            bias_grad: bias_grad?,
            sgd: sgd?,
            adam: adam?,
            argmax: argmax?,
        })
    }
}

/// Compiles [`SOURCE`] to PTX for the default virtual architecture, which the driver JITs for
/// the device at load time. Checks libnvrtc first: cudarc panics on a missing library.
pub(crate) fn compile() -> Result<Ptx, GpuError> {
    crate::require_library("libnvrtc (CUDA 12 NVRTC)", || unsafe {
        nvrtc::sys::is_culib_present()
    })?;
    nvrtc::compile_ptx(format!("#define BLOCK {BLOCK}\n{SOURCE}")).map_err(|e| match e {
        CompileError::CompileError { log, .. } => {
            GpuError::Compile(log.to_string_lossy().into_owned())
        }
        other => GpuError::Compile(format!("{other:?}")),
    })
}

/// One thread per element, [`BLOCK`] per block.
pub(crate) fn grid(n: usize) -> LaunchConfig {
    // n <= i32::MAX (layout checks), so the block count fits a u32 grid dimension.
    LaunchConfig {
        grid_dim: ((n as u32).div_ceil(BLOCK), 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs only libnvrtc, not a GPU; skips when the library is absent.
    #[test]
    fn source_compiles_with_every_entry_point() {
        let ptx = match compile() {
            Ok(ptx) => ptx,
            Err(GpuError::Unavailable(reason)) => {
                println!("skipped: {reason}");
                return;
            }
            Err(e) => panic!("kernel source does not compile: {e}"),
        };
        let text = ptx.to_src();
        for name in NAMES {
            assert!(
                text.contains(&format!(".entry {name}(")),
                "no entry point {name} in the PTX"
            );
        }
    }

    #[test]
    fn grid_covers_every_element_once() {
        assert_eq!(grid(1).grid_dim, (1, 1, 1));
        assert_eq!(grid(256).grid_dim, (1, 1, 1));
        assert_eq!(grid(257).grid_dim, (2, 1, 1));
        assert_eq!(
            grid(i32::MAX as usize).grid_dim.0,
            (i32::MAX as u32).div_ceil(BLOCK)
        );
    }
}
