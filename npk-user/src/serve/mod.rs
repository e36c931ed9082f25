//! Inference as a network service: the XDP server (`npk_serve`, answering in the kernel), the
//! userspace server it is measured against, the load generator, and the benchmark that runs
//! them side by side over a veth pair. The protocol is npk_common::wire.

pub mod bench;
pub mod client;
pub mod kernel;
pub mod livegen;
pub mod model;
pub mod strace;
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

/// What a server process says on stdout in `--json` mode: one `ready` line once it serves,
/// one `stopped` line with its counters when it exits.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServerEvent {
    pub event: String,
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
    pub fn from_counters(event: &str, c: &ServeCounters) -> Self {
        Self {
            event: event.to_string(),
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

/// User + system CPU time this process has used.
pub fn process_cpu_time() -> std::time::Duration {
    // SAFETY: getrusage fills the struct we pass.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
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

/// Pins the calling thread (and the threads it starts later) to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    pin_thread(0, cpu)
}

/// Gives thread `tid` a real-time priority (SCHED_FIFO, `priority` 1..=99): it runs as soon as
/// it wakes, ahead of every ordinary thread on its CPU, as softirq work would.
pub fn make_realtime(tid: i32, priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: sched_setscheduler with a valid sched_param.
    if unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Time CPU `cpu` has spent busy since boot (everything but idle and I/O wait), from
/// /proc/stat (clock-tick resolution: 10 ms at USER_HZ 100).
pub fn cpu_busy_time(cpu: usize) -> io::Result<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .ok_or_else(|| io::Error::other(format!("/proc/stat has no {name} line")))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| {
            t.parse()
                .map_err(|_| io::Error::other(format!("/proc/stat: bad {name} line")))
        })
        .collect::<io::Result<_>>()?;
    if ticks.len() < 5 {
        return Err(io::Error::other(format!("/proc/stat: short {name} line")));
    }
    // user nice system idle iowait irq softirq steal ...: all but idle and iowait (steal
    // too: time the hypervisor took is not the server's).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| !matches!(i, 3 | 4 | 7))
        .map(|(_, t)| t)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(std::time::Duration::from_nanos(busy * 1_000_000_000 / hz))
}

/// Pins thread `tid` (0: the calling one) to `cpu`.
pub fn pin_thread(tid: i32, cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit set; CPU_SET checks nothing but we bound cpu first.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * size_of::<libc::cpu_set_t>() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {cpu} is beyond the CPU set"),
            ));
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
