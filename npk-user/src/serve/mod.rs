//! Inference as a network service: the XDP server (`npk_serve`, answering in the kernel), the
//! userspace server it is measured against, and the client. The protocol is npk_common::service::wire;
//! the benchmark that runs them side by side is crate::bench::serve.

pub mod client;
pub mod kernel;
pub mod model;
pub mod user;

use std::{
    io,
    net::{IpAddr, UdpSocket},
    os::fd::AsRawFd,
};

use npk_common::{
    service::peer::{IfAddr, PeerRefusal, check_peer},
    service::wire::{ServeCounters, Status, WireError},
};
use serde::{Deserialize, Serialize};

/// Socket buffers big enough for every window in flight.
const SOCKET_BUFFER: i32 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("batch of {0}: must be 1..=1024")]
    Batch(usize),
    #[error("wire format: {0}")]
    Wire(WireError),
    #[error("client: {0}")]
    Client(String),
}

impl ServeError {
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// How an XDP program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum XdpAttach {
    /// Generic XDP (after the socket buffer is built): works on every interface.
    #[default]
    Skb,
    /// Driver XDP; on a veth, replies need an XDP program on the peer (see --peer).
    Native,
}

impl XdpAttach {
    pub fn name(self) -> &'static str {
        match self {
            Self::Skb => "skb",
            Self::Native => "native",
        }
    }

    pub fn mode(self) -> aya::programs::XdpMode {
        match self {
            Self::Skb => aya::programs::XdpMode::Skb,
            Self::Native => aya::programs::XdpMode::Driver,
        }
    }
}

/// What a [`ServerEvent`] line says (`"ready"`, `"stopped"` in the JSON).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerEventKind {
    /// The server serves.
    #[default]
    Ready,
    /// The server exits; the counters are final.
    Stopped,
}

/// What a server process says on stdout in `--json` mode: one `ready` line once it serves,
/// one `stopped` line with its counters when it exits.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServerEvent {
    pub event: ServerEventKind,
    pub pid: u32,
    /// Requests the server saw (kernel: counted by the XDP program).
    pub requests: u64,
    /// Replies by status name.
    pub replies: std::collections::BTreeMap<String, u64>,
    pub tx_errors: u64,
    /// Datagrams from or to an address the server does not answer (npk_common::service::peer).
    #[serde(default)]
    pub refused_address: u64,
    /// Requests shorter than their reply would be, unanswered.
    #[serde(default)]
    pub refused_amplifying: u64,
    /// Server CPU time per request: the XDP program's run time (kernel accounting), or the
    /// userspace server process's user + system time. Packet processing on the way to the
    /// server (the stack, for the userspace server) is not in either.
    #[serde(default)]
    pub cpu_ns_per_request: Option<f64>,
}

impl ServerEvent {
    pub fn from_counters(event: ServerEventKind, c: &ServeCounters) -> Self {
        Self {
            event,
            pid: std::process::id(),
            requests: c.requests,
            replies: Status::ALL
                .iter()
                .map(|s| (s.name().to_string(), c.replies[*s as usize]))
                .filter(|(_, n)| *n > 0)
                .collect(),
            tx_errors: c.tx_errors,
            refused_address: c.refused_address,
            refused_amplifying: c.refused_amplifying,
            cpu_ns_per_request: None,
        }
    }
}

/// Asks for big socket buffers (forced past rmem_max/wmem_max when root); a smaller buffer
/// only means earlier drops, which the report shows as lost requests.
pub fn grow_buffers(s: &UdpSocket) {
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        let size = SOCKET_BUFFER;
        let set = |opt| {
            // SAFETY: setsockopt with a valid fd and an int option value.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&raw const size).cast(),
                    size_of::<i32>() as u32,
                )
            }
        };
        if set(force) != 0 {
            set(plain);
        }
    }
}

/// The IPv4 and IPv6 addresses of `iface` (every interface's with `None`), with their prefix
/// lengths, link-local ones included.
pub fn interface_addrs(iface: Option<&str>) -> io::Result<Vec<IfAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut addrs = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: entries of the list getifaddrs returned, alive until freeifaddrs.
        let e = unsafe { &*entry };
        entry = e.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string.
        let name = unsafe { std::ffi::CStr::from_ptr(e.ifa_name) };
        if e.ifa_addr.is_null() || iface.is_some_and(|i| name.to_bytes() != i.as_bytes()) {
            continue;
        }
        // SAFETY: ifa_addr and ifa_netmask (when set) point at sockaddrs of the family
        // ifa_addr names.
        match i32::from(unsafe { (*e.ifa_addr).sa_family }) {
            libc::AF_INET => {
                let sin = unsafe { &*e.ifa_addr.cast::<libc::sockaddr_in>() };
                let prefix = match e.ifa_netmask.is_null() {
                    true => 32,
                    false => unsafe { &*e.ifa_netmask.cast::<libc::sockaddr_in>() }
                        .sin_addr
                        .s_addr
                        .count_ones(),
                };
                addrs.push(IfAddr::v4(sin.sin_addr.s_addr.to_ne_bytes(), prefix as u8));
            }
            libc::AF_INET6 => {
                let sin6 = unsafe { &*e.ifa_addr.cast::<libc::sockaddr_in6>() };
                let prefix = match e.ifa_netmask.is_null() {
                    true => 128,
                    false => unsafe { &*e.ifa_netmask.cast::<libc::sockaddr_in6>() }
                        .sin6_addr
                        .s6_addr
                        .iter()
                        .map(|b| b.count_ones())
                        .sum(),
                };
                addrs.push(IfAddr::v6(sin6.sin6_addr.s6_addr, prefix as u8));
            }
            _ => {}
        }
    }
    // SAFETY: the list getifaddrs returned, not used after this.
    unsafe { libc::freeifaddrs(list) };
    Ok(addrs)
}

/// npk_common::service::peer's rule for a datagram a socket received from `src` for `dst` (IPv4-mapped
/// IPv6 addresses read as IPv4).
pub fn check_datagram(src: IpAddr, dst: IpAddr, local: &[IfAddr]) -> Result<(), PeerRefusal> {
    let bytes = |ip: IpAddr| match ip.to_canonical() {
        IpAddr::V4(a) => {
            let mut b = [0; 16];
            b[..4].copy_from_slice(&a.octets());
            (false, b)
        }
        IpAddr::V6(a) => (true, a.octets()),
    };
    let ((v6, s), (dst_v6, d)) = (bytes(src), bytes(dst));
    if v6 != dst_v6 {
        return Err(PeerRefusal::Destination);
    }
    check_peer(v6, &s, &d, local)
}
