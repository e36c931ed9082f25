//! npk's userspace library; the `npk` binary is a thin CLI over it ([`run_cli`]; the CLI
//! module is private: no library module depends on it). Modules follow the
//! pipeline: dataset -> train -> quantize -> model_file -> kernel, or onnx -> quantize for a
//! model trained elsewhere; [`pipeline`] runs the training half as one call.
pub mod bench;
mod cli;
pub mod dataset;
pub mod demo;
pub mod fixtures;
pub mod input;
pub mod kernel;
pub mod metrics;
pub mod model_file;
pub mod netlab;
pub mod onnx;
pub mod output;
pub mod packets;
pub mod pipeline;
pub mod quantize;
pub mod rng;
pub mod serve;
pub mod stats;
pub mod sys;
pub mod train;
pub mod verify;

pub use cli::{command as cli_command, main as run_cli};
