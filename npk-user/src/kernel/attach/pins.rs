//! The pin directory of an attachment: where it is, what npk puts in it (and so may remove),
//! who made it, and the lock that makes changes to one attachment take turns.

use std::{
    io::{self, ErrorKind},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::fs::{MetadataExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
};

use aya::{
    programs::{ProgramError, ProgramInfo},
    sys::SyscallError,
};
use npk_common::maps::{
    MAP_ACTIVE, MAP_CONFIG, MAP_FLOWS, MAP_LAST, MAP_MODELS, MAP_SAMPLES, MAP_SLOT_SEQ, MAP_STATS,
};

use super::iface::IfaceName;
use crate::kernel::{Loops, ProgramKind};

/// What went wrong with a pin directory or a pin in it.
#[derive(Debug, thiserror::Error)]
pub enum PinsError {
    #[error("locking {} for the change", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "bpffs is not mounted at {BPFFS}: run `mount -t bpf bpf {BPFFS}` (scripts/setup.sh does)"
    )]
    NoBpffs,
    #[error(
        "opening {}: permission denied: the pins belong to uid {owner} (mode {mode:o}), this \
         process runs as uid {uid}. npk needs read-write access to the pins besides CAP_BPF, \
         CAP_PERFMON and CAP_NET_ADMIN: run it as uid {owner} or root",
        path.display()
    )]
    PinPermission {
        path: PathBuf,
        owner: u32,
        mode: u32,
        uid: u32,
    },
    #[error("{} is not npk's classifier (program `{name}`)", path.display())]
    ForeignProgram { path: PathBuf, name: String },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("opening {}: {source}", path.display())]
    OpenPin {
        path: PathBuf,
        #[source]
        source: SyscallError,
    },
    #[error("reading {}: {source}", path.display())]
    Program {
        path: PathBuf,
        #[source]
        source: ProgramError,
    },
}

pub(super) fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PinsError {
    let path = path.to_path_buf();
    move |source| PinsError::Io { what, path, source }
}

pub const BPFFS: &str = "/sys/fs/bpf";

pub(super) const PROG_PIN: &str = "prog";

pub(super) const LINK_PIN: &str = "link";

/// The link of the reply counter at TC egress (where the kernel has TCX).
pub(super) const EGRESS_LINK_PIN: &str = "egress_link";

const OWNER_PIN: &str = "owner";

/// Every name npk creates in an attachment's directory: all that detach and cleanup remove.
const NPK_PINS: [&str; 12] = [
    PROG_PIN,
    LINK_PIN,
    EGRESS_LINK_PIN,
    OWNER_PIN,
    MAP_MODELS,
    MAP_SLOT_SEQ,
    MAP_ACTIVE,
    MAP_CONFIG,
    MAP_STATS,
    MAP_LAST,
    MAP_FLOWS,
    MAP_SAMPLES,
];

/// The directory that holds every attachment's pins.
pub fn pin_root() -> PathBuf {
    Path::new(BPFFS).join("npk")
}

/// Where npk pins what it attached to `iface`.
pub fn pin_dir(iface: &IfaceName) -> PathBuf {
    pin_root().join(iface.as_str())
}

/// The process that made a pin directory: pid and start time (clock ticks after boot, from
/// /proc/<pid>/stat), so that a reused pid is not mistaken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    start_time: u64,
}

impl Owner {
    pub(super) fn current() -> Option<Self> {
        let pid = std::process::id();
        Some(Self {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// Whether the process still runs (the same one: same pid and start time).
    pub fn is_alive(self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }

    pub(super) fn read(dir: &Path) -> Option<Self> {
        let target = std::fs::read_link(dir.join(OWNER_PIN)).ok()?;
        let (pid, start) = target.to_str()?.split_once(':')?;
        Some(Self {
            pid: pid.parse().ok()?,
            start_time: start.parse().ok()?,
        })
    }

    pub(super) fn record(self, dir: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(
            format!("{}:{}", self.pid, self.start_time),
            dir.join(OWNER_PIN),
        )
    }
}

/// Field 22 of /proc/<pid>/stat (after the command name, which may contain anything); None
/// for no such process or a zombie (dead, its fds closed, not yet reaped).
fn start_time(pid: u32) -> Option<u64> {
    crate::sys::process_start_time(pid)
}

/// What [`remove_pins`] left in a directory it did not create.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Names in the directory that are not npk's (the directory stays).
    pub unknown: Vec<String>,
}

/// Removes npk's own pins from `dir` by their exact names, then the directory if that
/// emptied it. Anything else stays, and is returned.
pub fn remove_pins(dir: &Path) -> Result<Leftovers, PinsError> {
    for name in NPK_PINS {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(PinsError::Io {
                    what: "removing",
                    path,
                    source: e,
                });
            }
            _ => {}
        }
    }
    let entries = match std::fs::read_dir(dir) {
        // Removed meanwhile (by the attachment's own process, say): nothing left.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Leftovers::default()),
        entries => entries.map_err(io_error("listing", dir))?,
    };
    let mut unknown: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    unknown.sort();
    if unknown.is_empty() {
        match std::fs::remove_dir(dir) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(PinsError::Io {
                    what: "removing",
                    path: dir.to_path_buf(),
                    source: e,
                });
            }
            _ => {}
        }
    }
    Ok(Leftovers { unknown })
}

/// Maps EACCES/EPERM on a pin to what is needed instead of the bare syscall error.
pub(super) fn open_pin_error(path: &Path, source: SyscallError) -> PinsError {
    let denied = matches!(
        source.io_error.raw_os_error(),
        Some(libc::EACCES | libc::EPERM)
    );
    match std::fs::symlink_metadata(path) {
        Ok(meta) if denied => PinsError::PinPermission {
            path: path.to_path_buf(),
            owner: meta.uid(),
            mode: meta.mode() & 0o7777,
            // SAFETY: geteuid cannot fail.
            uid: unsafe { libc::geteuid() },
        },
        _ => PinsError::OpenPin {
            path: path.to_path_buf(),
            source,
        },
    }
}

pub(super) fn pinned_program(path: &Path) -> Result<ProgramInfo, PinsError> {
    ProgramInfo::from_pin(path).map_err(|e| match e {
        ProgramError::SyscallError(source) => open_pin_error(path, source),
        source => PinsError::Program {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// An attachment's pins held for one change: an exclusive `flock` on the pin directory, so
/// that pushes (and a detach) to one attachment run one after another (two at once both read
/// the same version and both write the same slot). The kernel releases the lock when its
/// holder dies: a killed push blocks nobody.
#[derive(Debug)]
pub struct PinLock {
    /// The locked directory; closing it releases the lock.
    pub(super) dir: OwnedFd,
}

pub(super) fn lock_dir(dir: &Path) -> Result<PinLock, PinsError> {
    let err = |source| PinsError::Lock {
        path: dir.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map_err(err)?;
    let fd = OwnedFd::from(file);
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(PinLock { dir: fd });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(err(e));
        }
    }
}

/// Which of npk's classifiers is pinned in `dir` and how its loops run (decide the feature
/// schema and the widest model a push may bring).
pub fn pinned_classifier(dir: &Path) -> Result<(ProgramKind, Loops), PinsError> {
    let path = dir.join(PROG_PIN);
    let info = pinned_program(&path)?;
    let name = info.name_as_str().unwrap_or("?");
    ProgramKind::classifier_named(name).ok_or_else(|| PinsError::ForeignProgram {
        path,
        name: name.to_string(),
    })
}

/// The program pinned in the attachment directory `dir`.
pub fn pinned_program_in(dir: &Path) -> Result<ProgramInfo, PinsError> {
    pinned_program(&dir.join(PROG_PIN))
}

pub(super) fn ensure_bpffs() -> Result<(), PinsError> {
    // SAFETY: statfs on a constant path with a zeroed out-parameter.
    let mounted = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c"/sys/fs/bpf".as_ptr(), &mut st) == 0 && st.f_type == 0xcafe4a11
    };
    if !mounted {
        return Err(PinsError::NoBpffs);
    }
    Ok(())
}

pub(super) fn c_path(path: &Path) -> Result<std::ffi::CString, PinsError> {
    use std::os::unix::ffi::OsStrExt as _;
    std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|e| PinsError::Io {
        what: "a NUL byte in",
        path: path.to_path_buf(),
        source: e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_dirs_stay_inside_npks_directory() {
        let iface: IfaceName = "eth0".parse().unwrap();
        assert_eq!(pin_dir(&iface), Path::new("/sys/fs/bpf/npk/eth0"));
    }

    #[test]
    fn remove_pins_removes_npks_names_only_and_keeps_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let pins = dir.path().join("eth0");
        std::fs::create_dir(&pins).unwrap();
        for name in [PROG_PIN, MAP_MODELS, "precious"] {
            std::fs::write(pins.join(name), b"x").unwrap();
        }
        let left = remove_pins(&pins).unwrap();
        assert_eq!(left.unknown, vec!["precious".to_string()]);
        assert!(pins.join("precious").exists());
        assert!(!pins.join(PROG_PIN).exists() && !pins.join(MAP_MODELS).exists());
        std::fs::remove_file(pins.join("precious")).unwrap();
        assert_eq!(remove_pins(&pins).unwrap(), Leftovers::default());
        assert!(!pins.exists());
    }

    #[test]
    fn an_owner_is_alive_only_with_its_own_start_time() {
        let me = Owner::current().unwrap();
        assert!(me.is_alive());
        let reused = Owner {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!reused.is_alive());
        let dir = tempfile::tempdir().unwrap();
        me.record(dir.path()).unwrap();
        assert_eq!(Owner::read(dir.path()), Some(me));
    }
}
