//! `npk bench ...`: benchmarks that print numbers.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::Hidden;
use crate::{bench, fixtures::random_packet_model, outln, train::parse_hidden};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// ns per packet of the kernel classifier vs a parse-only program (BPF_PROG_TEST_RUN).
    #[command(after_help = "Example:\n  sudo npk bench infer --hidden 32,32 --json")]
    Infer(InferArgs),
    /// Training and inference time per epoch, CPU and GPU, small and large networks, beside
    /// the NumPy baseline (bench/mlp_numpy.py) run on the same rows.
    #[command(after_help = "Example:\n  npk bench train --data data/iris.csv --json")]
    Train(TrainBenchArgs),
    /// Requests/s and latency of the kernel inference server vs the userspace one, over a
    /// veth pair made for the run.
    #[command(
        after_help = "Example:\n  sudo npk bench serve --model iris.npk --requests 1000000 --strace"
    )]
    Serve(super::serve::BenchServeArgs),
}

#[derive(Debug, Args)]
pub struct TrainBenchArgs {
    /// CSV file to train on (its default 80% training split).
    #[arg(long, default_value = "data/iris.csv", value_name = "FILE.csv")]
    data: PathBuf,
    /// Batch sizes; each is capped at the number of training rows.
    #[arg(long, default_value = "3,10,256", value_name = "B1,B2,...")]
    batches: String,
    /// Hidden widths of the small network.
    #[arg(long, default_value = "3,4,5", value_name = "W1,W2,...")]
    small_hidden: String,
    /// Epochs of every small-network row.
    #[arg(long, default_value_t = 50, value_name = "N")]
    small_epochs: usize,
    /// Hidden widths of the large network (any width: it is not quantized).
    #[arg(long, default_value = "1600,2600,1600,2500", value_name = "W1,W2,...")]
    large_hidden: String,
    /// Epochs of every large-network row (one epoch of iris is 120 rows; the first epoch
    /// also pays for first-touching about 200 MB of weights, gradients and optimizer state).
    #[arg(long, default_value_t = 2, value_name = "N")]
    large_epochs: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 0.01, value_name = "X")]
    lr: f32,
    /// Seeds the split and the initial weights (NumPy gets the same split).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Python interpreter with NumPy.
    #[arg(long, default_value = "python3", value_name = "PYTHON")]
    python: PathBuf,
    /// The NumPy baseline script.
    #[arg(long, default_value = "bench/mlp_numpy.py", value_name = "FILE.py")]
    numpy_script: PathBuf,
    /// Time npk only.
    #[arg(long)]
    no_numpy: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
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
    /// Seeds the random model and the generated packets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Time this packet-feature model file instead of a random model.
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.what {
        BenchCommand::Infer(a) => infer(a),
        BenchCommand::Train(a) => train(a),
        BenchCommand::Serve(a) => super::serve::bench(a),
    }
}

fn train(args: TrainBenchArgs) -> Result<()> {
    let batches = parse_hidden(&args.batches).map_err(|_| {
        anyhow::anyhow!("--batches '{}': expected sizes like 3,10,256", args.batches)
    })?;
    anyhow::ensure!(
        !batches.contains(&0),
        "--batches '{}': batch size 0, must be at least 1",
        args.batches
    );
    let net = |name: &str, list: &str, epochs| -> Result<bench::train::Net> {
        Ok(bench::train::Net {
            name: name.into(),
            hidden: parse_hidden(list).with_context(|| format!("--{name}-hidden"))?,
            epochs,
        })
    };
    let config = bench::train::BenchConfig {
        data: args.data,
        nets: vec![
            net("small", &args.small_hidden, args.small_epochs)?,
            net("large", &args.large_hidden, args.large_epochs)?,
        ],
        batches,
        lr: args.lr,
        seed: args.seed,
        numpy: (!args.no_numpy).then_some((args.python, args.numpy_script)),
    };
    let rows = config.nets.len() * config.batches.len() * 4;
    let pb = super::progress_bar(rows as u64, args.json);
    let report = bench::train::run(&config, |row| {
        pb.set_message(format!("{} batch {}", row.net, row.batch));
        pb.inc(1);
    })?;
    pb.finish_and_clear();
    if args.json {
        outln!("{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
    outln!(
        "{}: {} training rows; GPU: {}",
        report.data.display(),
        report.train_rows,
        report.gpu.as_deref().unwrap_or_else(|e| e)
    )?;
    outln!(
        "{:<6} {:<20} {:>5} {:>4} {:<5} {:<4} {:>6} {:>12} {:>12} {:>12} {:>12} {:>8}",
        "net",
        "hidden",
        "batch",
        "rows",
        "mode",
        "dev",
        "epochs",
        "npk s/epoch",
        "npk rows/s",
        "numpy s/ep",
        "numpy rows/s",
        "speedup"
    )?;
    for r in &report.rows {
        let hidden: Vec<String> = r.hidden.iter().map(usize::to_string).collect();
        let timing = |t: &Result<bench::train::Timing, String>| match t {
            Ok(t) => format!(
                "{:>12.6} {:>12.0}",
                t.seconds_per_epoch, t.samples_per_second
            ),
            Err(e) => e.clone(),
        };
        let numpy = match &r.numpy {
            Some(t @ Ok(_)) => format!(" {}", timing(t)),
            Some(t @ Err(_)) => format!("  numpy {}", timing(t)),
            None => String::new(),
        };
        let speedup = r.speedup.map_or(String::new(), |s| format!(" {s:>7.1}x"));
        outln!(
            "{:<6} {:<20} {:>5} {:>4} {:<5} {:<4} {:>6} {}{numpy}{speedup}",
            r.net,
            hidden.join(","),
            r.batch,
            r.rows_per_step,
            match r.mode {
                bench::train::Mode::Train => "train",
                bench::train::Mode::Infer => "infer",
            },
            r.device,
            r.epochs,
            timing(&r.npk),
        )?;
    }
    Ok(())
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
        outln!("{}", serde_json::to_string(&r)?)?;
    } else {
        outln!(
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
        )?;
    }
    Ok(())
}
