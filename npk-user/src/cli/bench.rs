//! `npk bench ...`: benchmarks that print numbers.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use clap::{Args, Subcommand, ValueEnum};
use npk_common::service::wire::DEFAULT_PORT;

use super::{Hidden, serve::ModelArgs};
use crate::{
    bench::{
        self,
        serve::{BenchConfig, BenchSummary, Generator, Mode, ModeRun, Pin, run as run_bench},
    },
    fixtures::random_packet_model,
    outln,
    output::ConsoleError,
    serve::XdpAttach,
    sys::stop_flag,
};

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
    Serve(BenchServeArgs),
    /// A spoofed SYN flood (hping3) through a veth pair: the kernel's ns per frame in the
    /// classifier and in the parse-only program, live, taking turns.
    #[command(after_help = "Example:\n  sudo npk bench flood --hidden 32,32 --json")]
    Flood(FloodArgs),
}

#[derive(Debug, Args)]
pub struct FloodArgs {
    /// Hidden widths of the random packet model the classifier runs.
    #[arg(long, default_value = "32,32")]
    hidden: Hidden,
    /// Classes of the random model.
    #[arg(long, default_value_t = 4)]
    classes: usize,
    /// Seconds of flood per turn.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Turns of each program, alternated (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seeds the random model.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct TrainBenchArgs {
    /// CSV or IDX file to train on (its default 80% training split, or all of it with
    /// --test-data).
    #[arg(long, default_value = "data/iris.csv", value_name = "FILE")]
    data: PathBuf,
    /// Rows to test the trained models on, a file of their own (MNIST's t10k images).
    #[arg(long, value_name = "FILE")]
    test_data: Option<PathBuf>,
    /// Batch sizes; each is capped at the number of training rows.
    #[arg(long, default_value = "3,10,256", value_name = "B1,B2,...")]
    batches: super::BatchSizes,
    /// Hidden widths of the small network.
    #[arg(long, default_value = "3,4,5", value_name = "W1,W2,...")]
    small_hidden: super::Widths,
    /// Epochs of every small-network row.
    #[arg(long, default_value_t = 50, value_name = "N")]
    small_epochs: usize,
    /// Hidden widths of the large network (any width: it is not quantized).
    #[arg(long, default_value = "1600,2600,1600,2500", value_name = "W1,W2,...")]
    large_hidden: super::Widths,
    /// Epochs of every large-network row (one epoch of iris is 120 rows; the first epoch
    /// also pays for first-touching about 200 MB of weights, gradients and optimizer state).
    #[arg(long, default_value_t = 2, value_name = "N")]
    large_epochs: usize,
    /// Time the small network only.
    #[arg(long)]
    no_large: bool,
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
    /// Single-packet runs per row of the live-traffic costs (same flow, new flows, full
    /// tables, sampled).
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    live_runs: u32,
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
        BenchCommand::Serve(a) => serve(a),
        BenchCommand::Flood(a) => flood(a),
    }
}

fn train(args: TrainBenchArgs) -> Result<()> {
    let net = |name: &str, hidden: &super::Widths, epochs| bench::train::Net {
        name: name.into(),
        hidden: hidden.0.clone(),
        epochs,
    };
    let mut nets = vec![net("small", &args.small_hidden, args.small_epochs)];
    if !args.no_large {
        nets.push(net("large", &args.large_hidden, args.large_epochs));
    }
    let config = bench::train::BenchConfig {
        data: args.data,
        test_data: args.test_data,
        nets,
        batches: args.batches.0,
        lr: args.lr,
        seed: args.seed,
        numpy: (!args.no_numpy).then_some((args.python, args.numpy_script)),
    };
    let rows = config.nets.len() * config.batches.len() * 2;
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
        "{}: {} training rows, {} test rows; GPU: {}",
        report.data.display(),
        report.train_rows,
        report.test_rows,
        match &report.gpu {
            Ok(name) => name.clone(),
            Err(why) => format!("no GPU ({why}): CPU rows only"),
        }
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
    let mut accuracies = Vec::new();
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
        if let Some(a) = &r.accuracy {
            let shown = |v: &Result<f64, String>| match v {
                Ok(v) => format!("{v:.4}"),
                Err(e) => format!("- ({e})"),
            };
            accuracies.push(format!(
                "{:<6} {:<20} {:>5}  npk float {:.4}  npk int8 {}  numpy float {}",
                r.net,
                r.hidden
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                r.batch,
                a.npk_float,
                shown(&a.npk_int8),
                a.numpy_float.as_ref().map_or("-".to_string(), shown),
            ));
        }
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
    outln!(
        "test accuracy of the trained models ({} rows):",
        report.test_rows
    )?;
    for line in accuracies {
        outln!("{line}")?;
    }
    Ok(())
}

fn infer(args: InferArgs) -> Result<()> {
    anyhow::ensure!(
        args.rounds >= 1 && args.repeat >= 1,
        "--rounds and --repeat must be >= 1"
    );
    anyhow::ensure!(
        (1..=100_000).contains(&args.live_runs),
        "--live-runs {}: must be 1..=100000",
        args.live_runs
    );
    let model = match &args.model {
        Some(path) => crate::model_file::ModelFile::load(path)?.kernel_model()?,
        None => random_packet_model(&args.hidden.0, args.classes, args.seed)?,
    };
    let r = bench::infer::run(&model, args.rounds, args.repeat, args.live_runs)?;
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
        let l = &r.live;
        outln!(
            "one packet per call ({} runs), ns/packet: same flow {:.0}, caches evicted {:.0}, \
             new flow {:.0}, new flow + host + service {:.0}, the same with full tables {:.0}, \
             plus sampling {:.0}; hot with bpf_stats on {:.0}",
            l.runs,
            l.same_flow,
            l.same_flow_cold_cache,
            l.new_flow,
            l.new_flow_host_service,
            l.new_flow_host_service_full_tables,
            l.new_flow_host_service_sampled,
            l.hot_with_bpf_stats
        )?;
    }
    Ok(())
}

fn flood(args: FloodArgs) -> Result<()> {
    anyhow::ensure!(
        args.seconds > 0.0 && args.seconds <= 600.0,
        "--seconds {}: must be more than 0 and at most 600",
        args.seconds
    );
    anyhow::ensure!(
        (1..=100).contains(&args.rounds),
        "--rounds {}: must be 1..=100",
        args.rounds
    );
    let model = random_packet_model(&args.hidden.0, args.classes, args.seed)?;
    let r = bench::flood::run(&model, args.seconds, args.rounds)?;
    if args.json {
        outln!("{}", serde_json::to_string(&r)?)?;
        return Ok(());
    }
    for t in &r.turns {
        outln!(
            "{:<14} {:>6} XDP: {:>9} frames in {:.1} s ({:.0}/s arrived), {:.0} ns/frame in the \
             program ({:.0} frames/s per core in it)",
            t.program,
            t.mode,
            t.frames,
            t.seconds,
            t.arrived_per_second,
            t.ns_per_frame,
            t.frames_per_core_second
        )?;
    }
    outln!(
        "medians: classifier {:.0} ns/frame, parse only {:.0} ns/frame ({:.1}x)",
        r.classifier_ns_per_frame,
        r.bare_ns_per_frame,
        r.classifier_over_bare
    )?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct BenchServeArgs {
    /// Requests per server.
    #[arg(long, default_value_t = 200_000)]
    requests: u64,
    /// Requests in flight per client thread.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Offered load in requests/s, the same for every server (default: the kernel or packet
    /// generator searches each server's capacity and offers it that; the socket client sends
    /// as fast as replies come back).
    #[arg(long)]
    rate: Option<f64>,
    /// Client threads (one socket each). The kernel server runs in the softirq of the
    /// client's sends, so one client thread leaves it one CPU: the default is two.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Datagrams per recvmmsg/sendmmsg call of the batched userspace server.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// XDP mode of the kernel server; native also attaches it to the namespace's veth end.
    #[arg(long, value_enum, default_value_t = XdpAttach::Skb)]
    xdp_mode: XdpAttach,
    /// Also run each server once more with `strace -c -f` attached once it serves (startup
    /// not counted) and report its system calls per request; the timed runs are not traced.
    #[arg(long)]
    strace: bool,
    /// Requests of each traced run (strace slows servers down by an order of magnitude).
    #[arg(long, default_value_t = 100_000)]
    strace_requests: u64,
    /// Timed runs per server, interleaved; the median is reported.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// CPUs for the client and the server side, CLIENT,SERVER (e.g. 0,1): the generator and
    /// reply processing on one, the server process or XDP program and request processing on
    /// the other (NAPI threads with the kernel generator, RPS with the socket one). `none`:
    /// the scheduler decides. `auto`: 0,1 with the kernel or packet generator, none with
    /// sockets.
    #[arg(long, default_value = "auto")]
    pin: PinArg,
    /// UDP port the servers listen on.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Print the summary as one JSON line (last line).
    #[arg(long)]
    json: bool,
    /// Servers to measure, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kernel,user-plain,user-mmsg"
    )]
    servers: Vec<Mode>,
    /// What sends the requests. `kernel`: npk_loadgen in BPF_PROG_TEST_RUN live-frames mode,
    /// paced in the kernel, no system call per request on the measuring side. `packet`: the
    /// same frames and pacing from an AF_PACKET socket, one sendmmsg per 32 requests, for
    /// kernels that refuse live frames. Both check every reply in an XDP counter on the
    /// client's end and run the kernel server in native mode. `auto`: `kernel` where the
    /// kernel takes live frames (probed once), else `packet`. `socket`: UDP sockets, as
    /// `npk client`, sharing the CPUs with the servers.
    #[arg(long, value_enum, default_value_t = Generator::Auto)]
    generator: Generator,
    #[command(flatten)]
    model: ModelArgs,
}

fn serve(args: BenchServeArgs) -> Result<()> {
    ensure!(
        args.requests >= 1 && args.strace_requests >= 1,
        "--requests and --strace-requests must be at least 1"
    );
    ensure!(args.window >= 1, "--window must be at least 1");
    ensure!(
        (1..=64).contains(&args.threads),
        "--threads {} outside 1..=64",
        args.threads
    );
    ensure!(args.port != 0, "--port 0 cannot be served");
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    ensure!(!args.servers.is_empty(), "--servers names no server");
    if let Some(r) = args.rate {
        ensure!(
            r.is_finite() && r >= 1.0,
            "--rate must be at least 1 request/s, not {r}"
        );
    }
    let model = args.model.build()?;
    let generator = args.generator;
    // The frame generators' reply counter is XDP on the namespace end: native there.
    let xdp_mode = if generator.counts_in_kernel() {
        XdpAttach::Native
    } else {
        args.xdp_mode
    };
    let config = BenchConfig {
        generator,
        exe: std::env::current_exe().context("locating the npk binary")?,
        model_args: args.model.to_args()?,
        requests: args.requests,
        rate: args.rate,
        window: args.window,
        threads: args.threads,
        batch: args.batch,
        xdp_mode,
        strace: args.strace,
        strace_requests: args.strace_requests,
        port: args.port,
        modes: args.servers,
        rounds: args.rounds,
        pin: args.pin.resolve(generator),
    };
    let json = args.json;
    // The benchmark goes on when a line cannot be printed; the first such error is reported
    // after it.
    let mut printed = Ok(());
    let (_, summary) = run_bench(&config, &model, stop_flag(), |run| {
        if json || printed.is_err() {
            return;
        }
        printed = print_mode_run(run);
    })?;
    if !json && printed.is_ok() {
        printed = print_generator(&summary);
    }
    let printed = printed.map_err(anyhow::Error::from).and_then(|()| {
        if json {
            outln!("{}", serde_json::to_string(&summary)?)?;
        } else if summary.user_rps > 0.0 && summary.kernel_rps > 0.0 {
            outln!(
                "kernel / best userspace ({}): {:.2}x requests/s; mismatches {}",
                summary.user_mode,
                summary.kernel_rps / summary.user_rps.max(f64::MIN_POSITIVE),
                summary.mismatches
            )?;
        }
        Ok(())
    });
    // Mismatches are the result, whether or not the report could be printed.
    ensure!(
        summary.mismatches == 0,
        "{} replies differed from the reference",
        summary.mismatches
    );
    printed
}

/// Which generator ran, and why `auto` did not take live frames.
fn print_generator(summary: &BenchSummary) -> Result<(), ConsoleError> {
    let name = summary
        .generator
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    match &summary.generator_fallback {
        Some(why) => outln!("generator: {name} (live frames refused: {why})"),
        None => outln!("generator: {name}"),
    }
}

/// One mode's line (and the capacity search, the strace table) of `npk bench-serve`.
fn print_mode_run(run: &ModeRun) -> Result<(), ConsoleError> {
    let r = &run.client;
    let cpu = match (run.server_cpu_ns_per_request, run.server.cpu_ns_per_request) {
        (Some(ns), _) => format!(", server CPU {ns:.0} ns/request (whole CPU)"),
        (None, Some(ns)) => format!(
            ", CPU ns/request: server {ns:.0} client {:.0}",
            r.cpu_ns_per_request
        ),
        (None, None) => String::new(),
    };
    let per_request = run.syscalls_per_request.map_or(String::new(), |s| {
        format!(", {s:.4} server syscalls/request")
    });
    if !run.trials.is_empty() {
        let trials: Vec<String> = run
            .trials
            .iter()
            .map(|t| {
                format!(
                    "{:.0}k {}",
                    t.offered_rps / 1e3,
                    if t.passed {
                        "ok".to_string()
                    } else {
                        format!("lost {:.2}%", 100.0 * t.lost as f64 / t.sent.max(1) as f64)
                    }
                )
            })
            .collect();
        outln!("{:<10} capacity search: {}", run.mode, trials.join(", "))?;
    }
    let offered = run
        .offered_rps
        .map_or(String::new(), |o| format!(" (offered {o:.0})"));
    outln!(
        "{:<10} {:>10.0} requests/s{offered}  p50 {:>7.1} us  p99 {:>7.1} us  mismatches {} lost {}{cpu}{per_request}",
        run.mode,
        r.rps,
        r.p50_us,
        r.p99_us,
        r.mismatches,
        r.lost
    )?;
    if let Some(t) = &run.syscalls {
        outln!("  strace -c of the {} server process:", run.mode)?;
        for line in t.text.lines() {
            outln!("    {line}")?;
        }
    }
    Ok(())
}

/// `--pin CLIENT,SERVER`, `none` or `auto`.
#[derive(Clone, Copy, Debug)]
pub enum PinArg {
    Cpus(Pin),
    None,
    Auto,
}

impl PinArg {
    fn resolve(self, generator: Generator) -> Option<Pin> {
        match self {
            Self::Cpus(pin) => Some(pin),
            Self::None => None,
            Self::Auto => {
                let cpus = std::thread::available_parallelism().map_or(1, usize::from);
                (generator.counts_in_kernel() && cpus >= 2).then_some(Pin {
                    client: 0,
                    server: 1,
                })
            }
        }
    }
}

impl std::str::FromStr for PinArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => return Ok(Self::None),
            "auto" => return Ok(Self::Auto),
            _ => {}
        }
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let parse = |c: &str| -> Result<usize, String> {
            let cpu: usize = c
                .trim()
                .parse()
                .map_err(|_| format!("`{c}` is not a CPU number"))?;
            if cpu >= cpus {
                return Err(format!("CPU {cpu}: this machine has CPUs 0..{cpus}"));
            }
            Ok(cpu)
        };
        let (client, server) = s
            .split_once(',')
            .ok_or_else(|| format!("`{s}`: expected CLIENT,SERVER (e.g. 0,1), none or auto"))?;
        let pin = Pin {
            client: parse(client)?,
            server: parse(server)?,
        };
        if pin.client == pin.server {
            return Err("the client and the server need different CPUs".into());
        }
        Ok(Self::Cpus(pin))
    }
}
