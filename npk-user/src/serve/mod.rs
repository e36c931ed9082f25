//! Inference as a network service: the XDP server (`npk_serve`, answering in the kernel), the
//! userspace server it is measured against, and the client. The protocol is npk_common::wire;
//! the benchmark that runs them side by side is crate::bench::serve.

pub mod client;
pub mod kernel;
pub mod model;
pub mod user;

use std::{io, net::UdpSocket, os::fd::AsRawFd};

use npk_common::wire::{ServeCounters, Status, WireError};
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
