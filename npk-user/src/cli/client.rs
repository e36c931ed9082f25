//! `npk client`: load generator for `npk serve`, checking every reply against the userspace
//! reference built from the same model arguments.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use npk_common::service::wire::ANY_MODEL;

use super::serve::ModelArgs;
use crate::{
    netlab::in_netns,
    outln,
    output::ConsoleError,
    serve::client::{self, ClientConfig, ClientReport},
    sys::stop_flag,
};

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:7878")]
    target: SocketAddr,
    /// Send from inside this network namespace (a name `ip netns list` shows).
    #[arg(long)]
    netns: Option<String>,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Stop after this many seconds (5 when neither this nor --requests is given).
    #[arg(long)]
    seconds: Option<f64>,
    /// Requests per second over all threads (default: as fast as replies come back).
    #[arg(long)]
    rate: Option<f64>,
    /// Requests in flight per thread.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Sending threads, one socket each.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Distinct requests (replies precomputed with the reference).
    #[arg(long, default_value_t = 4096)]
    pool: usize,
    /// Make every Nth request deliberately bad (0: none), cycling through the error kinds.
    #[arg(long, default_value_t = 0)]
    bad_every: usize,
    /// A reply later than this counts as lost.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Model id put in requests (0: whatever model is active).
    #[arg(long, default_value_t = ANY_MODEL)]
    model_id: u32,
    /// Seed of the request features.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as one JSON line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: ClientArgs) -> Result<()> {
    ensure!(args.window >= 1, "--window must be at least 1");
    ensure!(
        (1..=64).contains(&args.threads),
        "--threads {} outside 1..=64",
        args.threads
    );
    ensure!(args.pool >= 1, "--pool must be at least 1");
    ensure!(args.timeout_ms >= 1, "--timeout-ms must be at least 1");
    let mut config = ClientConfig::new(args.target);
    if let Some(r) = args.rate {
        ensure!(r.is_finite() && r > 0.0, "--rate must be positive, not {r}");
        config.rate = Some(r);
    }
    if let Some(s) = args.seconds {
        ensure!(
            s.is_finite() && s > 0.0,
            "--seconds must be positive, not {s}"
        );
        config.duration = Some(Duration::from_secs_f64(s));
    }
    if args.requests.is_none() && args.seconds.is_none() {
        config.duration = Some(Duration::from_secs(5));
    }
    config.requests = args.requests;
    config.window = args.window;
    config.pool = args.pool;
    config.bad_every = args.bad_every;
    config.timeout = Duration::from_millis(args.timeout_ms);
    config.model_id = args.model_id;
    config.seed = args.seed;
    let model = args.model.build()?;
    let connect = || client::connect_sockets(args.target, args.threads);
    let sockets = match &args.netns {
        Some(ns) => in_netns(ns, connect)?,
        None => connect(),
    }
    .with_context(|| format!("opening sockets to {}", args.target))?;
    let report = client::run(&config, &model, sockets, stop_flag())?;
    let printed = if args.json {
        outln!("{}", serde_json::to_string(&report)?)
    } else {
        print_report(&report)
    };
    // A failed run is the result, whether or not the report could be printed.
    if report.replies == 0 && report.sent > 0 {
        bail!(
            "no replies to {} requests: is a server listening at {}?",
            report.sent,
            args.target
        );
    }
    if report.mismatches > 0 {
        bail!(
            "{} replies differ from the reference (first: {})",
            report.mismatches,
            report.problems.first().map_or("", String::as_str)
        );
    }
    Ok(printed?)
}

pub fn print_report(r: &ClientReport) -> Result<(), ConsoleError> {
    outln!(
        "{} sent, {} replies ({} OK) in {:.2} s: {:.0} requests/s, p50 {:.1} us, p99 {:.1} us",
        r.sent,
        r.replies,
        r.ok,
        r.seconds,
        r.rps,
        r.p50_us,
        r.p99_us
    )?;
    outln!(
        "mismatches {}, lost {}, unexpected {}; client CPU {:.0} ns per request",
        r.mismatches,
        r.lost,
        r.unexpected,
        r.cpu_ns_per_request
    )?;
    for p in &r.problems {
        outln!("  {p}")?;
    }
    Ok(())
}
