//! Attaching the classifier to an interface, pinning it in bpffs so later commands (`npk push`,
//! `npk stats`, `npk detach`) find it, and detaching it.
//!
//! Layout: `/sys/fs/bpf/npk/<iface>/` holds the control maps (by map name), `prog`, `owner` (a
//! symlink to `<pid>:<start time>` of the `npk attach` that made it) and, for `--pin`, `link`.
//! The link pin keeps the program attached after npk exits; removing it detaches. npk removes
//! only these names, never a directory tree.
//!
//! Whether pins are live is asked of the kernel, not inferred from files: an attachment is live
//! when the program id of its `prog` pin is among the programs the kernel runs on the
//! interface (XDP in any mode from netlink RTM_GETLINK, TC from BPF_PROG_QUERY on TCX ingress;
//! CAP_NET_ADMIN suffices for both). A killed foreground `npk attach` closed its link, a deleted
//! interface took its links with it: both leave pins the kernel runs nowhere, which
//! [`pin_state`] reports as [`PinState::Stale`]. bpffs is one for every network namespace and a
//! name is not an identity: a pinned link that still holds an interface (its link info's
//! ifindex) runs on a renamed interface here ([`PinState::Renamed`]) or on one in another
//! namespace ([`PinState::Elsewhere`]), as do the pins of a running `npk attach` whose interface
//! is not here; neither is ever stale. The `owner` link only tells a directory that an
//! `npk attach` is still filling from one whose attach died half-way.

use std::{
    ffi::CString,
    fmt,
    io::{self, ErrorKind},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{
            ffi::OsStrExt,
            fs::{MetadataExt, OpenOptionsExt},
        },
    },
    path::{Path, PathBuf},
    str::FromStr,
};

use aya::{
    pin::PinError,
    programs::{
        ProgramError, ProgramInfo, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, LinkError},
    },
    sys::SyscallError,
};
use npk_common::{
    maps::{
        Config, MAP_ACTIVE, MAP_CONFIG, MAP_FLOWS, MAP_LAST, MAP_MODELS, MAP_SAMPLES, MAP_SLOT_SEQ,
        MAP_STATS,
    },
    model::Model,
};

use super::{BpfStats, Classifier, KernelError, Loops, ProgramKind, run_time_stats};

pub const BPFFS: &str = "/sys/fs/bpf";
/// Interface names have at most IFNAMSIZ - 1 bytes.
pub const IFACE_NAME_MAX: usize = 15;

const PROG_PIN: &str = "prog";
const LINK_PIN: &str = "link";
const OWNER_PIN: &str = "owner";
/// Every name npk creates in an attachment's directory: all that detach and cleanup remove.
const NPK_PINS: [&str; 11] = [
    PROG_PIN,
    LINK_PIN,
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

/// A network interface name as the kernel accepts one (`dev_valid_name`): 1-15 bytes, no `/`,
/// `:`, whitespace or NUL, not `.` or `..`. Checked before any path is built from it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IfaceName(String);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IfaceNameError {
    #[error("the interface name is empty")]
    Empty,
    #[error("interface name {name:?} has {len} bytes; the kernel allows at most {IFACE_NAME_MAX}")]
    TooLong { name: String, len: usize },
    #[error("interface name {name:?} contains {found:?}, which interface names cannot contain")]
    Forbidden { name: String, found: char },
    #[error("{0:?} is a directory name, not an interface name")]
    Dots(String),
}

impl FromStr for IfaceName {
    type Err = IfaceNameError;

    fn from_str(name: &str) -> Result<Self, IfaceNameError> {
        if name.is_empty() {
            return Err(IfaceNameError::Empty);
        }
        if name.len() > IFACE_NAME_MAX {
            return Err(IfaceNameError::TooLong {
                name: name.to_string(),
                len: name.len(),
            });
        }
        if name == "." || name == ".." {
            return Err(IfaceNameError::Dots(name.to_string()));
        }
        if let Some(found) = name
            .chars()
            .find(|&c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
        {
            return Err(IfaceNameError::Forbidden {
                name: name.to_string(),
                found,
            });
        }
        Ok(Self(name.to_string()))
    }
}

impl IfaceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The directory that holds every attachment's pins.
pub fn pin_root() -> PathBuf {
    Path::new(BPFFS).join("npk")
}

/// Where npk pins what it attached to `iface`.
pub fn pin_dir(iface: &IfaceName) -> PathBuf {
    pin_root().join(iface.as_str())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// XDP in the driver (fastest; the driver must support it).
    Native,
    /// Generic XDP in the network stack (any interface).
    Skb,
    /// TC ingress (a TCX link: no qdisc is created or needed).
    Tc,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Native => "native XDP",
            Self::Skb => "skb XDP",
            Self::Tc => "TC",
        })
    }
}

/// The process that made a pin directory: pid and start time (clock ticks after boot, from
/// /proc/<pid>/stat), so that a reused pid is not mistaken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    start_time: u64,
}

impl Owner {
    fn current() -> Option<Self> {
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

    fn read(dir: &Path) -> Option<Self> {
        let target = std::fs::read_link(dir.join(OWNER_PIN)).ok()?;
        let (pid, start) = target.to_str()?.split_once(':')?;
        Some(Self {
            pid: pid.parse().ok()?,
            start_time: start.parse().ok()?,
        })
    }

    fn record(self, dir: &Path) -> io::Result<()> {
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

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no network interface named `{0}` (see `ip link`)")]
    NoInterface(IfaceName),
    #[error("locking {} for the change", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("npk was detached from {iface} while this command waited for its turn")]
    DetachedMeanwhile { iface: IfaceName },
    #[error(
        "bpffs is not mounted at {BPFFS}: run `mount -t bpf bpf {BPFFS}` (scripts/setup.sh does)"
    )]
    NoBpffs,
    #[error(
        "npk is already attached to {iface} ({how}): use `npk push` to change the model or {undo} first"
    )]
    AlreadyAttached {
        iface: IfaceName,
        how: String,
        undo: String,
    },
    #[error("npk is not attached to {iface} (no {})", dir.display())]
    NotAttached { iface: IfaceName, dir: PathBuf },
    #[error(
        "the pins in {} are stale: {stale}. Run `npk detach --iface {iface}` (or `npk cleanup`) \
         to remove them, then `npk attach` again",
        dir.display()
    )]
    Stale {
        iface: IfaceName,
        dir: PathBuf,
        stale: Stale,
    },
    #[error("npk is being attached to {iface} by pid {pid} right now; try again in a moment")]
    Attaching { iface: IfaceName, pid: u32 },
    #[error(
        "the pins for {iface} belong to an attachment in another network namespace (bpffs is \
         shared by all of them){}; run this where its interface is",
        pid.map_or(String::new(), |pid| format!(", held by npk pid {pid}"))
    )]
    Elsewhere { iface: IfaceName, pid: Option<u32> },
    #[error(
        "the pins for {iface} belong to the attachment on {now} ({iface} was renamed {now}); \
         use --iface {now}, or `npk detach --iface {now}` first"
    )]
    Renamed { iface: IfaceName, now: IfaceName },
    #[error(
        "{iface} is held by a foreground `npk attach` (pid {pid}); stop it (Ctrl-C, or kill {pid}) \
         instead: it detaches and removes its pins"
    )]
    Foreground { iface: IfaceName, pid: u32 },
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
    #[error(
        "removed npk's stale pins from {}, but it also holds files npk did not create ({names}): \
         move them away and attach again",
        dir.display()
    )]
    ForeignFiles { dir: PathBuf, names: String },
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
    #[error("pinning {what} at {}: {source}", path.display())]
    Pin {
        what: String,
        path: PathBuf,
        #[source]
        source: PinError,
    },
    #[error("{what}: {source}")]
    Program {
        what: String,
        #[source]
        source: ProgramError,
    },
    #[error("opening the link pin {}: {source}", path.display())]
    Link {
        path: PathBuf,
        #[source]
        source: LinkError,
    },
    #[error("asking the kernel what runs on {iface}: {source}")]
    Query {
        iface: IfaceName,
        #[source]
        source: io::Error,
    },
    #[error(
        "this kernel ({release}) has no TCX links: TC needs TCX (Linux >= 6.6); use --mode skb/native"
    )]
    NoTcx { release: String },
    #[error(
        "the loaded classifier is {}, attaching as {mode} needs {}",
        loaded.name(),
        needed.name()
    )]
    WrongProgram {
        loaded: ProgramKind,
        mode: AttachMode,
        needed: ProgramKind,
    },
    #[error("the {0} link is not a bpf_link (npk needs a kernel >= 6.6)")]
    NotBpfLink(&'static str),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AttachError {
    let path = path.to_path_buf();
    move |source| AttachError::Io { what, path, source }
}

/// A classifier attached to an interface. Dropping it detaches unless it was made persistent.
pub struct Attachment {
    pub classifier: Classifier,
    pub iface: IfaceName,
    /// Why the pins an earlier attach left on the interface were removed first, if there were.
    pub replaced_stale: Option<Stale>,
    dir: PathBuf,
    ifindex: u32,
    prog_id: u32,
    persistent: bool,
    /// Keeps the kernel's run-time accounting on while a foreground attachment lives.
    _stats: Option<OwnedFd>,
    _link: Option<FdLink>,
}

/// The interface's index, or None when there is no such interface.
fn ifindex(iface: &IfaceName) -> Option<u32> {
    let name = std::ffi::CString::new(iface.as_str()).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

fn ensure_bpffs() -> Result<(), AttachError> {
    // SAFETY: statfs on a constant path with a zeroed out-parameter.
    let mounted = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c"/sys/fs/bpf".as_ptr(), &mut st) == 0 && st.f_type == 0xcafe4a11
    };
    if !mounted {
        return Err(AttachError::NoBpffs);
    }
    Ok(())
}

/// Loads the classifier, installs `model` and `config`, attaches it to `iface` and pins it.
/// Stale pins of an earlier attach are removed first ([`Attachment::replaced_stale`] says why);
/// a live attachment is refused. On any error nothing stays attached or pinned.
pub fn attach(
    iface: &IfaceName,
    mode: AttachMode,
    model: &Model,
    config: &Config,
    persistent: bool,
) -> Result<Attachment, AttachError> {
    attach_with(iface, mode, model, config, persistent, |kind| {
        Ok(Classifier::load_for(kind, model)?)
    })
}

/// [`attach`] with a classifier already loaded (tests that checked it through TEST_RUN attach
/// the same program: under emulation each load is a verifier walk of minutes).
pub fn attach_loaded(
    iface: &IfaceName,
    mode: AttachMode,
    classifier: Classifier,
    model: &Model,
    config: &Config,
    persistent: bool,
) -> Result<Attachment, AttachError> {
    attach_with(iface, mode, model, config, persistent, |needed| {
        if classifier.kind != needed {
            return Err(AttachError::WrongProgram {
                loaded: classifier.kind,
                mode,
                needed,
            });
        }
        Ok(classifier)
    })
}

/// [`attach`] with the classifier `load` gives for the program kind `mode` needs, asked for
/// once nothing else stands in the way.
fn attach_with(
    iface: &IfaceName,
    mode: AttachMode,
    model: &Model,
    config: &Config,
    persistent: bool,
    load: impl FnOnce(ProgramKind) -> Result<Classifier, AttachError>,
) -> Result<Attachment, AttachError> {
    let ifindex = ifindex(iface).ok_or_else(|| AttachError::NoInterface(iface.clone()))?;
    // npk attaches TC through TCX links only (pinnable, queryable, no qdisc to manage).
    let kernel = super::probe::kernel();
    if mode == AttachMode::Tc && !kernel.tcx {
        return Err(AttachError::NoTcx {
            release: kernel.release.clone(),
        });
    }
    ensure_bpffs()?;
    let dir = pin_dir(iface);
    let replaced_stale = match pin_state(iface)? {
        None => None,
        Some(PinState::Stale(stale)) => {
            let left = remove_pins(&dir)?;
            if !left.unknown.is_empty() {
                return Err(AttachError::ForeignFiles {
                    dir,
                    names: left.unknown.join(", "),
                });
            }
            Some(stale)
        }
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
        Some(PinState::Renamed { now, .. }) => {
            return Err(AttachError::Renamed {
                iface: iface.clone(),
                now,
            });
        }
        Some(PinState::Attached {
            pinned_link,
            running_owner,
            ..
        }) => {
            let (how, undo) = match running_owner.filter(|_| !pinned_link) {
                Some(pid) => (
                    format!("a foreground `npk attach`, pid {pid}"),
                    format!("stopping pid {pid}"),
                ),
                None => (
                    format!("pinned in {}", dir.display()),
                    format!("`npk detach --iface {iface}`"),
                ),
            };
            return Err(AttachError::AlreadyAttached {
                iface: iface.clone(),
                how,
                undo,
            });
        }
    };
    let kind = if mode == AttachMode::Tc {
        ProgramKind::Tc
    } else {
        ProgramKind::Xdp
    };
    let mut classifier = load(kind)?;
    classifier.push(model)?;
    classifier.set_config(config)?;
    let prog_id = classifier.program_info()?.id();

    create_pin_dir(iface, &dir)?;
    // From here on dropping the attachment removes what was made.
    let mut attachment = Attachment {
        classifier,
        iface: iface.clone(),
        replaced_stale,
        dir,
        ifindex,
        prog_id,
        persistent: false,
        _stats: None,
        _link: None,
    };
    // run_time_ns/run_cnt for `npk stats` from the first packet (two clock reads per run).
    let run_time_stats = run_time_stats();
    let link = attach_link(&mut attachment.classifier, iface, mode)?;
    attachment.pin_all()?;
    if persistent {
        let path = attachment.dir.join(LINK_PIN);
        link.pin(&path).map_err(|source| AttachError::Pin {
            what: "the link".into(),
            path,
            source,
        })?;
        attachment.persistent = true;
        // The pins outlive this process, and its BPF_ENABLE_STATS with it.
        BpfStats::on_for_pins();
    } else {
        attachment._link = Some(link);
        attachment._stats = run_time_stats;
    }
    Ok(attachment)
}

/// Creates `dir` with the `owner` link already in it: made as `<iface>:<pid>` (a name no
/// interface can have), then renamed into place unless `dir` exists. The directory is the
/// lock: whoever renames it into place attaches.
fn create_pin_dir(iface: &IfaceName, dir: &Path) -> Result<(), AttachError> {
    let root = pin_root();
    std::fs::create_dir_all(&root).map_err(io_error("creating", &root))?;
    let owner = Owner::current().ok_or_else(|| AttachError::Io {
        what: "reading the start time of this process from",
        path: "/proc/self/stat".into(),
        source: io::Error::from(ErrorKind::InvalidData),
    })?;
    let staging = root.join(format!("{iface}:{}", owner.pid));
    // Left by an earlier process with this pid that was killed right here.
    let _ = remove_pins(&staging);
    std::fs::create_dir(&staging).map_err(io_error("creating", &staging))?;
    let moved = owner
        .record(&staging)
        .map_err(io_error("recording the owner in", &staging))
        .and_then(|()| {
            let (from, to) = (c_path(&staging)?, c_path(dir)?);
            // SAFETY: renameat2 on two NUL-terminated paths.
            let renamed = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    from.as_ptr(),
                    libc::AT_FDCWD,
                    to.as_ptr(),
                    libc::RENAME_NOREPLACE,
                )
            };
            if renamed == 0 {
                return Ok(());
            }
            let source = io::Error::last_os_error();
            Err(match source.kind() {
                ErrorKind::AlreadyExists => AttachError::Attaching {
                    iface: iface.clone(),
                    pid: Owner::read(dir).map_or(0, |o| o.pid),
                },
                _ => AttachError::Io {
                    what: "moving the new pins into",
                    path: dir.to_path_buf(),
                    source,
                },
            })
        });
    if moved.is_err() {
        let _ = remove_pins(&staging);
    }
    moved
}

fn c_path(path: &Path) -> Result<std::ffi::CString, AttachError> {
    use std::os::unix::ffi::OsStrExt as _;
    std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|e| AttachError::Io {
        what: "a NUL byte in",
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Attaches the loaded program of `classifier` to `iface` through a bpf_link.
fn attach_link(
    classifier: &mut Classifier,
    iface: &IfaceName,
    mode: AttachMode,
) -> Result<FdLink, AttachError> {
    let name = classifier.program_name();
    let program_error = |what: String| move |source| AttachError::Program { what, source };
    let prog = classifier
        .ebpf
        .program_mut(name)
        .ok_or_else(|| KernelError::MissingProgram(name.into()))?;
    match mode {
        AttachMode::Native | AttachMode::Skb => {
            let xdp: &mut Xdp = prog
                .try_into()
                .map_err(program_error(format!("{name} is not XDP")))?;
            let flags = if mode == AttachMode::Native {
                XdpMode::Driver
            } else {
                XdpMode::Skb
            };
            let hint = if mode == AttachMode::Native {
                " (does its driver support native XDP? try --mode skb or --mode tc)"
            } else {
                ""
            };
            let id = xdp
                .attach(iface.as_str(), flags)
                .map_err(program_error(format!(
                    "attaching {mode} to {iface} failed{hint}"
                )))?;
            xdp.take_link(id)
                .map_err(program_error("taking the XDP link".into()))?
                .try_into()
                .map_err(|_| AttachError::NotBpfLink("XDP"))
        }
        AttachMode::Tc => {
            // TCX (kernel >= 6.6) runs before any qdisc and needs none: a clsact qdisc on the
            // interface, the user's or none, is neither required nor touched.
            let sc: &mut SchedClassifier = prog
                .try_into()
                .map_err(program_error(format!("{name} is not a TC classifier")))?;
            let id = sc
                .attach(iface.as_str(), TcAttachType::Ingress)
                .map_err(program_error(format!(
                    "attaching the TC classifier to {iface} failed"
                )))?;
            sc.take_link(id)
                .map_err(program_error("taking the TC link".into()))?
                .try_into()
                .map_err(|_| AttachError::NotBpfLink("TC"))
        }
    }
}

impl Attachment {
    fn pin_all(&mut self) -> Result<(), AttachError> {
        let dir = &self.dir;
        self.classifier.maps.pin(dir)?;
        for map in [MAP_FLOWS, MAP_SAMPLES] {
            let m = self
                .classifier
                .ebpf
                .map(map)
                .ok_or_else(|| KernelError::MissingMap(map.into()))?;
            let path = dir.join(map);
            m.pin(&path).map_err(|source| AttachError::Pin {
                what: map.into(),
                path,
                source,
            })?;
        }
        let name = self.classifier.program_name();
        let prog = self
            .classifier
            .ebpf
            .program_mut(name)
            .ok_or_else(|| KernelError::MissingProgram(name.into()))?;
        let path = dir.join(PROG_PIN);
        prog.pin(&path).map_err(|source| AttachError::Pin {
            what: "the program".into(),
            path,
            source,
        })
    }

    /// None while the kernel runs this attachment's program on its interface; otherwise why
    /// not (the interface was deleted, even if one of the same name came back; someone
    /// detached it).
    pub fn lost(&self) -> Result<Option<Stale>, AttachError> {
        if ifindex(&self.iface) != Some(self.ifindex) {
            return Ok(Some(Stale::InterfaceGone));
        }
        Ok(attached_mode(&self.iface, self.ifindex, self.prog_id)?
            .is_none()
            .then_some(Stale::NotAttached { owner: None }))
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if !self.persistent {
            // The link goes with `_link`; the pins go here. Nothing to report to at this point.
            let _ = remove_pins(&self.dir);
        }
    }
}

/// What [`remove_pins`] left in a directory it did not create.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Names in the directory that are not npk's (the directory stays).
    pub unknown: Vec<String>,
}

/// Removes npk's own pins from `dir` by their exact names, then the directory if that
/// emptied it. Anything else stays, and is returned.
pub fn remove_pins(dir: &Path) -> Result<Leftovers, AttachError> {
    for name in NPK_PINS {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(AttachError::Io {
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
                return Err(AttachError::Io {
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
fn open_pin_error(path: &Path, source: SyscallError) -> AttachError {
    let denied = matches!(
        source.io_error.raw_os_error(),
        Some(libc::EACCES | libc::EPERM)
    );
    match std::fs::symlink_metadata(path) {
        Ok(meta) if denied => AttachError::PinPermission {
            path: path.to_path_buf(),
            owner: meta.uid(),
            mode: meta.mode() & 0o7777,
            // SAFETY: geteuid cannot fail.
            uid: unsafe { libc::geteuid() },
        },
        _ => AttachError::OpenPin {
            path: path.to_path_buf(),
            source,
        },
    }
}

fn pinned_program(path: &Path) -> Result<ProgramInfo, AttachError> {
    ProgramInfo::from_pin(path).map_err(|e| match e {
        ProgramError::SyscallError(source) => open_pin_error(path, source),
        source => AttachError::Program {
            what: format!("reading {}", path.display()),
            source,
        },
    })
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

/// The interfaces of this network namespace that run XDP program `prog_id` (any mode), by name.
pub fn xdp_interfaces_running(prog_id: u32) -> Vec<IfaceName> {
    // SAFETY: if_nameindex returns an array ending with a zero entry, or null; freed below.
    let list = unsafe { libc::if_nameindex() };
    if list.is_null() {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut entry = list;
    // SAFETY: every entry up to the terminating one (index 0) is valid, with a C string name.
    unsafe {
        while (*entry).if_index != 0 {
            let index = (*entry).if_index;
            if xdp_program_ids(index).is_ok_and(|ids| ids.iter().any(|&(_, id)| id == prog_id))
                && let Some(name) = std::ffi::CStr::from_ptr((*entry).if_name)
                    .to_str()
                    .ok()
                    .and_then(|n| n.parse().ok())
            {
                found.push(name);
            }
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
    }
    found.sort_by(|a: &IfaceName, b| a.as_str().cmp(b.as_str()));
    found
}

/// The name of interface `index` in this network namespace.
fn ifname(index: u32) -> Option<IfaceName> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into `name`.
    let found = unsafe { libc::if_indextoname(index, name.as_mut_ptr()) };
    if found.is_null() {
        return None;
    }
    // SAFETY: on success `name` holds a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    name.to_str().ok()?.parse().ok()
}

/// The interface index on which the XDP or TCX link pinned at `path` holds its program: 0 when
/// its interface was deleted (the kernel detaches the link then) or the link is no XDP/TCX
/// link; None when no link is pinned there.
fn pinned_link_ifindex(path: &Path) -> io::Result<Option<u32>> {
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const BPF_LINK_TYPE_XDP: u32 = 6;
    const BPF_LINK_TYPE_TCX: u32 = 11;
    /// The head of `struct bpf_link_info`: its union starts at offset 16 (it holds u64s), and
    /// both the `xdp` and the `tcx` member begin with the interface index.
    #[repr(C)]
    #[derive(Default)]
    struct LinkInfoHead {
        kind: u32,
        id: u32,
        prog_id: u32,
        _pad: u32,
        ifindex: u32,
        attach_type: u32,
    }
    /// bpf_attr's `info` member.
    #[repr(C)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let link = match bpf_obj_get(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        link => link?,
    };
    let mut info = LinkInfoHead::default();
    let mut attr = InfoByFd {
        bpf_fd: link.as_raw_fd() as u32,
        info_len: size_of::<LinkInfoHead>() as u32,
        info: &mut info as *mut LinkInfoHead as u64,
    };
    // SAFETY: the kernel writes at most `info_len` bytes into `info`, which outlives the call.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    Ok(Some(
        if matches!(info.kind, BPF_LINK_TYPE_XDP | BPF_LINK_TYPE_TCX) {
            info.ifindex
        } else {
            0
        },
    ))
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

/// An attachment's pins held for one change: an exclusive `flock` on the pin directory, so
/// that pushes (and a detach) to one attachment run one after another (two at once both read
/// the same version and both write the same slot). The kernel releases the lock when its
/// holder dies: a killed push blocks nobody.
#[derive(Debug)]
pub struct PinLock {
    /// The locked directory; closing it releases the lock.
    dir: OwnedFd,
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

fn lock_dir(dir: &Path) -> Result<PinLock, AttachError> {
    let err = |source| AttachError::Lock {
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
pub fn pinned_classifier(dir: &Path) -> Result<(ProgramKind, Loops), AttachError> {
    let path = dir.join(PROG_PIN);
    let info = pinned_program(&path)?;
    let name = info.name_as_str().unwrap_or("?");
    ProgramKind::classifier_named(name).ok_or_else(|| AttachError::ForeignProgram {
        path,
        name: name.to_string(),
    })
}

/// What [`detach`] found and did.
#[derive(Debug)]
pub struct Detached {
    /// Set when the pins were stale (nothing was attached any more): why.
    pub stale: Option<Stale>,
    pub leftovers: Leftovers,
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
    let link = dir.join(LINK_PIN);
    if link.exists() {
        detach_pinned_link(&link)?;
    }
    let leftovers = remove_pins(&dir)?;
    restore_stats_without_pinned_links();
    Ok(Detached { stale, leftovers })
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
    std::fs::remove_file(path).map_err(io_error("removing", path))
}

/// BPF_OBJ_GET: a new fd of the object pinned at `path`, read-write.
fn bpf_obj_get(path: &Path) -> io::Result<OwnedFd> {
    const BPF_OBJ_GET: libc::c_long = 7;
    /// bpf_attr's `obj` member, up to `file_flags`.
    #[repr(C)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let name = CString::new(path.as_os_str().as_bytes())?;
    let mut attr = ObjGet {
        pathname: name.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    // SAFETY: BPF_OBJ_GET reads a path; `name` outlives the call.
    let fd = unsafe { bpf(BPF_OBJ_GET, &mut attr) }?;
    // SAFETY: the kernel just returned this fd, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// BPF_LINK_DETACH (Linux >= 5.9, as are XDP and TCX links): the program leaves its hook now;
/// the link object lives on, defunct, until its last reference goes. Needs no capability
/// beyond the fd (BPF_LINK_GET_FD_BY_ID would need CAP_SYS_ADMIN).
fn link_detach(link: &OwnedFd) -> io::Result<()> {
    const BPF_LINK_DETACH: libc::c_long = 34;
    // bpf_attr's `link_detach` member: the link's fd.
    let mut attr = [link.as_raw_fd() as u32];
    // SAFETY: BPF_LINK_DETACH only reads the fd.
    unsafe { bpf(BPF_LINK_DETACH, &mut attr) }.map(drop)
}

/// The bpf(2) system call `cmd` with `attr`, a prefix of its `union bpf_attr` member: the
/// result, or the error it set.
///
/// # Safety
/// `attr` must be laid out as the command's member, and every pointer in it valid for what the
/// command reads or writes through it.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller's contract; the size passed is `attr`'s own.
    let result = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(result)
}

/// Puts back kernel.bpf_stats_enabled once no `--pin` attachment is left (foreground
/// attachments pin their maps too, but only `--pin` ones leave a link).
fn restore_stats_without_pinned_links() {
    let pins_left = std::fs::read_dir(pin_root()).is_ok_and(|mut attached| {
        attached.any(|a| a.is_ok_and(|a| a.path().join(LINK_PIN).exists()))
    });
    if !pins_left {
        BpfStats::restore_after_pins();
    }
}

/// Removes the pins of a directory [`pin_dirs`] found stale (npk's names only).
pub fn remove_stale(dir: &Path) -> Result<Leftovers, AttachError> {
    let leftovers = remove_pins(dir)?;
    restore_stats_without_pinned_links();
    Ok(leftovers)
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

/// Where the kernel runs program `prog_id` on interface `ifindex`, if it does: XDP in a mode
/// (netlink) or TCX ingress (BPF_PROG_QUERY).
fn attached_mode(
    iface: &IfaceName,
    ifindex: u32,
    prog_id: u32,
) -> Result<Option<AttachMode>, AttachError> {
    let query_error = |source| AttachError::Query {
        iface: iface.clone(),
        source,
    };
    match xdp_program_ids(ifindex) {
        Ok(ids) => {
            if let Some(&(mode, _)) = ids.iter().find(|&&(_, id)| id == prog_id) {
                return Ok(Some(mode));
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
        Err(e) => return Err(query_error(e)),
    }
    Ok(tcx_ingress_program_ids(ifindex)
        .map_err(query_error)?
        .contains(&prog_id)
        .then_some(AttachMode::Tc))
}

/// The XDP programs attached to interface `ifindex` and their modes, from RTM_GETLINK's
/// IFLA_XDP (the kernel names each attached program by its mode's attribute; npk never
/// attaches in hardware offload mode, so such a program is not npk's).
fn xdp_program_ids(ifindex: u32) -> io::Result<Vec<(AttachMode, u32)>> {
    const IFLA_XDP: u16 = 43;
    const IFLA_XDP_DRV_PROG_ID: u16 = 5;
    const IFLA_XDP_SKB_PROG_ID: u16 = 6;
    #[repr(C)]
    struct Request {
        header: libc::nlmsghdr,
        info: libc::ifinfomsg,
    }
    // SAFETY: socket with constant arguments; the fd is owned from here on.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: both are plain C structs for which all-zero is valid.
    let mut request: Request = unsafe { std::mem::zeroed() };
    request.header.nlmsg_len = size_of::<Request>() as u32;
    request.header.nlmsg_type = libc::RTM_GETLINK;
    request.header.nlmsg_flags = libc::NLM_F_REQUEST as u16;
    request.header.nlmsg_seq = 1;
    request.info.ifi_family = libc::AF_UNSPEC as u8;
    request.info.ifi_index = ifindex as i32;
    // SAFETY: sends the bytes of `request`, which lives across the call.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            (&raw const request).cast(),
            size_of::<Request>(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: receives into `buf`, at most its length.
    let received = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    let reply = &buf[..received as usize];
    let u16_at = |b: &[u8], at: usize| b.get(at..at + 2).map(|v| u16::from_ne_bytes([v[0], v[1]]));
    let u32_at = |b: &[u8], at: usize| {
        b.get(at..at + 4)
            .map(|v| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
    };
    let malformed = || io::Error::new(ErrorKind::InvalidData, "malformed RTM_GETLINK reply");
    let len = u32_at(reply, 0).ok_or_else(malformed)? as usize;
    let kind = u16_at(reply, 4).ok_or_else(malformed)?;
    let message = reply.get(..len).ok_or_else(malformed)?;
    let header = size_of::<libc::nlmsghdr>();
    if kind == libc::NLMSG_ERROR as u16 {
        let code = u32_at(message, header).ok_or_else(malformed)? as i32;
        return Err(io::Error::from_raw_os_error(-code));
    }
    if kind != libc::RTM_NEWLINK {
        return Err(malformed());
    }
    let mut ids = Vec::new();
    let body = message
        .get(header + size_of::<libc::ifinfomsg>()..)
        .ok_or_else(malformed)?;
    for (_, xdp) in netlink_attributes(body).filter(|&(kind, _)| kind == IFLA_XDP) {
        for (kind, id) in netlink_attributes(xdp) {
            let mode = match kind {
                IFLA_XDP_DRV_PROG_ID => AttachMode::Native,
                IFLA_XDP_SKB_PROG_ID => AttachMode::Skb,
                _ => continue,
            };
            ids.extend(u32_at(id, 0).filter(|&id| id != 0).map(|id| (mode, id)));
        }
    }
    Ok(ids)
}

/// The (type, payload) attributes in `bytes`, each 4-byte aligned.
fn netlink_attributes(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    const NLA_TYPE_MASK: u16 = 0x3fff;
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|v| u16::from_ne_bytes([v[0], v[1]]))
    };
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = (u16_at(at)? as usize).max(4);
        let kind = u16_at(at + 2)? & NLA_TYPE_MASK;
        let payload = bytes.get(at + 4..at + len)?;
        at += len.next_multiple_of(4);
        Some((kind, payload))
    })
}

/// The TCX ingress programs of interface `ifindex` (BPF_PROG_QUERY, needs CAP_NET_ADMIN).
fn tcx_ingress_program_ids(ifindex: u32) -> io::Result<Vec<u32>> {
    const BPF_PROG_QUERY: libc::c_long = 16;
    const BPF_TCX_INGRESS: u32 = 46;
    /// bpf_attr's `query` member.
    #[repr(C)]
    struct ProgQuery {
        target_ifindex: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        count: u32,
        _pad: u32,
        prog_attach_flags: u64,
        link_ids: u64,
        link_attach_flags: u64,
        revision: u64,
    }
    // The kernel's limit on programs per TCX hook (BPF_MPROG_MAX).
    let mut ids = vec![0u32; 64];
    let mut query = ProgQuery {
        target_ifindex: ifindex,
        attach_type: BPF_TCX_INGRESS,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: ids.as_mut_ptr() as u64,
        count: ids.len() as u32,
        _pad: 0,
        prog_attach_flags: 0,
        link_ids: 0,
        link_attach_flags: 0,
        revision: 0,
    };
    // SAFETY: BPF_PROG_QUERY writes at most `count` ids into `ids`, which outlives the call.
    if let Err(e) = unsafe { bpf(BPF_PROG_QUERY, &mut query) } {
        // No TCX entry on the device yet, or no TCX in this kernel: nothing attached there.
        if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINVAL)) {
            return Ok(Vec::new());
        }
        return Err(e);
    }
    ids.truncate(query.count as usize);
    Ok(ids)
}

/// The kernel's accounting of the attached program (run count and time, when
/// kernel.bpf_stats_enabled is on).
pub fn program_info(iface: &IfaceName) -> Result<ProgramInfo, AttachError> {
    let dir = pin_dir(iface);
    let dir = match dir.exists() {
        true => dir,
        false => renamed_to(iface)?.unwrap_or(dir),
    };
    pinned_program_in(&dir)
}

/// The program pinned in the attachment directory `dir`.
pub fn pinned_program_in(dir: &Path) -> Result<ProgramInfo, AttachError> {
    pinned_program(&dir.join(PROG_PIN))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked_as_the_kernel_does() {
        for good in [
            "eth0",
            "a",
            "veth-x.100",
            "123456789012345",
            "nd1a2b3h",
            ".x",
        ] {
            assert_eq!(good.parse::<IfaceName>().unwrap().as_str(), good);
        }
        assert_eq!("".parse::<IfaceName>(), Err(IfaceNameError::Empty));
        for dots in [".", ".."] {
            assert_eq!(
                dots.parse::<IfaceName>(),
                Err(IfaceNameError::Dots(dots.into()))
            );
        }
        assert!(matches!(
            "1234567890123456".parse::<IfaceName>(),
            Err(IfaceNameError::TooLong { len: 16, .. })
        ));
        for (bad, found) in [
            ("a/b", '/'),
            ("../npk", '/'),
            ("a b", ' '),
            ("a\tb", '\t'),
            ("a\nb", '\n'),
            ("a\0b", '\0'),
            ("eth0:1", ':'),
        ] {
            assert!(
                matches!(bad.parse::<IfaceName>(), Err(IfaceNameError::Forbidden { found: f, .. }) if f == found),
                "{bad:?}"
            );
        }
    }

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
