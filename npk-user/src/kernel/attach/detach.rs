//! Detaching: the pinned link first (at once, not when its inode goes), then npk's pins, then
//! the run-time statistics switch once no pinned attachment needs it.

use std::path::Path;

use aya::sys::SyscallError;

use super::{
    AttachError, Leftovers, PinState, Stale,
    iface::IfaceName,
    pins::{
        EGRESS_LINK_PIN, LINK_PIN, io_error, lock_dir, open_pin_error, pin_dir, pin_root,
        remove_pins,
    },
    query::{bpf_obj_get, link_detach, pinned_link_ifindex, unheld_classifier_links},
    state::{pin_state, renamed_to},
};
use crate::kernel::{BpfStats, load::has_sys_admin};

/// What [`detach`] found and did.
#[derive(Debug)]
pub struct Detached {
    /// Set when the pins were stale (nothing was attached any more): why.
    pub stale: Option<Stale>,
    pub leftovers: Leftovers,
    /// Why kernel.bpf_stats_enabled stayed as it was, when it did.
    pub stats_kept_on: Option<StatsKeptOn>,
}

/// Why a detach left kernel.bpf_stats_enabled on (`npk attach --pin` turned it on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsKeptOn {
    #[error("another pinned npk attachment in this bpffs ({0}) needs it")]
    PinsHere(String),
    #[error(
        "attached npk classifier links no process holds (pinned in another bpffs) need it: link ids {0:?}"
    )]
    PinnedLinks(Vec<u32>),
    #[error("without CAP_SYS_ADMIN npk cannot list the host's links to know whether any needs it")]
    NoCapability,
}

/// Detaches what `npk attach --pin` left on `iface` and removes npk's pins; stale pins (of a
/// killed attach, a deleted interface) are removed too. A live foreground attachment is
/// refused: its process owns it.
pub fn detach(iface: &IfaceName) -> Result<Detached, AttachError> {
    let mut dir = pin_dir(iface);
    let stale = match pin_state(iface)? {
        // Pins made under the name this interface had before a rename.
        None => match renamed_to(iface)? {
            Some(renamed) => {
                dir = renamed;
                None
            }
            None => {
                return Err(AttachError::NotAttached {
                    iface: iface.clone(),
                    dir,
                });
            }
        },
        Some(PinState::Attaching { pid }) => {
            return Err(AttachError::Attaching {
                iface: iface.clone(),
                pid,
            });
        }
        Some(PinState::Elsewhere { pid }) => {
            return Err(AttachError::Elsewhere {
                iface: iface.clone(),
                pid,
            });
        }
        Some(PinState::Attached {
            pinned_link: false,
            running_owner: Some(pid),
            ..
        }) => {
            return Err(AttachError::Foreground {
                iface: iface.clone(),
                pid,
            });
        }
        Some(PinState::Attached { .. } | PinState::Renamed { .. }) => None,
        Some(PinState::Stale(stale)) => Some(stale),
    };
    // After any push in progress: it finishes on the attachment, or finds it gone.
    let _lock = lock_dir(&dir)?;
    // The classifier first: the reply counter alone changes no verdict.
    for name in [LINK_PIN, EGRESS_LINK_PIN] {
        let link = dir.join(name);
        if link.exists() {
            detach_pinned_link(&link)?;
        }
    }
    let leftovers = remove_pins(&dir)?;
    let stats_kept_on = restore_stats_without_pinned_links().err();
    Ok(Detached {
        stale,
        leftovers,
        stats_kept_on,
    })
}

/// Detaches the link pinned at `path` at once (BPF_LINK_DETACH), then removes the pin. The
/// pin's removal alone detaches only when the kernel drops the inode's reference, after an RCU
/// grace period and a work item: on a slow machine (5.10 in a VM) `npk detach` returned with
/// the program still attached.
fn detach_pinned_link(path: &Path) -> Result<(), AttachError> {
    let link = bpf_obj_get(path).map_err(|io_error| {
        open_pin_error(
            path,
            SyscallError {
                call: "BPF_OBJ_GET",
                io_error,
            },
        )
    })?;
    link_detach(&link).map_err(io_error("detaching the link pinned at", path))?;
    std::fs::remove_file(path).map_err(io_error("removing", path))?;
    Ok(())
}

/// Puts back kernel.bpf_stats_enabled once no `--pin` attachment is left on the host: no link
/// pinned under this bpffs, and no attached link of an npk classifier that no process holds
/// open (a pinned one in another bpffs: a container's own). Foreground attachments hold their
/// links and keep the accounting on by BPF_ENABLE_STATS, so they neither need the switch nor
/// keep it on. Without CAP_SYS_ADMIN the kernel's lists are closed and the switch stays on.
fn restore_stats_without_pinned_links() -> Result<(), StatsKeptOn> {
    let pinned_here = std::fs::read_dir(pin_root()).ok().and_then(|attached| {
        attached
            .flatten()
            // A stale directory's link (its interface deleted) runs nowhere and needs nothing.
            .find(|a| {
                pinned_link_ifindex(&a.path().join(LINK_PIN)).is_ok_and(|i| i.unwrap_or(0) != 0)
            })
            .map(|a| a.file_name().to_string_lossy().into_owned())
    });
    if let Some(iface) = pinned_here {
        return Err(StatsKeptOn::PinsHere(iface));
    }
    if !has_sys_admin() {
        return Err(StatsKeptOn::NoCapability);
    }
    let unheld = unheld_classifier_links();
    if !unheld.is_empty() {
        return Err(StatsKeptOn::PinnedLinks(unheld));
    }
    BpfStats::restore_after_pins();
    Ok(())
}

/// Removes the pins of a directory [`pin_dirs`] found stale (npk's names only).
pub fn remove_stale(dir: &Path) -> Result<Leftovers, AttachError> {
    let leftovers = remove_pins(dir)?;
    // Cleanup reports leftovers only; the switch's state is `npk detach`'s to explain.
    let _ = restore_stats_without_pinned_links();
    Ok(leftovers)
}
