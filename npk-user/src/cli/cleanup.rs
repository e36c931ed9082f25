//! `npk cleanup`: removes what npk processes that were killed outright left behind, and
//! nothing else.

use anyhow::{Result, bail};
use clap::Args;

use crate::{kernel::attach, netlab, noteln, outln};

/// Remove what killed npk commands left: lab namespaces `npkd-<pid>-<n>` (and their veth
/// pairs) of processes that no longer run, and pin directories under /sys/fs/bpf/npk whose
/// program the kernel no longer runs. Everything else is kept and listed with the reason.
///
/// Example: `npk cleanup --dry-run`, then `npk cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Only list what would be removed and what is kept.
    #[arg(long)]
    dry_run: bool,
    /// One JSON object: {"dry_run", "removed": [...], "kept": [...], "failed": [...]}, each
    /// entry {"kind": "namespace"|"pins", "name", "why"}.
    #[arg(long)]
    json: bool,
}

/// What cleanup did with one leftover.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Removed,
    Kept,
    Failed,
}

struct Entry {
    outcome: Outcome,
    /// "namespace" or "pins".
    kind: &'static str,
    name: String,
    why: String,
}

pub fn run(args: CleanupArgs) -> Result<()> {
    let mut entries = Vec::new();
    let mut add = |outcome, kind, name: String, why: String| {
        entries.push(Entry {
            outcome,
            kind,
            name,
            why,
        })
    };
    // Namespaces first: their veths go with them, and the pins on those become stale.
    for lab in netlab::lab_namespaces() {
        let Some((pid, _)) = lab.owner else {
            let why = "not an npk lab name (npkd-<pid>-<n>)".to_string();
            add(Outcome::Kept, "namespace", lab.netns.clone(), why);
            continue;
        };
        if !lab.is_orphan() {
            let why = format!("pid {pid} is running");
            add(Outcome::Kept, "namespace", lab.netns.clone(), why);
            continue;
        }
        let veth = lab.host_if().unwrap_or_default();
        let removed = if args.dry_run { Ok(()) } else { lab.remove() };
        match removed {
            Ok(()) => add(
                Outcome::Removed,
                "namespace",
                lab.netns.clone(),
                format!("pid {pid} is gone; its veth pair {veth} goes with it"),
            ),
            Err(e) => add(
                Outcome::Failed,
                "namespace",
                lab.netns.clone(),
                e.to_string(),
            ),
        }
    }
    for pins in attach::pin_dirs()? {
        let dir = pins.dir.display().to_string();
        let Some(stale) = pins.stale else {
            let why = pins.kept.unwrap_or_else(|| "not stale".into());
            add(Outcome::Kept, "pins", dir, why);
            continue;
        };
        if args.dry_run {
            add(Outcome::Removed, "pins", dir, stale.to_string());
            continue;
        }
        match attach::remove_stale(&pins.dir) {
            Ok(left) if left.unknown.is_empty() => {
                add(Outcome::Removed, "pins", dir, stale.to_string())
            }
            Ok(left) => add(
                Outcome::Removed,
                "pins",
                dir,
                format!(
                    "{stale}; npk's pins only: the directory also holds files npk did not \
                     create ({}) and stays",
                    left.unknown.join(", ")
                ),
            ),
            Err(e) => add(Outcome::Failed, "pins", dir, e.to_string()),
        }
    }
    report(&entries, args.dry_run, args.json)?;
    let failures = entries
        .iter()
        .filter(|e| e.outcome == Outcome::Failed)
        .count();
    if failures > 0 {
        bail!("{failures} leftovers could not be removed (see above)");
    }
    Ok(())
}

/// Prints every entry (failures on stderr unless `json`), or the JSON object.
fn report(entries: &[Entry], dry_run: bool, json: bool) -> Result<()> {
    if json {
        let list = |outcome| {
            entries
                .iter()
                .filter(|e| e.outcome == outcome)
                .map(|e| serde_json::json!({"kind": e.kind, "name": e.name, "why": e.why}))
                .collect::<Vec<_>>()
        };
        outln!(
            "{}",
            serde_json::json!({
                "dry_run": dry_run,
                "removed": list(Outcome::Removed),
                "kept": list(Outcome::Kept),
                "failed": list(Outcome::Failed),
            })
        )?;
        return Ok(());
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for e in entries {
        // A pin directory's path says what it is.
        let what = match e.kind {
            "pins" => e.name.clone(),
            kind => format!("{kind} {}", e.name),
        };
        match e.outcome {
            Outcome::Removed => outln!("{verb} {what}: {}", e.why)?,
            Outcome::Kept => outln!("kept {what}: {}", e.why)?,
            Outcome::Failed => noteln!("could not remove {what}: {}", e.why),
        }
    }
    Ok(())
}
