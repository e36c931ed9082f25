//! `npk cleanup`: removes what npk processes that were killed outright left behind, and
//! nothing else.

use std::fmt;

use anyhow::{Result, bail};
use clap::Args;

use crate::{
    kernel::attach,
    netlab, noteln,
    output::{Console, ConsoleError},
};

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
}

pub fn run(args: CleanupArgs) -> Result<()> {
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut failures = 0;
    // The report does not stop the cleanup: a closed stdout is reported once all is done.
    let mut console: Option<ConsoleError> = None;
    let mut report = |line: fmt::Arguments| {
        if let Err(e) = Console::Stdout.line(line) {
            console.get_or_insert(e);
        }
    };
    // Namespaces first: their veths go with them, and the pins on those become stale.
    for lab in netlab::lab_namespaces() {
        let Some((pid, _)) = lab.owner else {
            report(format_args!(
                "kept namespace {}: not an npk lab name (npkd-<pid>-<n>)",
                lab.netns
            ));
            continue;
        };
        if !lab.is_orphan() {
            report(format_args!(
                "kept namespace {}: pid {pid} is running",
                lab.netns
            ));
            continue;
        }
        let veth = lab.host_if().unwrap_or_default();
        let removed = if args.dry_run { Ok(()) } else { lab.remove() };
        match removed {
            Ok(()) => report(format_args!(
                "{verb} namespace {} and its veth pair {veth} (pid {pid} is gone)",
                lab.netns
            )),
            Err(e) => {
                failures += 1;
                noteln!("could not remove namespace {}: {e}", lab.netns);
            }
        }
    }
    for pins in attach::pin_dirs()? {
        let dir = pins.dir.display();
        let Some(stale) = pins.stale else {
            report(format_args!(
                "kept {dir}: {}",
                pins.kept.as_deref().unwrap_or("not stale")
            ));
            continue;
        };
        if args.dry_run {
            report(format_args!("{verb} {dir}: {stale}"));
            continue;
        }
        match attach::remove_stale(&pins.dir) {
            Ok(left) if left.unknown.is_empty() => report(format_args!("{verb} {dir}: {stale}")),
            Ok(left) => report(format_args!(
                "{verb} npk's pins from {dir} ({stale}); kept the directory, it also holds \
                 files npk did not create: {}",
                left.unknown.join(", ")
            )),
            Err(e) => {
                failures += 1;
                noteln!("could not clean {dir}: {e}");
            }
        }
    }
    if failures > 0 {
        bail!("{failures} leftovers could not be removed (see above)");
    }
    match console {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
