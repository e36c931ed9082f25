//! MLP training on an NVIDIA GPU through cudarc, with the same math as npk's CPU trainer.
//!
//! Dense layers (weights `[out][in]` row-major, bias `[out]`), ReLU after every layer but the
//! last, softmax cross-entropy averaged over the batch, SGD with momentum or Adam. The CUDA
//! libraries are opened at run time (cudarc's `dynamic-loading`), so this crate builds without
//! a CUDA toolkit; without a driver or device every entry point returns
//! [`GpuError::Unavailable`] saying what is missing.
//!
//! Plain slices in and out, no dependency on npk-user, so npk-user can depend on this crate.

mod kernels;
mod layout;
mod trainer;

pub use trainer::GpuTrainer;

use std::sync::Arc;

use cudarc::cublas::result::CublasError;
use cudarc::driver::{CudaContext, DriverError};

/// A dense layer `y = W x + b`.
///
/// # Shapes
/// `weights`: `out_dim x in_dim` row-major (`[out][in]`); `bias`: `out_dim`.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerWeights {
    pub in_dim: usize,
    pub out_dim: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// The update rule, applied to weights and biases alike.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GpuOptimizer {
    /// `v = momentum * v + g; w -= lr * v`.
    Sgd { lr: f32, momentum: f32 },
    /// Adam with bias correction at step `t` (from 1):
    /// `m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;`
    /// `w -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
    },
}

/// What can go wrong: shape errors name the layer, field, row or limit and are found before any
/// GPU call; `Unavailable` names the missing driver, device or library.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("GPU unavailable: {0}")]
    Unavailable(String),
    #[error("the network has no layers")]
    NoLayers,
    #[error("max_batch is 0")]
    ZeroMaxBatch,
    #[error("layer {layer}: in_dim {in_dim} x out_dim {out_dim} has a zero dimension")]
    EmptyLayer {
        layer: usize,
        in_dim: usize,
        out_dim: usize,
    },
    #[error(
        "layer {layer}: in_dim {in_dim} differs from the previous layer's out_dim {previous_out}"
    )]
    LayerChain {
        layer: usize,
        in_dim: usize,
        previous_out: usize,
    },
    #[error("layer {layer}: {field} has {got} values, expected {expected}")]
    LayerLength {
        layer: usize,
        field: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("layer {layer}: {field}[{index}] is not finite")]
    NonFiniteWeight {
        layer: usize,
        field: &'static str,
        index: usize,
    },
    #[error("{what} is {value}, above the GPU limit of i32::MAX ({})", i32::MAX)]
    TooLarge { what: &'static str, value: usize },
    #[error("optimizer {name} = {value}: expected {expected}")]
    Hyperparameter {
        name: &'static str,
        value: f32,
        expected: &'static str,
    },
    #[error("batch of {batch} rows: expected 1..={max} (max_batch)")]
    BatchSize { batch: usize, max: usize },
    #[error("input has {got} values, expected {expected} ({batch} rows x in_dim {in_dim})")]
    InputLength {
        batch: usize,
        in_dim: usize,
        expected: usize,
        got: usize,
    },
    #[error("input row {row}, column {column} is not finite")]
    NonFiniteInput { row: usize, column: usize },
    #[error("label {label} of row {row} is not below the {classes} classes")]
    Label {
        row: usize,
        label: u32,
        classes: usize,
    },
    #[error("NVRTC could not compile the kernels: {0}")]
    Compile(String),
    /// The usual cause is an NVRTC newer than the driver (`CUDA_ERROR_UNSUPPORTED_PTX_VERSION`).
    #[error(
        "the CUDA driver could not load the NVRTC-built kernels (is libnvrtc newer than the driver?): {0}"
    )]
    KernelLoad(DriverError),
    #[error("CUDA driver: {0}")]
    Driver(#[from] DriverError),
    #[error("cuBLAS: {0}")]
    Blas(#[from] CublasError),
}

/// Opens device 0 and returns its name, or [`GpuError::Unavailable`] naming what is missing
/// (driver library, device, cuBLAS, NVRTC).
pub fn gpu_available() -> Result<String, GpuError> {
    Ok(open_device()?.name()?)
}

/// Checks every library before the first call into it (cudarc panics on a missing library),
/// then opens device 0.
fn open_device() -> Result<Arc<CudaContext>, GpuError> {
    // SAFETY (all three): the probes only try to open the library and close it again.
    require_library("libcuda (the NVIDIA driver)", || unsafe {
        cudarc::driver::sys::is_culib_present()
    })?;
    let count = CudaContext::device_count().map_err(|e| {
        GpuError::Unavailable(format!("the NVIDIA driver found no usable device: {e}"))
    })?;
    if count < 1 {
        return Err(GpuError::Unavailable(
            "the NVIDIA driver reports 0 CUDA devices".into(),
        ));
    }
    require_library("libcublas (CUDA 12 cuBLAS)", || unsafe {
        cudarc::cublas::sys::is_culib_present()
    })?;
    require_library("libnvrtc (CUDA 12 NVRTC)", || unsafe {
        cudarc::nvrtc::sys::is_culib_present()
    })?;
    Ok(CudaContext::new(0)?)
}

/// `Unavailable` unless `present()` finds the library; `what` names it for the message.
fn require_library(what: &str, present: impl FnOnce() -> bool) -> Result<(), GpuError> {
    if present() {
        Ok(())
    } else {
        Err(GpuError::Unavailable(format!(
            "{what} not found by the dynamic loader: install it or add its directory to LD_LIBRARY_PATH"
        )))
    }
}
