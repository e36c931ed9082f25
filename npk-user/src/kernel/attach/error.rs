//! What can stop an attach, a detach or a lookup of an attachment, each with what to do.

use std::path::PathBuf;

use aya::{
    pin::PinError,
    programs::{ProgramError, links::LinkError},
};

use super::{AttachMode, IfaceName, PinsError, QueryError, Stale};
use crate::kernel::{KernelError, ProgramKind};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no network interface named `{0}` (see `ip link`)")]
    NoInterface(IfaceName),
    #[error("npk was detached from {iface} while this command waited for its turn")]
    DetachedMeanwhile { iface: IfaceName },
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
        "removed npk's stale pins from {}, but it also holds files npk did not create ({names}): \
         move them away and attach again",
        dir.display()
    )]
    ForeignFiles { dir: PathBuf, names: String },
    #[error("pinning {what} at {}: {source}", path.display())]
    Pin {
        what: String,
        path: PathBuf,
        #[source]
        source: PinError,
    },
    #[error("opening the link pin {}: {source}", path.display())]
    Link {
        path: PathBuf,
        #[source]
        source: LinkError,
    },
    #[error(
        "this kernel ({release}) has no TCX links: TC needs TCX (Linux >= 6.6); use --mode skb/native"
    )]
    NoTcx { release: String },
    #[error(
        "the model reads the replies this machine sends (packet features v6), which npk counts \
         with a TCX egress program: this kernel ({release}) has no TCX (Linux >= 6.6). Train \
         one on the ingress features alone (`npk train --ingress-only`, packet features v5)"
    )]
    NoReplies { release: String },
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
    #[error("{what}: {source}")]
    Program {
        what: String,
        #[source]
        source: ProgramError,
    },
    #[error(transparent)]
    Pins(#[from] PinsError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}
