//! The load generator behind `npk client` and `npk bench serve`: keeps a window of requests in
//! flight per socket, at a fixed rate or flat out, and checks every reply byte for byte against
//! the userspace reference (`respond` on the same request with the same model).
//!
//! Requests come from a pool of pre-encoded feature vectors whose expected replies are
//! computed once up front, so checking a reply costs a comparison, not an inference: the
//! client stays cheap next to the servers it measures on a small machine.

use std::{
    io,
    mem::MaybeUninit,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use npk_common::{
    infer::{PlainLoop, Scratch},
    model::Model,
    service::wire::{
        ANY_MODEL, MAX_REPLY_LEN, MAX_REQUEST_LEN, REQUEST_HEADER_LEN, Status, decode_reply,
        encode_request, ok_reply_len, respond, set_request_id,
    },
};
use serde::Serialize;

use super::{ServeError, model::random_features};
use crate::rng::Rng;

/// Datagrams per sendmmsg/recvmmsg call.
const BATCH: usize = 32;
/// Mismatches described in the report.
const KEEP_PROBLEMS: usize = 5;

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub target: SocketAddr,
    /// Stop sending after this many requests (over all sockets).
    pub requests: Option<u64>,
    /// Stop sending after this long.
    pub duration: Option<Duration>,
    /// Requests per second over all sockets; `None`: as fast as replies come back.
    pub rate: Option<f64>,
    /// Requests in flight per socket.
    pub window: usize,
    /// Distinct requests (their replies are computed up front).
    pub pool: usize,
    /// Every this many requests, one is deliberately bad (0: none), cycling through the
    /// error statuses.
    pub bad_every: usize,
    /// A reply later than this counts as lost.
    pub timeout: Duration,
    pub model_id: u32,
    pub seed: u64,
    /// Pin every client thread to this CPU.
    pub cpu: Option<usize>,
}

impl ClientConfig {
    pub fn new(target: SocketAddr) -> Self {
        Self {
            target,
            requests: None,
            duration: None,
            rate: None,
            window: 64,
            pool: 4096,
            bad_every: 0,
            timeout: Duration::from_secs(1),
            model_id: ANY_MODEL,
            seed: 1,
            cpu: None,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ClientReport {
    pub sent: u64,
    pub replies: u64,
    /// Replies with status OK.
    pub ok: u64,
    /// Replies that differ from the reference in any byte (the model version aside).
    pub mismatches: u64,
    /// Requests without a reply within the timeout.
    pub lost: u64,
    /// Replies to no request in flight (late, duplicated or unreadable).
    pub unexpected: u64,
    pub seconds: f64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// CPU time (user + system) of this process per reply. With the kernel server on the
    /// same machine this includes the XDP program: it runs in the softirq of the client's
    /// send.
    pub cpu_ns_per_request: f64,
    #[serde(skip)]
    pub problems: Vec<String>,
}

/// One pre-encoded request and the reply it must get.
struct Case {
    request: Vec<u8>,
    reply: Vec<u8>,
}

/// Bad request `kind` (0..4) built from a good one, answered with an error status. (No
/// SHORT_PACKET: a request shorter than the header is shorter than any reply, and refused.)
fn corrupt(good: &[u8], kind: usize) -> Vec<u8> {
    let mut r = good.to_vec();
    match kind {
        0 => r[0] ^= 0xff,                                             // BAD_MAGIC
        1 => r[4] = 99,                                                // BAD_VERSION
        2 => r.truncate(r.len() - 4),                                  // WRONG_FEATURE_COUNT
        _ => r[12..16].copy_from_slice(&0xdead_beefu32.to_le_bytes()), // MODEL_MISMATCH
    }
    r
}

/// Builds the request pool and the replies `model` gives them.
fn build_cases(model: &Model, config: &ClientConfig) -> Result<Vec<Case>, ServeError> {
    let mut rng = Rng::new(config.seed);
    let mut scratch = Scratch::new();
    let mut buf = [0u8; MAX_REQUEST_LEN];
    let mut reply = [0u8; MAX_REPLY_LEN];
    (0..config.pool.max(1))
        .map(|i| {
            let features = random_features(&mut rng, model);
            let reply_len = ok_reply_len(model.header.num_classes as usize);
            let n = encode_request(&mut buf, 0, config.model_id, &features, reply_len)
                .map_err(ServeError::Wire)?;
            let request = match config.bad_every {
                b if b > 0 && i % b == b - 1 => corrupt(&buf[..n], (i / b) % 4),
                _ => buf[..n].to_vec(),
            };
            // Padded to the OK reply, every case is answered (error replies are shorter).
            let len = respond(
                &request,
                Some(model),
                &mut scratch,
                &mut PlainLoop,
                &mut reply,
            )
            .ok_or_else(|| ServeError::Client("a request shorter than its reply".into()))?;
            Ok(Case {
                request,
                reply: reply[..len].to_vec(),
            })
        })
        .collect()
}

/// `count` UDP sockets connected to `target`, with big buffers. Call inside the client's
/// network namespace.
pub fn connect_sockets(target: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    (0..count)
        .map(|_| {
            let any: SocketAddr = if target.is_ipv4() {
                "0.0.0.0:0".parse().expect("literal")
            } else {
                "[::]:0".parse().expect("literal")
            };
            let s = UdpSocket::bind(any)?;
            s.connect(target)?;
            super::grow_buffers(&s);
            Ok(s)
        })
        .collect()
}

/// Sends the load over `sockets` (one thread each) and checks every reply against `model`.
pub fn run(
    config: &ClientConfig,
    model: &Model,
    sockets: Vec<UdpSocket>,
    stop: &AtomicBool,
) -> Result<ClientReport, ServeError> {
    if sockets.is_empty() || config.window == 0 {
        return Err(ServeError::Client(
            "at least one socket and a window of 1".into(),
        ));
    }
    if config.requests.is_none() && config.duration.is_none() {
        return Err(ServeError::Client(
            "unbounded load: give a request count or a duration".into(),
        ));
    }
    let cases = build_cases(model, config)?;
    let threads = sockets.len() as u64;
    let cpu_start = crate::sys::process_cpu_time();
    let start = Instant::now();
    let results: Vec<Result<Worker, ServeError>> = std::thread::scope(|s| {
        let handles: Vec<_> = sockets
            .into_iter()
            .enumerate()
            .map(|(i, socket)| {
                let i = i as u64;
                // Requests and rate split evenly; the first threads take the remainder.
                let quota = config
                    .requests
                    .map(|n| n / threads + u64::from(i < n % threads));
                let rate = config.rate.map(|r| r / threads as f64);
                let cases = &cases;
                s.spawn(move || {
                    if let Some(cpu) = config.cpu {
                        crate::sys::pin_to_cpu(cpu)
                            .map_err(|e| ServeError::io(format!("pinning to CPU {cpu}"), e))?;
                    }
                    let mut w = Worker::new(config, cases, quota, rate, start);
                    w.run(&socket, stop).map(|()| w)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(ServeError::Client("a client thread panicked".into())))
            })
            .collect()
    });
    let mut report = ClientReport::default();
    let mut latencies = Vec::new();
    let mut last_reply = start;
    for w in results {
        let w = w?;
        report.sent += w.sent;
        report.replies += w.replies;
        report.ok += w.ok;
        report.mismatches += w.mismatches;
        report.lost += w.lost;
        report.unexpected += w.unexpected;
        report.problems.extend(w.problems);
        latencies.extend(w.latencies_ns);
        last_reply = last_reply.max(w.last_reply);
    }
    report.problems.truncate(KEEP_PROBLEMS);
    report.seconds = (last_reply - start).as_secs_f64();
    report.rps = if report.seconds > 0.0 {
        report.replies as f64 / report.seconds
    } else {
        0.0
    };
    if report.replies > 0 {
        let cpu = crate::sys::process_cpu_time() - cpu_start;
        report.cpu_ns_per_request = cpu.as_nanos() as f64 / report.replies as f64;
    }
    report.p50_us = percentile_us(&mut latencies, 0.50);
    report.p99_us = percentile_us(&mut latencies, 0.99);
    Ok(report)
}

/// The `q` quantile of `ns` in microseconds (0 when empty).
fn percentile_us(ns: &mut [u32], q: f64) -> f64 {
    if ns.is_empty() {
        return 0.0;
    }
    let k = ((ns.len() - 1) as f64 * q).round() as usize;
    let (_, v, _) = ns.select_nth_unstable(k);
    *v as f64 / 1000.0
}

/// A request in flight.
#[derive(Clone, Copy, Default)]
struct Slot {
    sent_ns: u64,
    case: u32,
    waiting: bool,
}

/// One socket's load loop.
struct Worker<'a> {
    config: &'a ClientConfig,
    cases: &'a [Case],
    quota: Option<u64>,
    rate: Option<f64>,
    start: Instant,
    /// Ring indexed by sequence number; `base..next` may still be in flight.
    slots: Vec<Slot>,
    next: u64,
    base: u64,
    in_flight: usize,
    sent: u64,
    replies: u64,
    ok: u64,
    mismatches: u64,
    lost: u64,
    unexpected: u64,
    latencies_ns: Vec<u32>,
    last_reply: Instant,
    problems: Vec<String>,
}

impl<'a> Worker<'a> {
    fn new(
        config: &'a ClientConfig,
        cases: &'a [Case],
        quota: Option<u64>,
        rate: Option<f64>,
        start: Instant,
    ) -> Self {
        let ring = (config.window * 2).next_power_of_two();
        Self {
            config,
            cases,
            quota,
            rate,
            start,
            slots: vec![Slot::default(); ring],
            next: 0,
            base: 0,
            in_flight: 0,
            sent: 0,
            replies: 0,
            ok: 0,
            mismatches: 0,
            lost: 0,
            unexpected: 0,
            latencies_ns: Vec::with_capacity(quota.unwrap_or(1 << 16).min(1 << 24) as usize),
            last_reply: start,
            problems: Vec::new(),
        }
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Requests that may go out now.
    fn may_send(&self, now_ns: u64) -> usize {
        let deadline_passed = self
            .config
            .duration
            .is_some_and(|d| now_ns >= d.as_nanos() as u64);
        if deadline_passed {
            return 0;
        }
        let ring = self.slots.len() as u64;
        let mut n = (self.config.window - self.in_flight) as u64;
        n = n.min(ring - (self.next - self.base));
        if let Some(q) = self.quota {
            n = n.min(q - self.next);
        }
        if let Some(r) = self.rate {
            let due = (r * now_ns as f64 / 1e9) as u64 + 1;
            n = n.min(due.saturating_sub(self.next));
        }
        n.min(BATCH as u64) as usize
    }

    /// Sending is over: quota reached or time is up.
    fn done_sending(&self, now_ns: u64) -> bool {
        self.quota.is_some_and(|q| self.next >= q)
            || self
                .config
                .duration
                .is_some_and(|d| now_ns >= d.as_nanos() as u64)
    }

    fn run(&mut self, socket: &UdpSocket, stop: &AtomicBool) -> Result<(), ServeError> {
        let fd = socket.as_raw_fd();
        let mut tx_bufs = vec![[0u8; MAX_REQUEST_LEN]; BATCH];
        let mut rx_bufs = vec![[0u8; MAX_REPLY_LEN + 64]; BATCH];
        let mut tx_iov: Vec<libc::iovec> = tx_bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: 0,
            })
            .collect();
        let mut rx_iov: Vec<libc::iovec> = rx_bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: mmsghdr is a plain C struct; zero is a valid (empty) value.
        let mut tx: Vec<libc::mmsghdr> =
            vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH];
        let mut rx: Vec<libc::mmsghdr> =
            vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH];
        for i in 0..BATCH {
            tx[i].msg_hdr.msg_iov = &mut tx_iov[i];
            tx[i].msg_hdr.msg_iovlen = 1;
            rx[i].msg_hdr.msg_iov = &mut rx_iov[i];
            rx[i].msg_hdr.msg_iovlen = 1;
        }
        while !stop.load(Ordering::Relaxed) {
            let now = self.now_ns();
            if self.done_sending(now) && self.in_flight == 0 {
                break;
            }
            let mut progressed = false;
            let n = self.may_send(now);
            if n > 0 {
                for (k, buf) in tx_bufs.iter_mut().enumerate().take(n) {
                    let seq = self.next + k as u64;
                    let case = &self.cases[(seq % self.cases.len() as u64) as usize];
                    let len = case.request.len();
                    buf[..len].copy_from_slice(&case.request);
                    set_request_id(&mut buf[..len], seq as u32).map_err(ServeError::Wire)?;
                    tx_iov[k].iov_len = len;
                }
                // SAFETY: the first n headers point at filled buffers.
                let r =
                    unsafe { libc::sendmmsg(fd, tx.as_mut_ptr(), n as u32, libc::MSG_DONTWAIT) };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) && e.raw_os_error() != Some(libc::ECONNREFUSED)
                    {
                        return Err(ServeError::io("sendmmsg", e));
                    }
                } else {
                    let sent_ns = self.now_ns();
                    for k in 0..r as u64 {
                        let seq = self.next + k;
                        let ring = self.slots.len() as u64;
                        self.slots[(seq % ring) as usize] = Slot {
                            sent_ns,
                            case: (seq % self.cases.len() as u64) as u32,
                            waiting: true,
                        };
                    }
                    self.next += r as u64;
                    self.sent += r as u64;
                    self.in_flight += r as usize;
                    progressed = r > 0;
                }
            }
            // SAFETY: every header points at a buffer of the stated size.
            let got = unsafe {
                libc::recvmmsg(
                    fd,
                    rx.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if got > 0 {
                let now = self.now_ns();
                for i in 0..got as usize {
                    let len = (rx[i].msg_len as usize).min(rx_bufs[i].len());
                    self.check(&rx_bufs[i][..len], now);
                }
                progressed = true;
            } else if got < 0 {
                let e = io::Error::last_os_error();
                // ECONNREFUSED: an ICMP port unreachable from a server not up yet.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) && e.raw_os_error() != Some(libc::ECONNREFUSED)
                {
                    return Err(ServeError::io("recvmmsg", e));
                }
            }
            self.expire(self.now_ns());
            if !progressed {
                self.wait(fd);
            }
        }
        Ok(())
    }

    /// Sleeps until a reply arrives or, under a rate, the next request is due (at most 1 ms,
    /// so expiry and the stop flag are looked at).
    fn wait(&self, fd: i32) {
        let mut wait_ns: u64 = 1_000_000;
        if let (Some(r), false) = (self.rate, self.in_flight >= self.config.window) {
            let due_ns = ((self.next as f64) * 1e9 / r) as u64;
            wait_ns = wait_ns.min(due_ns.saturating_sub(self.now_ns()));
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: wait_ns as i64,
        };
        // SAFETY: one valid pollfd, a valid timeout, no signal mask change.
        unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    }

    /// Matches a reply to its request and compares it with the expected bytes.
    fn check(&mut self, reply: &[u8], now_ns: u64) {
        let Some(id) = reply.get(8..12) else {
            self.unexpected += 1;
            return;
        };
        let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
        // Sequence numbers in flight are base..next, less than 2^32 apart.
        let seq = self.base + (id.wrapping_sub(self.base as u32)) as u64;
        let ring = self.slots.len() as u64;
        let slot = &mut self.slots[(seq % ring) as usize];
        if seq >= self.next || !slot.waiting {
            self.unexpected += 1;
            return;
        }
        slot.waiting = false;
        let (sent_ns, case) = (slot.sent_ns, slot.case as usize);
        self.in_flight -= 1;
        self.replies += 1;
        self.last_reply = self.start + Duration::from_nanos(now_ns);
        self.latencies_ns
            .push(now_ns.saturating_sub(sent_ns).min(u32::MAX as u64) as u32);
        let expected = &self.cases[case].reply;
        // Everything but the model version (bytes 16..20: the server's push count) must match,
        // the request id included.
        let same = reply.len() == expected.len()
            && reply[..8] == expected[..8]
            && reply[12..16] == expected[12..16]
            && reply[20..] == expected[20..];
        if !same {
            self.mismatches += 1;
            if self.problems.len() < KEEP_PROBLEMS {
                let problem = describe_mismatch(&self.cases[case].request, expected, reply);
                self.problems.push(format!("request {seq}: {problem}"));
            }
        } else if u16::from_le_bytes([reply[6], reply[7]]) == Status::Ok as u16 {
            self.ok += 1;
        }
    }

    /// Gives up on requests older than the timeout and moves `base` past finished ones.
    fn expire(&mut self, now_ns: u64) {
        let timeout = self.config.timeout.as_nanos() as u64;
        let ring = self.slots.len() as u64;
        while self.base < self.next {
            let slot = &mut self.slots[(self.base % ring) as usize];
            if slot.waiting {
                if now_ns.saturating_sub(slot.sent_ns) < timeout {
                    break;
                }
                slot.waiting = false;
                self.lost += 1;
                self.in_flight -= 1;
            }
            self.base += 1;
        }
    }
}

/// Why `reply` is not the `expected` answer to `request`, in the protocol's words: the
/// server's status and what it says (a server running another model answers every request
/// with the same error), or the class and logits that differ.
fn describe_mismatch(request: &[u8], expected: &[u8], reply: &[u8]) -> String {
    let got = match decode_reply(reply) {
        Ok(r) => r,
        Err(e) => return format!("unreadable reply ({e}): {reply:02x?}"),
    };
    let Ok(want) = decode_reply(expected) else {
        return format!("the reference reply does not decode: {expected:02x?}");
    };
    if got.status == want.status {
        return match got.status {
            Status::Ok => format!(
                "class {} logits {:?}, the reference says class {} logits {:?}",
                got.class,
                got.logits(),
                want.class,
                want.logits()
            ),
            s => format!(
                "{} reply with request id {}, class {}, detail {}; the reference has {}, {}, {}",
                s.name(),
                got.request_id,
                got.class,
                got.detail,
                want.request_id,
                want.class,
                want.detail
            ),
        };
    }
    let padding = request
        .get(6..8)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let features = request.len().saturating_sub(REQUEST_HEADER_LEN + padding) / 4;
    let said = match got.status {
        Status::WrongFeatureCount => format!(
            ": it expects {} features, this request has {features}",
            got.detail
        ),
        Status::BadVersion => format!(": it speaks wire version {}", got.detail),
        Status::ModelMismatch => format!(
            ": its model is version {}, this request asks for model {}",
            got.model_version,
            request
                .get(12..16)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        ),
        Status::NoModel => ": it has no model loaded".to_string(),
        _ => String::new(),
    };
    format!(
        "server answered {}{said} (expected {})",
        got.status.name(),
        want.status.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::model::random_tabular_model;

    #[test]
    fn bad_cases_cover_every_client_error_status() {
        let model = random_tabular_model(4, &[8], 3, 1).unwrap();
        let mut config = ClientConfig::new("127.0.0.1:1".parse().unwrap());
        config.pool = 50;
        config.bad_every = 2;
        let cases = build_cases(&model, &config).unwrap();
        let mut statuses: Vec<Status> = cases
            .iter()
            .map(|c| decode_reply(&c.reply).unwrap().status)
            .collect();
        statuses.sort_by_key(|s| *s as u16);
        statuses.dedup();
        assert_eq!(
            statuses,
            [
                Status::Ok,
                Status::BadMagic,
                Status::BadVersion,
                Status::WrongFeatureCount,
                Status::ModelMismatch,
            ]
        );
    }

    #[test]
    fn a_server_with_another_model_is_described_by_its_status() {
        let served = random_tabular_model(4, &[8], 3, 1).unwrap();
        let local = random_tabular_model(16, &[8], 3, 1).unwrap();
        let config = ClientConfig::new("127.0.0.1:1".parse().unwrap());
        let case = &build_cases(&local, &config).unwrap()[0];
        let mut reply = [0u8; MAX_REPLY_LEN];
        let n = respond(
            &case.request,
            Some(&served),
            &mut Scratch::new(),
            &mut PlainLoop,
            &mut reply,
        )
        .unwrap();
        assert_eq!(
            describe_mismatch(&case.request, &case.reply, &reply[..n]),
            "server answered WRONG_FEATURE_COUNT: it expects 4 features, this request has 16 \
             (expected OK)"
        );
        assert_eq!(
            describe_mismatch(&case.request, &case.reply, &[1, 2, 3]),
            "unreadable reply (3 bytes: shorter than the 24-byte header): [01, 02, 03]"
        );
    }

    #[test]
    fn percentiles_pick_ranks() {
        let mut v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_us(&mut v, 0.5), 51.0);
        assert_eq!(percentile_us(&mut v, 0.99), 99.0);
        assert_eq!(percentile_us(&mut [], 0.5), 0.0);
    }
}
