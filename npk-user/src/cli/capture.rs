//! `npk capture`: features of live traffic exactly as the kernel computed them.

use std::{
    path::PathBuf,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use npk_common::model::MAX_CLASSES;
use serde::Serialize;

use crate::{
    kernel::attach::{AttachMode, IfaceName},
    noteln,
    output::OutputPath,
    packets::{capture, features::FeatureCsv},
    sys::stop_flag,
};

/// Record the features of live packets on an interface, as the kernel classifier computes
/// them, into a labelled CSV for `npk train`.
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// The interface whose ingress packets are recorded (see `ip link`).
    #[arg(long)]
    pub iface: IfaceName,
    /// The class of every packet captured.
    #[arg(long, value_name = "N")]
    pub label: u32,
    /// How long to capture (Ctrl-C ends it early, keeping what was captured).
    #[arg(long, value_name = "S")]
    pub seconds: u64,
    /// CSV file to write: the packet feature columns and `label`.
    #[arg(long, value_name = "FILE.csv")]
    pub out: PathBuf,
    /// Where to attach: native (driver) XDP, as every command defaults to; skb (generic XDP)
    /// works on any interface; tc.
    #[arg(long, value_enum, default_value = "native")]
    pub mode: AttachMode,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    rows: u64,
    seconds: f64,
    /// Packets the kernel classified but could not sample (ring buffer full).
    samples_lost: u64,
}

/// Longest capture: a day.
const MAX_SECONDS: u64 = 86_400;

pub fn run(args: CaptureArgs) -> Result<()> {
    ensure!(
        (args.label as usize) < MAX_CLASSES,
        "--label {}: classes are 0..={} (the kernel model's MAX_CLASSES)",
        args.label,
        MAX_CLASSES - 1
    );
    ensure!(
        (1..=MAX_SECONDS).contains(&args.seconds),
        "--seconds {}: must be 1..={MAX_SECONDS}",
        args.seconds
    );
    // Written to a temporary file, which replaces --out only when the capture succeeded.
    let out = OutputPath::check(&args.out, &[])?;
    let console = out.report_console();
    let mut csv = FeatureCsv::create(&out)?;
    let stop = stop_flag();
    let (attachment, mut sampler) = capture::start(&args.iface, args.mode)?;
    if !args.json {
        // A note: a closed stderr does not stop the capture.
        noteln!(
            "capturing on {} for {} s (Ctrl-C stops early)",
            args.iface,
            args.seconds
        );
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let bar = super::seconds_bar(args.seconds, args.json);
    let mut drain = |csv: &mut FeatureCsv<_>| sampler.drain(|s| csv.write(&s.features, args.label));
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        drain(&mut csv);
        bar.set_position(start.elapsed().as_secs());
        bar.set_message(format!("{} rows", csv.rows()));
        std::thread::sleep(Duration::from_millis(10));
    }
    drain(&mut csv);
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let samples_lost = attachment.classifier.counters()?.samples_lost;
    drop(attachment);
    let rows = csv.rows();
    csv.commit()?;
    let report = Report {
        rows,
        seconds,
        samples_lost,
    };
    if args.json {
        console.line(format_args!("{}", serde_json::to_string(&report)?))?;
    } else {
        console.line(format_args!(
            "{rows} packets in {seconds:.1} s written to {}{}",
            args.out.display(),
            if samples_lost > 0 {
                format!(" ({samples_lost} more were lost: the ring buffer was full)")
            } else {
                String::new()
            }
        ))?;
    }
    Ok(())
}
