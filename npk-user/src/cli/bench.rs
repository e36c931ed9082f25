//! `npk bench ...`: benchmarks that print numbers.

use anyhow::Result;
use clap::{Args, Subcommand};

use super::Hidden;
use crate::{bench, kernel::verify::random_packet_model};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// ns per packet of the kernel classifier vs a parse-only program (BPF_PROG_TEST_RUN).
    Infer(InferArgs),
    /// Requests/s and latency of the kernel inference server vs the userspace one, over a
    /// veth pair made for the run.
    Serve(super::serve::BenchServeArgs),
}

#[derive(Debug, Args)]
pub struct InferArgs {
    /// Hidden widths of the random packet model to time.
    #[arg(long, default_value = "16,16")]
    hidden: Hidden,
    /// Classes of the random model.
    #[arg(long, default_value_t = 4)]
    classes: usize,
    /// Interleaved measurement rounds (the median is reported).
    #[arg(long, default_value_t = 21)]
    rounds: u32,
    /// Kernel-side repetitions per round.
    #[arg(long, default_value_t = 100_000)]
    repeat: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Time this packet-feature model file instead of a random model.
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.what {
        BenchCommand::Infer(a) => infer(a),
        BenchCommand::Serve(a) => super::serve::bench(a),
    }
}

fn infer(args: InferArgs) -> Result<()> {
    anyhow::ensure!(
        args.rounds >= 1 && args.repeat >= 1,
        "--rounds and --repeat must be >= 1"
    );
    let model = match &args.model {
        Some(path) => crate::model_file::ModelFile::load(path)?.quantized.model,
        None => random_packet_model(&args.hidden.0, args.classes, args.seed)?,
    };
    let r = bench::infer::run(&model, args.rounds, args.repeat)?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "model {}: {:.1} ns/packet, bare {:.1} ns/packet, {} MACs -> {:.3} ns/MAC, {} verified insns",
            args.model
                .as_ref()
                .map_or(format!("hidden {:?}", args.hidden.0), |p| p
                    .display()
                    .to_string()),
            r.ns_per_packet,
            r.bare_ns_per_packet,
            r.macs,
            r.ns_per_mac,
            r.verified_insns
        );
    }
    Ok(())
}
