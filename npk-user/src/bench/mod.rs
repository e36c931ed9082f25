//! Benchmarks that print numbers (`npk bench ...`). Timings are always taken side by side in one
//! run: these machines are shared and noisy.
pub mod flood;
pub mod infer;
pub mod serve;
pub mod train;

/// The median of `v` (the upper one of an even count), by total order.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
