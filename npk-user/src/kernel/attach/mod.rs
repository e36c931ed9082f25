//! Attaching the classifier to an interface, pinning it in bpffs so later commands (`npk push`,
//! `npk stats`, `npk detach`) find it, and detaching it.
//!
//! Layout: `/sys/fs/bpf/npk/<iface>/` holds the control maps (by map name), `prog`, `owner` (a
//! symlink to `<pid>:<start time>` of the `npk attach` that made it) and, for `--pin`, `link`
//! and (where the reply counter runs at TC egress) `egress_link`. The link pins keep the
//! programs attached after npk exits; removing them detaches. npk removes only these names,
//! never a directory tree.
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
//!
//! One job per file: [`iface`] checks interface names; [`pins`] lays out and removes the pin
//! directory and locks it; [`state`] decides from the kernel whether pins are live;
//! [`query`] holds the raw netlink and bpf(2) calls that ask the kernel; this file attaches,
//! [`detach`] detaches.

mod detach;
mod error;
mod iface;
mod pins;
mod query;
mod state;

use std::{
    fmt,
    io::{self, ErrorKind},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use aya::programs::{SchedClassifier, TcAttachType, Xdp, XdpMode, links::FdLink};
use npk_common::{
    maps::{Config, MAP_FLOWS, MAP_SAMPLES, PROG_EGRESS},
    model::{FeatureSchema, Model},
};

pub use detach::{Detached, StatsKeptOn, detach, remove_stale};
pub use error::AttachError;
pub use iface::{IFACE_NAME_MAX, IfaceName, IfaceNameError};
pub use pins::{
    BPFFS, Leftovers, PinLock, PinsError, pin_dir, pin_root, pinned_classifier, pinned_program_in,
    remove_pins,
};
pub use query::{QueryError, xdp_interfaces_running};
pub use state::{
    PinDir, PinState, Stale, live_pins, lock_live_pins, pin_dirs, pin_state, program_info,
    renamed_to,
};

use super::{BpfStats, Classifier, KernelError, ProgramKind, run_time_stats};
use iface::ifindex;
use pins::{EGRESS_LINK_PIN, LINK_PIN, Owner, PROG_PIN, c_path, ensure_bpffs, io_error};
use query::attached_mode;

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

/// A classifier attached to an interface. Dropping it detaches unless it was made persistent.
pub struct Attachment {
    pub classifier: Classifier,
    pub iface: IfaceName,
    /// Why the pins an earlier attach left on the interface were removed first, if there were.
    pub replaced_stale: Option<Stale>,
    /// Whether the reply counter runs at TC egress (kernels with TCX): else the reply features
    /// read as if nothing were ever answered, and only v5 models may attach.
    pub replies: bool,
    dir: PathBuf,
    ifindex: u32,
    prog_id: u32,
    persistent: bool,
    /// Keeps the kernel's run-time accounting on while a foreground attachment lives.
    _stats: Option<OwnedFd>,
    _link: Option<FdLink>,
    _egress_link: Option<FdLink>,
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
    let needs_replies = FeatureSchema::from_u32(model.header.feature_schema)
        .is_some_and(FeatureSchema::needs_replies);
    if needs_replies && !kernel.tcx {
        return Err(AttachError::NoReplies {
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
        replies: kernel.tcx,
        dir,
        ifindex,
        prog_id,
        persistent: false,
        _stats: None,
        _link: None,
        _egress_link: None,
    };
    // run_time_ns/run_cnt for `npk stats` from the first packet (two clock reads per run).
    let run_time_stats = run_time_stats();
    // The reply counter first: the classifier's first packet then already hears the replies.
    let egress = match kernel.tcx {
        true => Some(attach_egress(&mut attachment.classifier, iface)?),
        false => None,
    };
    let link = attach_link(&mut attachment.classifier, iface, mode)?;
    attachment.pin_all()?;
    if persistent {
        let pin = |link: FdLink, name: &str, what: &str| {
            let path = attachment.dir.join(name);
            link.pin(&path).map_err(|source| AttachError::Pin {
                what: what.into(),
                path,
                source,
            })
        };
        if let Some(egress) = egress {
            pin(egress, EGRESS_LINK_PIN, "the egress link")?;
        }
        pin(link, LINK_PIN, "the link")?;
        attachment.persistent = true;
        // The pins outlive this process, and its BPF_ENABLE_STATS with it.
        BpfStats::on_for_pins();
    } else {
        attachment._link = Some(link);
        attachment._egress_link = egress;
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
    let owner = Owner::current().ok_or_else(|| PinsError::Io {
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
        .map_err(|e| AttachError::from(io_error("recording the owner in", &staging)(e)))
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
                _ => PinsError::Io {
                    what: "moving the new pins into",
                    path: dir.to_path_buf(),
                    source,
                }
                .into(),
            })
        });
    if moved.is_err() {
        let _ = remove_pins(&staging);
    }
    moved
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
        AttachMode::Tc => attach_tcx(
            classifier,
            name,
            iface,
            TcAttachType::Ingress,
            &format!("attaching the TC classifier to {iface} failed"),
            "TC",
        ),
    }
}

/// Attaches the reply counter at TC egress of `iface` through a TCX link.
fn attach_egress(classifier: &mut Classifier, iface: &IfaceName) -> Result<FdLink, AttachError> {
    attach_tcx(
        classifier,
        PROG_EGRESS,
        iface,
        TcAttachType::Egress,
        &format!("attaching the reply counter to {iface}'s egress failed"),
        "TC egress",
    )
}

/// Attaches the TC program `name` of `classifier` at `direction` of `iface` through a TCX link
/// (kernel >= 6.6): it runs before any qdisc and needs none, so a clsact qdisc on the
/// interface, the user's or none, is neither required nor touched. `failed` words an attach
/// error, `link` names the link in the others.
fn attach_tcx(
    classifier: &mut Classifier,
    name: &str,
    iface: &IfaceName,
    direction: TcAttachType,
    failed: &str,
    link: &'static str,
) -> Result<FdLink, AttachError> {
    let program_error = |what: String| move |source| AttachError::Program { what, source };
    let sc: &mut SchedClassifier = classifier
        .ebpf
        .program_mut(name)
        .ok_or_else(|| KernelError::MissingProgram(name.into()))?
        .try_into()
        .map_err(program_error(format!("{name} is not a TC classifier")))?;
    let id = sc
        .attach(iface.as_str(), direction)
        .map_err(program_error(failed.to_string()))?;
    sc.take_link(id)
        .map_err(program_error(format!("taking the {link} link")))?
        .try_into()
        .map_err(|_| AttachError::NotBpfLink(link))
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
        let gone = || ifindex(&self.iface) != Some(self.ifindex);
        if gone() {
            return Ok(Some(Stale::InterfaceGone));
        }
        if attached_mode(&self.iface, self.ifindex, self.prog_id)?.is_some() {
            return Ok(None);
        }
        // The interface may have gone between the name lookup and the query by index (which
        // then finds nothing attached): ask again before calling it detached.
        Ok(Some(if gone() {
            Stale::InterfaceGone
        } else {
            Stale::NotAttached { owner: None }
        }))
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
