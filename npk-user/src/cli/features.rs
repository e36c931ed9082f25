//! `npk features`: a packet capture to labelled feature rows, computed by the kernel's own
//! parser and flow features, with the capture's timestamps. Frames from the capturing machine's
//! own address are its replies: they make no row and count for the reply features, as the
//! egress program counts them.

use std::{net::IpAddr, path::PathBuf};

use anyhow::{Result, ensure};
use npk_common::model::MAX_CLASSES;
use serde::Serialize;

use crate::{
    output::OutputPath,
    packets::{
        features::{FeatureCsv, FlowTable, LOCAL_GUESS_FRAMES, LocalGuess, Skipped},
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
    /// The address of the machine the capture was taken on: its packets are replies (they
    /// make no row). Default: the manifest's server, else the address in at least 90% of the
    /// first 10,000 IP frames; none found, every frame is taken as received.
    #[arg(long, value_name = "ADDR")]
    pub local: Option<IpAddr>,
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
    /// The capturing machine's address, and how it was found (`--local`, `manifest`,
    /// `guessed`), or none.
    local: Option<IpAddr>,
    local_from: &'static str,
    /// Frames from the local address: counted as replies, no row.
    replies: u64,
}

/// An address as flow keys hold it (IPv4-mapped for IPv4).
fn key_addr(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// [`key_addr`]'s inverse.
fn ip_of(key: [u8; 16]) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(key);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

/// Where the local address comes from, and the frames read while it is guessed.
enum Local {
    /// Decided (none: every frame is taken as received).
    Known(Option<[u8; 16]>),
    Guessing {
        guess: LocalGuess,
        held: Vec<(Vec<u8>, u64)>,
    },
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
    let (mut local, local_from) = match (args.local, labels.as_ref().and_then(|l| l.server)) {
        (Some(addr), _) => (Local::Known(Some(key_addr(addr))), "--local"),
        (None, Some(server)) => (Local::Known(Some(key_addr(IpAddr::V4(server)))), "manifest"),
        (None, None) => (
            Local::Guessing {
                guess: LocalGuess::default(),
                held: Vec::new(),
            },
            "guessed",
        ),
    };
    let mut unlabelled = 0u64;
    let mut replies = 0u64;
    let mut csv = FeatureCsv::create(&out)?;
    let mut flows = FlowTable::new();
    let mut skipped = Skipped::default();
    // One frame with the local address known: a reply, or a row.
    let mut frame = |local: Option<[u8; 16]>, frame: &[u8], timestamp_ns: u64| {
        let h = match npk_common::packet::parse(frame) {
            Ok(h) => h,
            Err(e) => return skipped.count(e),
        };
        if local == Some(h.key.src) {
            replies += 1;
            return flows.observe_reply_headers(&h, timestamp_ns);
        }
        let mut features = [0; npk_common::packet::NUM_FEATURES];
        flows.observe_headers(&h, timestamp_ns, &mut features);
        let label = match &labels {
            Some(l) => l
                .label(&h.key.src, timestamp_ns)
                .filter(|(scenario, _)| args.only.is_none_or(|o| o == *scenario))
                .map(|(_, class)| class),
            None => args.label,
        };
        match label {
            Some(class) => csv.write(&features, class),
            None => unlabelled += 1,
        }
    };
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
        |f| match &mut local {
            Local::Known(addr) => frame(*addr, f.frame, f.timestamp_ns),
            Local::Guessing { guess, held } => {
                if let Ok(h) = npk_common::packet::parse(f.frame) {
                    guess.add(&h.key);
                }
                held.push((f.frame.to_vec(), f.timestamp_ns));
                if held.len() >= LOCAL_GUESS_FRAMES {
                    let addr = guess.local();
                    for (bytes, ts) in held.drain(..) {
                        frame(addr, &bytes, ts);
                    }
                    local = Local::Known(addr);
                }
            }
        },
    )?;
    // A capture shorter than the guess: decided on what there is.
    let local = match local {
        Local::Known(addr) => addr,
        Local::Guessing { guess, held } => {
            let addr = guess.local();
            for (bytes, ts) in held {
                frame(addr, &bytes, ts);
            }
            addr
        }
    };
    bar.finish_and_clear();
    let rows = csv.rows();
    csv.commit()?;
    let report = Report {
        frames: summary.frames,
        rows,
        flows: flows.len(),
        skipped,
        unlabelled,
        local: local.map(ip_of),
        local_from: if local.is_some() { local_from } else { "none" },
        replies,
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
        match report.local {
            Some(addr) => console.line(format_args!(
                "local address {addr} ({}): {} of its frames counted as replies",
                report.local_from, report.replies
            ))?,
            None => console.line(format_args!(
                "no local address (none in 90% of the first {LOCAL_GUESS_FRAMES} frames; \
                 --local ADDR names it): every frame taken as received, no replies counted"
            ))?,
        }
    }
    Ok(())
}
