//! `npk gen`: labelled traffic in a throwaway namespace, recorded through the kernel.

use std::{path::PathBuf, sync::atomic::Ordering, time::Duration};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::{
    kernel::attach::AttachMode,
    netlab::{NetLab, stop_flag},
    packets::{
        capture,
        features::FeatureCsv,
        traffic::{self, CLASS_NAMES, GenConfig, Scenario, ScenarioReport},
    },
};

/// Generate labelled benign and attack traffic inside a new network namespace and record each
/// packet's features, as the kernel classifier computes them, into a CSV for `npk train`.
#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Scenarios to run at once (comma-separated; default: all).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Scenario::ALL)]
    pub scenarios: Vec<Scenario>,
    /// How long to send.
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub seconds: u64,
    /// At most this many queries, connections or packets per scenario.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub max_events: u64,
    /// Multiplies every scenario's rate (defaults: dns 150/s, web 30 connections/s, ping 25/s,
    /// floods 1500/s, port scan 500/s).
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    pub rate_scale: f64,
    /// Seeds every random choice of the generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// CSV file to write: the packet feature columns and the class (0 benign, 1 syn_flood,
    /// 2 udp_flood, 3 port_scan, 4 icmp_flood).
    #[arg(long, value_name = "FILE.csv")]
    pub out: PathBuf,
    /// How the recording classifier attaches to the lab's veth.
    #[arg(long, value_enum, default_value = "native")]
    pub mode: AttachMode,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    scenarios: Vec<ScenarioReport>,
    rows: u64,
    /// Rows per class.
    class_rows: Vec<u64>,
    samples_lost: u64,
}

pub fn run(args: GenArgs) -> Result<()> {
    let config = GenConfig {
        scenarios: args.scenarios.clone(),
        duration: Duration::from_secs(args.seconds),
        max_events: args.max_events,
        rate_scale: args.rate_scale,
        seed: args.seed,
    };
    config.validate()?;
    let mut csv = FeatureCsv::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let stop = stop_flag();
    let lab = NetLab::create(Scenario::ALL.len())?;
    let (attachment, mut sampler) = capture::start(&lab.host_if.parse()?, args.mode)?;
    if !args.json {
        eprintln!(
            "sending from namespace {} to {} for up to {} s (Ctrl-C stops early)",
            lab.netns, lab.host_addr, args.seconds
        );
    }
    let mut class_rows = vec![0u64; CLASS_NAMES.len()];
    let scenarios = traffic::run_sampled(
        &lab,
        &config,
        stop,
        &mut sampler,
        |scenario, sample| {
            if let Some(s) = scenario {
                class_rows[s.class() as usize] += 1;
                csv.write(&sample.features, s.class());
            }
        },
        || {},
    )?;
    let samples_lost = attachment.classifier.counters()?.samples_lost;
    drop(attachment);
    drop(lab);
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted; the namespace was removed");
    }
    let rows = csv.rows();
    csv.finish()
        .with_context(|| format!("writing {}", args.out.display()))?;
    let report = Report {
        scenarios,
        rows,
        class_rows,
        samples_lost,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    for s in &report.scenarios {
        println!(
            "{:<11} {:>8} sent {:>6} failed",
            s.scenario.name(),
            s.events,
            s.failures
        );
    }
    let per_class: Vec<String> = CLASS_NAMES
        .iter()
        .zip(&report.class_rows)
        .map(|(n, r)| format!("{n} {r}"))
        .collect();
    println!(
        "{rows} rows written to {} ({}){}",
        args.out.display(),
        per_class.join(", "),
        if samples_lost > 0 {
            format!("; {samples_lost} packets were not sampled (ring buffer full)")
        } else {
            String::new()
        }
    );
    Ok(())
}
