//! Benchmarks that print numbers (`npk bench ...`). Timings are always taken side by side in one
//! run: these machines are shared and noisy.
pub mod flood;
pub mod infer;
pub mod serve;
pub mod train;
