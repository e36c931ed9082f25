//! npk's userspace library; the `npk` binary is a thin CLI over it. Modules follow the
//! pipeline: dataset -> train -> quantize -> model_file -> kernel; [`pipeline`] runs the
//! training half as one call.
pub mod bench;
pub mod cli;
pub mod dataset;
pub mod demo;
pub mod kernel;
pub mod metrics;
pub mod model_file;
pub mod netlab;
pub mod output;
pub mod packets;
pub mod pipeline;
pub mod quantize;
pub mod rng;
pub mod serve;
pub mod train;
