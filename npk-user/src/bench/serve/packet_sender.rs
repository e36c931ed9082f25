//! The load generator's second sender, for kernels that refuse BPF_PROG_TEST_RUN in XDP
//! live-frames mode (docs/serve-benchmark.md): the same request frames and the same pacing
//! ([`GenState`], trains of `npk_common::service::loadgen::TRAIN`), sent from userspace through an AF_PACKET socket bound
//! to the namespace's veth end, one `sendmmsg` per train, bypassing the qdisc. Replies are
//! still counted, timed and checked in the kernel by `npk_replies`: the stamp in each request
//! id is CLOCK_MONOTONIC, the clock `bpf_ktime_get_ns()` reads there. The measuring side
//! costs one system call per train (1/32 per request) and the veth transmit of each frame,
//! on the client's CPU only.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use npk_common::service::loadgen::{CASE_SHIFT, GenState, PAYLOAD_OFFSET, STAMP_MASK, TIME_SHIFT};

use crate::sys::monotonic_ns;

/// Frames per `sendmmsg`: a flat-out run sends this many at once, a paced one a train.
const BATCH: usize = 64;
/// Below this wait for the next train the sender yields the CPU instead of sleeping (a
/// sleep's wake-up is later than that on a VM).
const SPIN_BELOW: Duration = Duration::from_micros(200);

/// What one run sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sent {
    pub sent: u64,
    /// CLOCK_MONOTONIC of the first request (0: none), the run's throughput is timed from it.
    pub first_sent_ns: u64,
    /// Frames the socket refused (ENOBUFS from a full transmit path): not sent, so lost.
    pub refused: u64,
}

/// An AF_PACKET socket bound to one interface of the calling thread's namespace, sending
/// whole Ethernet frames past the qdisc.
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens it on `ifindex` (of the calling thread's namespace). Protocol 0: it receives
    /// nothing, so the replies are left to the XDP counter.
    pub fn open(ifindex: u32) -> io::Result<Self> {
        // SAFETY: socket(2) with constant arguments.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor socket(2) just returned, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is a plain C struct; zero is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: bind with a sockaddr_ll of the size passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with an int of the size passed.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// Sends `frames` with one `sendmmsg` (more if the kernel takes fewer at once); returns
    /// how many went out and how many the kernel refused with ENOBUFS.
    fn send(&self, frames: &mut [Vec<u8>]) -> io::Result<(u64, u64)> {
        let mut iovecs: Vec<libc::iovec> = frames
            .iter_mut()
            .map(|f| libc::iovec {
                iov_base: f.as_mut_ptr().cast(),
                iov_len: f.len(),
            })
            .collect();
        // SAFETY: mmsghdr is a plain C struct; zero is valid.
        let mut msgs: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iov| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let (mut sent, mut refused) = (0u64, 0u64);
        let mut at = 0;
        while at < msgs.len() {
            // SAFETY: msgs[at..] are valid mmsghdrs whose iovecs point into `frames`, alive
            // and unaliased for the call.
            let n = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs[at..].as_mut_ptr(),
                    (msgs.len() - at) as u32,
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // The frame at `at` was refused: skip it, as a full NIC ring would drop it.
                    Some(libc::ENOBUFS) => {
                        refused += 1;
                        at += 1;
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            sent += n as u64;
            at += n as usize;
        }
        Ok((sent, refused))
    }
}

/// Sends `requests` of the `cases` request frames (cycled) at `rate` requests/s (`None`:
/// flat out) through `socket`, each stamped as npk_loadgen stamps it: the case in the top
/// bits of the request id, the train's start time in the rest. Returns early, with what it
/// sent, when `stop` is set.
pub fn send_requests(
    socket: &PacketSocket,
    cases: &[Vec<u8>],
    requests: u64,
    rate: Option<f64>,
    stop: &AtomicBool,
) -> io::Result<Sent> {
    let mut state = GenState::new(requests, rate.map(|r| r.round() as u64));
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    let mut spare: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    let mut run = Sent::default();
    let mut next_case = 0usize;
    // Sleeps end within a microsecond of their time, not the default 50 us later.
    // SAFETY: prctl with an integer argument; it changes only this thread's slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64) };
    while state.remaining > 0 && !stop.load(Ordering::Relaxed) {
        while batch.len() < BATCH {
            let Some(stamp) = state.take(monotonic_ns) else {
                break;
            };
            let case = next_case % cases.len();
            next_case += 1;
            let mut frame = spare.pop().unwrap_or_default();
            frame.clear();
            frame.extend_from_slice(&cases[case]);
            let id = (case as u32) << CASE_SHIFT | stamp as u32 & STAMP_MASK;
            frame[PAYLOAD_OFFSET + 8..PAYLOAD_OFFSET + 12].copy_from_slice(&id.to_le_bytes());
            batch.push(frame);
        }
        if batch.is_empty() {
            wait_until((state.next_due >> TIME_SHIFT).saturating_sub(monotonic_ns()));
            continue;
        }
        let (sent, refused) = socket.send(&mut batch)?;
        run.sent += sent;
        run.refused += refused;
        spare.append(&mut batch);
    }
    run.first_sent_ns = state.first_sent_ns;
    Ok(run)
}

/// Waits up to `ns` for the next train: sleeps through most of a long wait (waking
/// SPIN_BELOW early: a sleep ends late on a VM), yields the CPU otherwise (to the reply
/// counter's NAPI thread on the same CPU, first of all).
fn wait_until(ns: u64) {
    let wait = Duration::from_nanos(ns);
    if wait > SPIN_BELOW {
        std::thread::sleep(wait - SPIN_BELOW);
    } else {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends 100 frames flat out through a socket on the loopback interface: every frame
    /// stamped with its case and a time, none refused. Needs CAP_NET_RAW, as the kernel tests
    /// need root.
    #[test]
    fn stamps_each_frame_with_its_case_and_a_monotonic_time() {
        let socket = PacketSocket::open(1).unwrap();
        let frame = vec![0u8; PAYLOAD_OFFSET + 16];
        let before = monotonic_ns();
        let run = send_requests(
            &socket,
            &[frame.clone(), frame],
            100,
            None,
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!((run.sent, run.refused), (100, 0));
        assert!(run.first_sent_ns >= before && run.first_sent_ns <= monotonic_ns());
    }
}
