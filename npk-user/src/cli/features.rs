//! `npk features`: a packet capture to labelled feature rows, computed by the kernel's own
//! parser and flow features, with the capture's timestamps.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use npk_common::model::MAX_CLASSES;
use serde::Serialize;

use crate::{
    outln,
    output::OutputPath,
    packets::{
        features::{FeatureCsv, FlowTable, Skipped},
        pcap::for_each_frame,
    },
};

/// Turn a pcap/pcapng capture (Ethernet or Linux cooked) into a labelled CSV for `npk train`.
#[derive(Debug, clap::Args)]
pub struct FeaturesArgs {
    /// The capture: pcap or pcapng, Ethernet or Linux cooked (SLL/SLL2) link type.
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,
    /// The class of every packet in the capture.
    #[arg(long, value_name = "N")]
    pub label: u32,
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
}

pub fn run(args: FeaturesArgs) -> Result<()> {
    ensure!(
        (args.label as usize) < MAX_CLASSES,
        "--label {}: classes are 0..={} (the kernel model's MAX_CLASSES)",
        args.label,
        MAX_CLASSES - 1
    );
    // The CSV replaces --out only once the whole capture was read.
    let out = OutputPath::check(&args.out, &[&args.pcap])?;
    let mut csv = FeatureCsv::create(&out)?;
    let mut flows = FlowTable::new();
    let mut skipped = Skipped::default();
    let summary = for_each_frame(&args.pcap, |f| {
        match flows.observe(f.frame, f.timestamp_ns) {
            Ok((_, features)) => csv.write(&features, args.label),
            Err(e) => skipped.count(e),
        }
    })?;
    let rows = csv.rows();
    csv.commit()?;
    let report = Report {
        frames: summary.frames,
        rows,
        flows: flows.len(),
        skipped,
    };
    if args.json {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        outln!(
            "{} frames -> {} rows over {} flows written to {} (skipped: {} non-IP, {} truncated, {} malformed)",
            report.frames,
            report.rows,
            report.flows,
            args.out.display(),
            skipped.non_ip,
            skipped.truncated,
            skipped.malformed
        )?;
    }
    Ok(())
}
