//! Which CPU does what in a pinned run, and what the server's CPU spent: the generator and
//! the reply counter on the client's CPU, the server and its request processing on the
//! server's.

use std::time::Duration;

use super::{Result, ServeBenchError};
use crate::{netlab::NetLab, sys};

/// SCHED_FIFO priority of the lab's NAPI threads (see [`pin_napi_threads`]).
const NAPI_PRIORITY: i32 = 50;

/// Which CPU does what (see [`NetLab::steer_receive`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    pub client: usize,
    pub server: usize,
}

/// Moves NAPI polling into threads and pins the host end's (the server side) to the
/// server's CPU and the namespace end's (the reply counter) to the client's, where the
/// generator spins. All get a real-time priority: the priority softirq work has over
/// processes when NAPI is not threaded (the Linux default), so the stack's receive path runs
/// ahead of a userspace server as it would on a NIC's interrupt; an ordinary priority would
/// also let the spinning generator delay the counter by a time slice (milliseconds, where a
/// veth ring holds 256 frames). veth makes its NAPI instances on XDP attach, so this runs
/// once the server is up.
pub(super) fn pin_napi_threads(lab: &NetLab, pin: Pin) -> Result<()> {
    lab.thread_napi()?;
    let (host, ns) = lab.napi_threads()?;
    for (threads, iface, cpu) in [
        (host, &lab.host_if, pin.server),
        (ns, &lab.ns_if, pin.client),
    ] {
        if threads.is_empty() {
            return Err(ServeBenchError::NoNapiThread {
                iface: iface.clone(),
            });
        }
        for tid in threads {
            sys::pin_thread(tid, cpu).map_err(|source| ServeBenchError::PinNapiThread {
                tid,
                iface: iface.clone(),
                cpu,
                source,
            })?;
            sys::make_realtime(tid, NAPI_PRIORITY).map_err(|source| {
                ServeBenchError::RealtimeNapiThread {
                    tid,
                    iface: iface.clone(),
                    source,
                }
            })?;
        }
    }
    Ok(())
}

/// Runs `work` and returns its result with the server CPU's busy time per reply (`None`
/// unpinned, or without replies). `replies` counts the work's replies.
pub(super) fn server_cpu_per_reply<T>(
    pin: Option<Pin>,
    work: impl FnOnce() -> Result<T>,
    replies: impl Fn(&T) -> u64,
) -> Result<(T, Option<f64>)> {
    let busy = || -> Result<Option<Duration>> {
        pin.map(|p| sys::cpu_busy_time(p.server))
            .transpose()
            .map_err(ServeBenchError::ProcStat)
    };
    let before = busy()?;
    let result = work()?;
    let after = busy()?;
    let n = replies(&result);
    let per_reply = before
        .zip(after)
        .filter(|_| n > 0)
        .map(|(b, a)| (a.saturating_sub(b)).as_nanos() as f64 / n as f64);
    Ok((result, per_reply))
}
