//! `npk status`: what npk runs on this host now, as the kernel reports it: every attachment
//! (interface, hook and mode, program, model, pinned or held by a process, since when,
//! counters), every kernel server, and the other pin directories: stale ones, and those of
//! npk processes whose interface is in another network namespace.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::{
    kernel::attach::AttachMode,
    outln,
    stats::{
        self, Snapshot,
        exporter::{AttachmentStats, HostStats, ServerStats},
    },
};

/// List every npk attachment and kernel server on this host, and the other pins.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON object: {"attachments": [...], "servers": [...], "other_pins": [...]}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs) -> Result<()> {
    let host = HostStats::read()?;
    // Pin directories that are no attachment here: (directory, stale, why).
    let others: Vec<(String, bool, String)> = host
        .other_pins
        .iter()
        .map(|d| {
            let why = match (&d.stale, &d.kept) {
                (Some(stale), _) => stale.to_string(),
                (None, Some(kept)) => kept.clone(),
                (None, None) => String::new(),
            };
            (d.dir.display().to_string(), d.stale.is_some(), why)
        })
        .collect();
    let now = SystemTime::now();
    if args.json {
        let attachments: Vec<_> = host
            .attachments
            .iter()
            .map(|a| attachment_json(a, now))
            .collect();
        let servers: Vec<_> = host.servers.iter().map(server_json).collect();
        let others: Vec<_> = others
            .iter()
            .map(|(dir, stale, why)| json!({"dir": dir, "stale": stale, "why": why}))
            .collect();
        outln!(
            "{}",
            json!({"attachments": attachments, "servers": servers, "other_pins": others})
        )?;
        return Ok(());
    }
    if host.attachments.is_empty() && host.servers.is_empty() && others.is_empty() {
        outln!("nothing attached: no npk attachment, kernel server or pin on this host")?;
        return Ok(());
    }
    for a in &host.attachments {
        outln!("{}", attachment_line(a, now))?;
    }
    for s in &host.servers {
        outln!(
            "{}: kernel server, program npk_serve id {}, {} requests, {} replies",
            s.iface.as_str(),
            s.program_id,
            s.counters.requests,
            s.counters.replies.iter().sum::<u64>()
        )?;
    }
    for (dir, stale, why) in &others {
        if *stale {
            outln!("stale pins {dir}: {why} (`npk cleanup` removes them)")?;
        } else {
            outln!("pins {dir}: {why}")?;
        }
    }
    Ok(())
}

/// The name `--mode` takes for `mode`.
fn mode_name(mode: AttachMode) -> String {
    mode.to_possible_value()
        .map_or_else(|| mode.to_string(), |v| v.get_name().to_string())
}

/// Seconds since `at`, when the kernel said when (and the clock did not go back).
fn seconds_since(at: Option<SystemTime>, now: SystemTime) -> Option<u64> {
    Some(now.duration_since(at?).ok()?.as_secs())
}

fn holder(a: &AttachmentStats) -> String {
    match (a.pinned_link, a.owner) {
        (true, _) => "pinned".into(),
        (false, Some(pid)) => format!("held by npk attach pid {pid}"),
        (false, None) => "held by no running npk process".into(),
    }
}

fn counters(a: &AttachmentStats) -> Snapshot {
    Snapshot {
        counters: a.counters,
        classes: a.model.as_ref().map_or(0, |m| m.classes as usize),
        pps: None,
        avg_ns_per_packet: a.run_time.map(|r| r.time.as_nanos() as f64 / r.runs as f64),
    }
}

fn attachment_json(a: &AttachmentStats, now: SystemTime) -> serde_json::Value {
    json!({
        "iface": a.iface.as_str(),
        "pins": a.pins.display().to_string(),
        "mode": mode_name(a.mode),
        "program": a.program.name,
        "program_id": a.program.id,
        "loaded_at_unix": a.program.loaded_at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        "up_s": seconds_since(a.program.loaded_at, now),
        "pinned": a.pinned_link,
        "owner_pid": a.owner,
        "model": a.model.as_ref().map(|m| json!({
            "version": m.version,
            "id": format!("{:08x}", m.id),
            "classes": m.classes,
            "inputs": m.inputs,
        })),
        "counters": counters(a).to_json(),
    })
}

fn attachment_line(a: &AttachmentStats, now: SystemTime) -> String {
    let model = a.model.as_ref().map_or("no model active".into(), |m| {
        format!(
            "model v{} id {:08x} ({} inputs, {} classes)",
            m.version, m.id, m.inputs, m.classes
        )
    });
    let up =
        seconds_since(a.program.loaded_at, now).map_or(String::new(), |s| format!(", up {s} s"));
    format!(
        "{}: {}, program {} id {}{up}, {}; {model}; packets {} dropped {} unsure {}",
        a.iface.as_str(),
        a.mode,
        a.program.name,
        a.program.id,
        holder(a),
        stats::packets(&a.counters),
        a.counters.dropped,
        a.counters.unsure,
    )
}

fn server_json(s: &ServerStats) -> serde_json::Value {
    json!({
        "iface": s.iface.as_str(),
        "program_id": s.program_id,
        "requests": s.counters.requests,
        "replies": s.counters.replies.iter().sum::<u64>(),
        "passed": s.counters.passed,
        "malformed": s.counters.malformed,
    })
}
