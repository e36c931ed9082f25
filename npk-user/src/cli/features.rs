//! `npk features`: a packet capture to labelled feature rows, computed by the kernel's own
//! parser and flow features, with the capture's timestamps.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use npk_common::model::MAX_CLASSES;
use serde::Serialize;

use crate::{
    output::OutputPath,
    packets::{
        features::{FeatureCsv, FlowTable, Skipped},
        lab::{Labels, scenario::ToolScenario},
        pcap::for_each_frame_reporting,
    },
};

/// Turn a pcap/pcapng capture (Ethernet or Linux cooked) into a labelled CSV for `npk train`.
#[derive(Debug, clap::Args)]
pub struct FeaturesArgs {
    /// The capture: pcap or pcapng, Ethernet or Linux cooked (SLL/SLL2) link type.
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,
    /// The class of every packet in the capture.
    #[arg(long, value_name = "N", required_unless_present = "manifest")]
    pub label: Option<u32>,
    /// Label each packet by the `npk gen --lab tools` manifest of the run that recorded the
    /// capture (its scenario's source address and time window); packets of no scenario are left out.
    #[arg(long, value_name = "FILE.json", conflicts_with = "label")]
    pub manifest: Option<PathBuf>,
    /// With --manifest: write only this scenario's rows (features still see every packet).
    #[arg(long, value_enum, requires = "manifest")]
    pub only: Option<ToolScenario>,
    /// CSV file to write: the packet feature columns and `label`.
    #[arg(long, value_name = "FILE.csv")]
    pub out: PathBuf,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    frames: u64,
    rows: u64,
    flows: usize,
    skipped: Skipped,
    /// With --manifest: packets from no scenario's address and window.
    unlabelled: u64,
}

pub fn run(args: FeaturesArgs) -> Result<()> {
    if let Some(label) = args.label {
        ensure!(
            (label as usize) < MAX_CLASSES,
            "--label {label}: classes are 0..={} (the kernel model's MAX_CLASSES)",
            MAX_CLASSES - 1
        );
    }
    // The CSV replaces --out only once the whole capture was read.
    let mut inputs = vec![args.pcap.as_path()];
    inputs.extend(args.manifest.as_deref());
    let out = OutputPath::check(&args.out, &inputs)?;
    let labels = args.manifest.as_deref().map(Labels::load).transpose()?;
    let mut unlabelled = 0u64;
    let mut csv = FeatureCsv::create(&out)?;
    let mut flows = FlowTable::new();
    let mut skipped = Skipped::default();
    // A bar over the file's bytes, on a terminal (a large capture takes minutes).
    let size = std::fs::metadata(&args.pcap).map_or(0, |m| m.len());
    let bar = super::progress_bar(size, args.json);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} of the capture read",
        )
        .expect("static template"),
    );
    let summary = for_each_frame_reporting(
        &args.pcap,
        |read| bar.set_position(read),
        |f| match flows.observe(f.frame, f.timestamp_ns) {
            Ok((key, features)) => {
                let label = match &labels {
                    Some(l) => l
                        .label(&key.src, f.timestamp_ns)
                        .filter(|(scenario, _)| args.only.is_none_or(|o| o == *scenario))
                        .map(|(_, class)| class),
                    None => args.label,
                };
                match label {
                    Some(class) => csv.write(&features, class),
                    None => unlabelled += 1,
                }
            }
            Err(e) => skipped.count(e),
        },
    )?;
    bar.finish_and_clear();
    let rows = csv.rows();
    csv.commit()?;
    let report = Report {
        frames: summary.frames,
        rows,
        flows: flows.len(),
        skipped,
        unlabelled,
    };
    let console = out.report_console();
    if args.json {
        console.line(format_args!("{}", serde_json::to_string(&report)?))?;
    } else {
        console.line(format_args!(
            "{} frames -> {} rows over {} flows written to {} (skipped: {} non-IP, {} truncated, {} malformed)",
            report.frames,
            report.rows,
            report.flows,
            args.out.display(),
            skipped.non_ip,
            skipped.truncated,
            skipped.malformed
        ))?;
    }
    Ok(())
}
