//! Whether an attachment's pins are live, asked of the kernel (see the module documentation
//! of [`super`]): attached here, renamed, in another network namespace, being made, or stale.

use std::{
    fmt,
    io::ErrorKind,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use aya::programs::ProgramInfo;

use super::{
    AttachError, AttachMode,
    iface::{IfaceName, ifindex, ifname},
    pins::{
        LINK_PIN, Owner, PROG_PIN, PinLock, io_error, lock_dir, pin_dir, pin_root, pinned_program,
        pinned_program_in,
    },
    query::{attached_mode, pinned_link_ifindex},
};

/// What the kernel makes of the pins in an attachment's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinState {
    /// The kernel runs the pinned program on the interface.
    Attached {
        /// Where the kernel runs it, as the kernel reports it.
        mode: AttachMode,
        /// `npk attach --pin`: the link pin keeps it attached.
        pinned_link: bool,
        /// The process that attached it, while it runs (a foreground `npk attach`).
        running_owner: Option<u32>,
    },
    /// An `npk attach` (this pid) is creating the pins right now.
    Attaching { pid: u32 },
    /// The kernel runs the pinned program, but not on an interface of this name in this
    /// network namespace: bpffs is shared by every namespace, so these are the pins of an
    /// attachment in another one (a lab namespace of `npk gen`/`npk demo`, a container). Held
    /// by a running `npk attach` (its pid) or by the pinned link (None).
    Elsewhere { pid: Option<u32> },
    /// The pinned link runs the program on an interface of this namespace that has another
    /// name now (`ip link set OLD name NEW`): the pins stay under the old name.
    Renamed { now: IfaceName, mode: AttachMode },
    /// Pins of a program the kernel runs nowhere: left by an attach that was killed or whose
    /// interface was deleted.
    Stale(Stale),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stale {
    /// No such interface any more.
    InterfaceGone,
    /// The program is pinned but not attached to the interface.
    NotAttached { owner: Option<u32> },
    /// The directory has no program pin: an attach died while creating it.
    Incomplete,
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InterfaceGone => f.write_str("the interface no longer exists"),
            Self::NotAttached { owner: Some(pid) } => write!(
                f,
                "the program is not attached to the interface any more (the npk process that \
                 made it, pid {pid}, ended without cleaning up: killed?)"
            ),
            Self::NotAttached { owner: None } => {
                f.write_str("the program is not attached to the interface any more")
            }
            Self::Incomplete => {
                f.write_str("it has no program pin (an `npk attach` died while creating it)")
            }
        }
    }
}

/// The state of the pins on `iface` (None: npk has pinned nothing there). See the module
/// documentation for how liveness is decided.
pub fn pin_state(iface: &IfaceName) -> Result<Option<PinState>, AttachError> {
    let dir = pin_dir(iface);
    if !dir.exists() {
        return Ok(None);
    }
    let owner = Owner::read(&dir).filter(|o| o.is_alive()).map(|o| o.pid);
    let prog_pin = dir.join(PROG_PIN);
    if !prog_pin.exists() {
        return Ok(Some(match owner {
            Some(pid) => PinState::Attaching { pid },
            None => PinState::Stale(Stale::Incomplete),
        }));
    }
    let prog_id = pinned_program(&prog_pin)?.id();
    let index = ifindex(iface);
    if let Some(index) = index
        && let Some(mode) = attached_mode(iface, index, prog_id)?
    {
        return Ok(Some(PinState::Attached {
            mode,
            pinned_link: dir.join(LINK_PIN).exists(),
            running_owner: owner,
        }));
    }
    // Not run on `iface` here. A pinned link that still holds its interface runs the program
    // on a renamed interface here or in another namespace; a running owner holds its link in
    // another namespace (its own watch ends it when its interface goes).
    let link_pin = dir.join(LINK_PIN);
    let held = pinned_link_ifindex(&link_pin)
        .map_err(io_error("reading the link pinned at", &link_pin))?;
    if let Some(held) = held.filter(|&i| i != 0) {
        if let Some(now) = ifname(held)
            && let Some(mode) = attached_mode(&now, held, prog_id)?
        {
            return Ok(Some(PinState::Renamed { now, mode }));
        }
        return Ok(Some(PinState::Elsewhere { pid: owner }));
    }
    if owner.is_some() {
        return Ok(Some(PinState::Elsewhere { pid: owner }));
    }
    Ok(Some(PinState::Stale(match index {
        None => Stale::InterfaceGone,
        Some(_) => Stale::NotAttached {
            owner: Owner::read(&dir).map(|o| o.pid),
        },
    })))
}

/// The pins on `iface` when the kernel runs them; otherwise an error that says what is wrong
/// and what to run (`npk push`, `npk stats`).
pub fn live_pins(iface: &IfaceName) -> Result<PathBuf, AttachError> {
    let dir = pin_dir(iface);
    match pin_state(iface)? {
        Some(PinState::Attached { .. } | PinState::Renamed { .. }) => Ok(dir),
        None => renamed_to(iface)?.ok_or(AttachError::NotAttached {
            iface: iface.clone(),
            dir,
        }),
        Some(PinState::Elsewhere { pid }) => Err(AttachError::Elsewhere {
            iface: iface.clone(),
            pid,
        }),
        Some(PinState::Attaching { pid }) => Err(AttachError::Attaching {
            iface: iface.clone(),
            pid,
        }),
        Some(PinState::Stale(stale)) => Err(AttachError::Stale {
            iface: iface.clone(),
            dir,
            stale,
        }),
    }
}

/// Waits for and takes the lock of the attachment on `iface`, and checks that it is still
/// the live attachment (a detach may have gone first); returns its pin directory and the
/// lock, held until dropped.
pub fn lock_live_pins(iface: &IfaceName) -> Result<(PathBuf, PinLock), AttachError> {
    let dir = live_pins(iface)?;
    let lock = lock_dir(&dir)?;
    // The directory locked must still be the one at the path (not removed by a detach and
    // made anew by the next attach), and still attached.
    let held = lock
        .dir
        .try_clone()
        .and_then(|fd| std::fs::File::from(fd).metadata());
    let same_dir = matches!(
        (held, std::fs::metadata(&dir)),
        (Ok(a), Ok(b)) if (a.dev(), a.ino()) == (b.dev(), b.ino())
    );
    if !same_dir || live_pins(iface).ok().as_ref() != Some(&dir) {
        return Err(AttachError::DetachedMeanwhile {
            iface: iface.clone(),
        });
    }
    Ok((dir, lock))
}

/// The pin directory of the attachment that runs on `iface` under the name the interface had
/// when it was attached (`ip link set OLD name NEW` leaves the pins under OLD).
pub fn renamed_to(iface: &IfaceName) -> Result<Option<PathBuf>, AttachError> {
    let root = pin_root();
    let entries = match std::fs::read_dir(&root) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        entries => entries.map_err(io_error("listing", &root))?,
    };
    for entry in entries.flatten() {
        let Some(old) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Ok(Some(PinState::Renamed { now, .. })) = pin_state(&old)
            && &now == iface
        {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

/// The kernel's accounting of the attached program (run count and time, when
/// kernel.bpf_stats_enabled is on).
pub fn program_info(iface: &IfaceName) -> Result<ProgramInfo, AttachError> {
    let dir = pin_dir(iface);
    let dir = match dir.exists() {
        true => dir,
        false => renamed_to(iface)?.unwrap_or(dir),
    };
    Ok(pinned_program_in(&dir)?)
}

/// A directory under [`pin_root`] and what `npk cleanup` makes of it.
#[derive(Debug)]
pub struct PinDir {
    pub dir: PathBuf,
    /// Some: stale, removable (why); None: kept, see `kept`.
    pub stale: Option<Stale>,
    /// Why it is kept, when it is.
    pub kept: Option<String>,
}

/// Every directory under [`pin_root`], judged: stale ones may be removed with
/// [`remove_pins`], the others are kept with the reason.
pub fn pin_dirs() -> Result<Vec<PinDir>, AttachError> {
    let root = pin_root();
    let entries = match std::fs::read_dir(&root) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        entries => entries.map_err(io_error("listing", &root))?,
    };
    let mut dirs = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let judged = |stale: Option<Stale>, kept: Option<String>| PinDir {
            dir: dir.clone(),
            stale,
            kept,
        };
        // `<iface>:<pid>`: an attach's directory before it is moved into place.
        if let Some((_, pid)) = name
            .split_once(':')
            .filter(|(iface, _)| iface.parse::<IfaceName>().is_ok())
            .and_then(|(iface, pid)| Some((iface, pid.parse::<u32>().ok()?)))
        {
            dirs.push(if Path::new(&format!("/proc/{pid}")).exists() {
                judged(None, Some(format!("being attached by pid {pid}")))
            } else {
                judged(Some(Stale::Incomplete), None)
            });
            continue;
        }
        let Ok(iface) = name.parse::<IfaceName>() else {
            dirs.push(judged(
                None,
                Some("not an interface name: not npk's".into()),
            ));
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(judged(None, Some("not a directory: not npk's".into())));
            continue;
        }
        dirs.push(match pin_state(&iface) {
            Ok(Some(PinState::Stale(stale))) => judged(Some(stale), None),
            Ok(Some(PinState::Attached {
                pinned_link,
                running_owner,
                ..
            })) => judged(
                None,
                Some(match running_owner.filter(|_| !pinned_link) {
                    Some(pid) => format!("attached by running npk process {pid}"),
                    None => format!("attached (`npk detach --iface {iface}` removes it)"),
                }),
            ),
            Ok(Some(PinState::Attaching { pid })) => {
                judged(None, Some(format!("being attached by pid {pid}")))
            }
            Ok(Some(PinState::Elsewhere { pid })) => judged(
                None,
                Some(match pid {
                    Some(pid) => format!(
                        "held by running npk process {pid}; its interface is in another \
                         network namespace"
                    ),
                    None => "its pinned link runs the program on an interface in another \
                             network namespace"
                        .into(),
                }),
            ),
            Ok(Some(PinState::Renamed { now, .. })) => judged(
                None,
                Some(format!(
                    "attached to {now}, which was {iface} when attached (`npk detach --iface \
                     {now}` removes it)"
                )),
            ),
            Ok(None) => continue,
            Err(e) => judged(None, Some(format!("cannot tell whether it is live: {e}"))),
        });
    }
    dirs.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(dirs)
}
