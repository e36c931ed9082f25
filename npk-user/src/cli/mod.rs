//! The `npk` command line: one module per subcommand, doc comments are the help text.

mod attach;
mod bench;
mod capture;
mod cleanup;
mod client;
mod demo;
mod features;
mod r#gen;
mod inspect;
mod serve;
mod verify;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use npk_common::model::{MAX_LAYERS, MAX_WIDTH};

pub mod eval;
pub mod train;

#[derive(Debug, Parser)]
#[command(
    name = "npk",
    version,
    about = "Neural packet kernel: train an MLP, quantize it, run it in the kernel"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train an MLP on a CSV file, quantize it to int8 and save a model file.
    Train(train::TrainArgs),
    /// Score a model file on a CSV file: float, quantized and their agreement.
    Eval(eval::EvalArgs),
    /// Attach the classifier with a model to an interface.
    Attach(attach::AttachArgs),
    /// Detach what `npk attach --pin` left on an interface.
    Detach(attach::DetachArgs),
    /// Replace the model of a running classifier atomically, without reloading it.
    Push(attach::PushArgs),
    /// Per-class counters, drops, pps and ns per packet of an attached classifier.
    Stats(attach::StatsArgs),
    /// Remove what killed npk commands left behind (namespaces, veths, stale pins), only that.
    Cleanup(cleanup::CleanupArgs),
    /// Benchmarks that print numbers.
    Bench(bench::BenchArgs),
    /// Check the kernel classifier against the userspace reference on generated frames.
    Verify(verify::VerifyArgs),
    /// Show a model file: layers, shapes, scales, requantization, parameter and MAC counts.
    Inspect(inspect::InspectArgs),
    /// Turn a pcap/pcapng capture into labelled packet features (CSV) for `npk train`.
    Features(features::FeaturesArgs),
    /// Record live packets' features, as the kernel computes them, into a labelled CSV.
    Capture(capture::CaptureArgs),
    /// Generate labelled benign and attack traffic in a new namespace, recorded into a CSV.
    Gen(r#gen::GenArgs),
    /// The whole pipeline on generated traffic in a throwaway namespace, with a live table.
    Demo(demo::DemoArgs),
    /// Answer inference requests over UDP, in the kernel (XDP) or from userspace.
    Serve(serve::ServeArgs),
    /// Send inference requests to `npk serve` and check every reply.
    Client(client::ClientArgs),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Train(args) => train::run(args),
            Command::Eval(args) => eval::run(args),
            Command::Attach(a) => attach::run_attach(a),
            Command::Detach(a) => attach::run_detach(a),
            Command::Push(a) => attach::run_push(a),
            Command::Stats(a) => attach::run_stats(a),
            Command::Cleanup(a) => cleanup::run(a),
            Command::Bench(a) => bench::run(a),
            Command::Verify(a) => verify::run(a),
            Command::Inspect(a) => inspect::run(a),
            Command::Features(a) => features::run(a),
            Command::Capture(a) => capture::run(a),
            Command::Gen(a) => r#gen::run(a),
            Command::Demo(a) => demo::run(a),
            Command::Serve(a) => serve::run(a),
            Command::Client(a) => client::run(a),
        }
    }
}

/// Hidden layer widths, parsed from `16,16` and checked against the kernel's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hidden(pub Vec<usize>);

impl std::str::FromStr for Hidden {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let widths = crate::train::parse_hidden(s).map_err(|e| e.to_string())?;
        if let Some(w) = widths.iter().find(|&&w| !(1..=MAX_WIDTH).contains(&w)) {
            return Err(format!(
                "width {w} is outside 1..={MAX_WIDTH} (the kernel maximum)"
            ));
        }
        if widths.len() >= MAX_LAYERS {
            return Err(format!(
                "{} hidden layers: the kernel runs at most {MAX_LAYERS} layers ({} hidden + output)",
                widths.len(),
                MAX_LAYERS - 1
            ));
        }
        Ok(Self(widths))
    }
}

/// A bar on a terminal, nothing in --json mode or when piped.
pub fn progress_bar(len: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}")
            .expect("static template"),
    );
    pb
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
