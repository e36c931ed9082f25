//! `npk gen`: labelled traffic in a throwaway namespace, recorded through the kernel.

use std::{
    path::PathBuf,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use serde::Serialize;

use crate::{
    kernel::attach::AttachMode,
    netlab::NetLab,
    noteln,
    output::OutputPath,
    packets::{
        capture,
        features::FeatureCsv,
        lab::{
            self, LabConfig,
            scenario::{Family, ToolScenario},
        },
        traffic::{self, CLASS_NAMES, GenConfig, Scenario, ScenarioReport},
    },
    sys::stop_flag,
};

/// Which generator `npk gen` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LabKind {
    /// npk's own packets (raw sockets and a responder).
    Synthetic,
    /// Real tools (nginx, dnsmasq, iperf3, curl, dig, ping, hping3, nmap) between two
    /// namespaces, with settings drawn from the seed and recorded in a manifest.
    Tools,
}

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
    /// The generator.
    #[arg(long, value_enum, default_value = "synthetic")]
    pub lab: LabKind,
    /// --lab tools: the scenarios (comma-separated; default: all).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = ToolScenario::ALL)]
    pub tools: Vec<ToolScenario>,
    /// --lab tools: the family the settings are drawn from (a: training, b and c: held out; no
    /// attack setting value occurs in two of them; any: a family per setting).
    #[arg(long, value_enum, default_value = "any")]
    pub family: Family,
    /// --lab tools: also record the server's traffic (both directions: npk features counts the
    /// server's packets as replies) with tcpdump into this pcap.
    #[arg(long, value_name = "FILE.pcap")]
    pub pcap: Option<PathBuf>,
    /// --lab tools: where the run's manifest goes (default: the CSV's path with .json).
    #[arg(long, value_name = "FILE.json")]
    pub manifest: Option<PathBuf>,
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
    if args.lab == LabKind::Tools {
        return run_tools(args);
    }
    let config = GenConfig {
        scenarios: args.scenarios.clone(),
        duration: Duration::from_secs(args.seconds),
        max_events: args.max_events,
        rate_scale: args.rate_scale,
        seed: args.seed,
    };
    config.validate()?;
    // Written to a temporary file, which replaces --out only when the run succeeded.
    let out = OutputPath::check(&args.out, &[])?;
    let console = out.report_console();
    let mut csv = FeatureCsv::create(&out)?;
    let stop = stop_flag();
    let lab = NetLab::create(Scenario::ALL.len())?;
    let (attachment, mut sampler) = capture::start(&lab.host_if.parse()?, args.mode)?;
    if !args.json {
        // A note: a closed stderr does not stop the run.
        noteln!(
            "sending from namespace {} to {} for up to {} s (Ctrl-C stops early)",
            lab.netns,
            lab.host_addr,
            args.seconds
        );
    }
    let mut class_rows = vec![0u64; CLASS_NAMES.len()];
    let (bar, start) = (super::seconds_bar(args.seconds, args.json), Instant::now());
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
        || bar.set_position(start.elapsed().as_secs()),
    )?;
    bar.finish_and_clear();
    let samples_lost = attachment.classifier.counters()?.samples_lost;
    drop(attachment);
    drop(lab);
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted; the namespace was removed");
    }
    let rows = csv.rows();
    csv.commit()?;
    let report = Report {
        scenarios,
        rows,
        class_rows,
        samples_lost,
    };
    if args.json {
        console.line(format_args!("{}", serde_json::to_string(&report)?))?;
        return Ok(());
    }
    for s in &report.scenarios {
        console.line(format_args!(
            "{:<11} {:>8} sent {:>6} failed",
            s.scenario.name(),
            s.events,
            s.failures
        ))?;
    }
    let per_class: Vec<String> = CLASS_NAMES
        .iter()
        .zip(&report.class_rows)
        .map(|(n, r)| format!("{n} {r}"))
        .collect();
    console.line(format_args!(
        "{rows} rows written to {} ({}){}",
        args.out.display(),
        per_class.join(", "),
        if samples_lost > 0 {
            format!("; {samples_lost} packets were not sampled (ring buffer full)")
        } else {
            String::new()
        }
    ))?;
    Ok(())
}

/// `--lab tools`: the real-tool lab, its kernel-recorded features into the CSV.
fn run_tools(args: GenArgs) -> Result<()> {
    let config = LabConfig {
        scenarios: args.tools.clone(),
        duration: Duration::from_secs(args.seconds),
        seed: args.seed,
        family: args.family,
        pcap: args.pcap.clone(),
        mode: args.mode,
    };
    config.validate()?;
    lab::check_tools()?;
    let manifest_path = args
        .manifest
        .clone()
        .unwrap_or_else(|| args.out.with_extension("json"));
    // Every output is checked before the run; each replaces its file only once it is complete.
    let out = OutputPath::check(&args.out, &[])?;
    let console = out.report_console();
    let manifest_out = OutputPath::check(&manifest_path, &[&args.out])?;
    if let Some(pcap) = &args.pcap {
        OutputPath::check(pcap, &[&args.out, &manifest_path])?;
    }
    let mut csv = FeatureCsv::create(&out)?;
    if !args.json {
        noteln!(
            "running {} tool scenarios for {} s (Ctrl-C stops early)",
            config.scenarios.len(),
            args.seconds
        );
    }
    let mut class_rows = vec![0u64; CLASS_NAMES.len()];
    let (bar, start) = (super::seconds_bar(args.seconds, args.json), Instant::now());
    let (manifest, report) = lab::run(&config, stop_flag(), |label, sample| {
        bar.set_position(start.elapsed().as_secs());
        if let Some((_, class)) = label {
            class_rows[class as usize] += 1;
            csv.write(&sample.features, class);
        }
    })?;
    bar.finish_and_clear();
    let rows = csv.rows();
    csv.commit()?;
    manifest.write(&manifest_out)?;
    if args.json {
        console.line(format_args!(
            "{}",
            serde_json::json!({
                "rows": rows,
                "class_rows": class_rows,
                "unlabelled": manifest.unlabelled_packets,
                "samples_lost": manifest.samples_lost,
                "pcap_bytes": report.pcap_bytes,
                "manifest": manifest_path,
            })
        ))?;
        return Ok(());
    }
    for s in &manifest.scenarios {
        console.line(format_args!(
            "{:<14} {:<10} {:>8} packets from {} address(es), exit {:?}",
            s.scenario.name(),
            s.class,
            s.packets,
            s.sources.len(),
            s.exit_codes
        ))?;
    }
    console.line(format_args!(
        "{rows} rows written to {}, manifest {}{}",
        args.out.display(),
        manifest_path.display(),
        args.pcap
            .as_ref()
            .map(|p| format!(", pcap {}", p.display()))
            .unwrap_or_default()
    ))?;
    Ok(())
}
