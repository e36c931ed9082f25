//! What the kernel runs where, asked directly: the raw netlink (RTM_GETLINK) and bpf(2)
//! (BPF_OBJ_GET, BPF_OBJ_GET_INFO_BY_FD, BPF_PROG_QUERY, BPF_LINK_DETACH,
//! BPF_LINK_GET_FD_BY_ID) calls in one place, as aya keeps its own in `sys/`, and the host's
//! lists of programs and links. CAP_NET_ADMIN suffices for all but the last two
//! ([`unheld_classifier_links`]: CAP_SYS_ADMIN).

use std::{
    collections::HashSet,
    ffi::CString,
    io::{self, ErrorKind},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use super::{AttachMode, iface::IfaceName};
use crate::kernel::ProgramKind;

/// The kernel did not say what runs on an interface.
#[derive(Debug, thiserror::Error)]
#[error("asking the kernel what runs on {iface}: {source}")]
pub struct QueryError {
    pub iface: IfaceName,
    #[source]
    pub source: io::Error,
}

/// The interface index on which the XDP or TCX link pinned at `path` holds its program: 0 when
/// its interface was deleted (the kernel detaches the link then) or the link is no XDP/TCX
/// link; None when no link is pinned there.
pub(super) fn pinned_link_ifindex(path: &Path) -> io::Result<Option<u32>> {
    let link = match bpf_obj_get(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        link => link?,
    };
    link_ifindex(&link).map(Some)
}

/// The interface index on which XDP or TCX link `link` holds its program: 0 once it is
/// detached (BPF_LINK_DETACH, its interface deleted) or for another kind of link.
fn link_ifindex(link: &OwnedFd) -> io::Result<u32> {
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
    let mut info = LinkInfoHead::default();
    let mut attr = InfoByFd {
        bpf_fd: link.as_raw_fd() as u32,
        info_len: size_of::<LinkInfoHead>() as u32,
        info: &mut info as *mut LinkInfoHead as u64,
    };
    // SAFETY: the kernel writes at most `info_len` bytes into `info`, which outlives the call.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    Ok(
        if matches!(info.kind, BPF_LINK_TYPE_XDP | BPF_LINK_TYPE_TCX) {
            info.ifindex
        } else {
            0
        },
    )
}

/// Whether link `id` still holds its program on an interface. A detached link outlives its
/// detach until its last reference goes (a removed pin's: after an RCU grace period), and
/// the kernel's list of links shows it until then. False for a link already gone.
/// BPF_LINK_GET_FD_BY_ID needs CAP_SYS_ADMIN.
fn link_attached(id: u32) -> bool {
    const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
    // bpf_attr's id member: link_id, next_id, open_flags.
    let mut attr = [id, 0, 0];
    // SAFETY: BPF_LINK_GET_FD_BY_ID only reads the id and flags.
    let Ok(fd) = (unsafe { bpf(BPF_LINK_GET_FD_BY_ID, &mut attr) }) else {
        return false;
    };
    // SAFETY: the kernel just returned this fd, owned by nobody else.
    let link = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    link_ifindex(&link).is_ok_and(|ifindex| ifindex != 0)
}

/// BPF_OBJ_GET: a new fd of the object pinned at `path`, read-write.
pub(super) fn bpf_obj_get(path: &Path) -> io::Result<OwnedFd> {
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

/// The attached links of npk classifiers that no process of this pid namespace holds open (one
/// held in another pid namespace counts as unheld). Detached links are not counted: the one just detached here lingers in the kernel's list
/// for a while after its pin is removed (seen on 5.10).
pub(super) fn unheld_classifier_links() -> Vec<u32> {
    // Errors are objects that went away while listed.
    let classifiers: HashSet<u32> = aya::programs::loaded_programs()
        .flatten()
        .filter(|p| {
            p.name_as_str()
                .is_some_and(|n| ProgramKind::classifier_named(n).is_some())
        })
        .map(|p| p.id())
        .collect();
    let links: Vec<u32> = aya::programs::loaded_links()
        .flatten()
        .filter(|l| classifiers.contains(&l.program_id()))
        .map(|l| l.id())
        .filter(|&id| link_attached(id))
        .collect();
    if links.is_empty() {
        return links;
    }
    let held = held_link_ids();
    links.into_iter().filter(|id| !held.contains(id)).collect()
}

/// The ids of the BPF links the processes of this pid namespace hold open (the `link_id` of
/// their bpf_link descriptors' fdinfo).
fn held_link_ids() -> HashSet<u32> {
    let mut held = HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return held;
    };
    for proc in procs.flatten() {
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else {
            continue; // not a process, or gone
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:bpf_link")
                && let Ok(info) =
                    std::fs::read_to_string(proc.path().join("fdinfo").join(fd.file_name()))
            {
                held.extend(
                    info.lines()
                        .filter_map(|l| l.strip_prefix("link_id:"))
                        .filter_map(|id| id.trim().parse::<u32>().ok()),
                );
            }
        }
    }
    held
}

/// BPF_LINK_DETACH (Linux >= 5.9, as are XDP and TCX links): the program leaves its hook now;
/// the link object lives on, defunct, until its last reference goes. Needs no capability
/// beyond the fd (BPF_LINK_GET_FD_BY_ID would need CAP_SYS_ADMIN).
pub(super) fn link_detach(link: &OwnedFd) -> io::Result<()> {
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

/// Where the kernel runs program `prog_id` on interface `ifindex`, if it does: XDP in a mode
/// (netlink) or TCX ingress (BPF_PROG_QUERY).
pub(super) fn attached_mode(
    iface: &IfaceName,
    ifindex: u32,
    prog_id: u32,
) -> Result<Option<AttachMode>, QueryError> {
    let query_error = |source| QueryError {
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
