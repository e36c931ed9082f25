//! `npk cleanup`: removes what npk processes that were killed outright left behind, and
//! nothing else.

use anyhow::{Result, bail};
use clap::Args;

use crate::{kernel::attach, netlab};

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
    // Namespaces first: their veths go with them, and the pins on those become stale.
    for lab in netlab::lab_namespaces() {
        let Some((pid, _)) = lab.owner else {
            println!(
                "kept namespace {}: not an npk lab name (npkd-<pid>-<n>)",
                lab.netns
            );
            continue;
        };
        if !lab.is_orphan() {
            println!("kept namespace {}: pid {pid} is running", lab.netns);
            continue;
        }
        let veth = lab.host_if().unwrap_or_default();
        let removed = if args.dry_run { Ok(()) } else { lab.remove() };
        match removed {
            Ok(()) => println!(
                "{verb} namespace {} and its veth pair {veth} (pid {pid} is gone)",
                lab.netns
            ),
            Err(e) => {
                failures += 1;
                eprintln!("could not remove namespace {}: {e}", lab.netns);
            }
        }
    }
    for pins in attach::pin_dirs()? {
        let dir = pins.dir.display();
        let Some(stale) = pins.stale else {
            println!(
                "kept {dir}: {}",
                pins.kept.as_deref().unwrap_or("not stale")
            );
            continue;
        };
        if args.dry_run {
            println!("{verb} {dir}: {stale}");
            continue;
        }
        match attach::remove_stale(&pins.dir) {
            Ok(left) if left.unknown.is_empty() => println!("{verb} {dir}: {stale}"),
            Ok(left) => println!(
                "{verb} npk's pins from {dir} ({stale}); kept the directory, it also holds \
                 files npk did not create: {}",
                left.unknown.join(", ")
            ),
            Err(e) => {
                failures += 1;
                eprintln!("could not clean {dir}: {e}");
            }
        }
    }
    if failures > 0 {
        bail!("{failures} leftovers could not be removed (see above)");
    }
    Ok(())
}
