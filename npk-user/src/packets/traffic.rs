//! Labelled traffic: benign and attack scenarios sent from a [`NetLab`] namespace to the lab's
//! host end, where the classifier is attached. Each scenario sends from its own address in the
//! namespace, so every packet's label follows from its source address ([`scenario_of`]).
//!
//! | scenario | class | what |
//! |---|---|---|
//! | dns | benign | DNS-like queries to UDP 53 from a fresh port each, answered by a responder |
//! | web | benign | TCP connections to port 8080: handshake, request, response, close |
//! | ping | benign | ICMP echo requests, 56-byte payload, a few per second |
//! | syn-flood | syn_flood | TCP SYNs to port 80 from random ports, window 512, no options |
//! | udp-flood | udp_flood | UDP datagrams of 0-512 random bytes to random ports >= 1024 |
//! | port-scan | port_scan | TCP SYNs from one port to every port in random order, window 1024, MSS option |
//! | icmp-flood | icmp_flood | ICMP echo requests with 0-1024 random bytes, fast |
//!
//! Benign traffic uses ordinary sockets (the namespace's TCP/IP stack builds it), attacks a raw
//! socket. Everything is bounded: by a duration, a count per scenario and a rate cap, and only
//! the lab's own host-end address is ever a destination.

use std::{
    io::{self, Read, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use crate::netlab::{NetLab, NetLabError};
use npk_common::{
    maps::Sample,
    packet::{FlowKey, PROTO_ICMP, PROTO_TCP, PROTO_UDP},
};
use serde::Serialize;

use super::{
    capture::Sampler,
    raw_ipv4::{TCP_SYN, TcpSegment, icmp_echo, ipv4, udp},
    synth::v4_mapped,
};
use crate::rng::Rng;

/// Class names, indexed by class number.
pub const CLASS_NAMES: [&str; 5] = [
    "benign",
    "syn_flood",
    "udp_flood",
    "port_scan",
    "icmp_flood",
];
pub const BENIGN: u32 = 0;

pub const DNS_PORT: u16 = 53;
pub const WEB_PORT: u16 = 8080;
pub const FLOOD_PORT: u16 = 80;
/// No scenario sends faster than this many events per second.
pub const MAX_RATE: f64 = 20_000.0;
pub const MAX_DURATION: Duration = Duration::from_secs(600);
const TTL: u8 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Dns,
    Web,
    Ping,
    SynFlood,
    UdpFlood,
    PortScan,
    IcmpFlood,
}

impl Scenario {
    pub const ALL: [Self; 7] = [
        Self::Dns,
        Self::Web,
        Self::Ping,
        Self::SynFlood,
        Self::UdpFlood,
        Self::PortScan,
        Self::IcmpFlood,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Web => "web",
            Self::Ping => "ping",
            Self::SynFlood => "syn-flood",
            Self::UdpFlood => "udp-flood",
            Self::PortScan => "port-scan",
            Self::IcmpFlood => "icmp-flood",
        }
    }

    /// The label of its packets (an index into [`CLASS_NAMES`]).
    pub fn class(self) -> u32 {
        match self {
            Self::Dns | Self::Web | Self::Ping => BENIGN,
            Self::SynFlood => 1,
            Self::UdpFlood => 2,
            Self::PortScan => 3,
            Self::IcmpFlood => 4,
        }
    }

    pub fn is_attack(self) -> bool {
        self.class() != BENIGN
    }

    /// Events per second at rate scale 1: queries (dns), connections (web), packets (others).
    pub fn default_rate(self) -> f64 {
        match self {
            Self::Dns => 150.0,
            Self::Web => 30.0,
            Self::Ping => 25.0,
            Self::SynFlood | Self::UdpFlood | Self::IcmpFlood => 1500.0,
            Self::PortScan => 500.0,
        }
    }

    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|&s| s == self)
            .expect("ALL lists every scenario")
    }

    /// The namespace address it sends from.
    pub fn source(self, lab: &NetLab) -> Option<Ipv4Addr> {
        lab.ns_addrs.get(self.index()).copied()
    }
}

/// The scenario that sent packets of flow `key` in `lab`, if any did.
pub fn scenario_of(lab: &NetLab, key: &FlowKey) -> Option<Scenario> {
    let src = Ipv4Addr::new(key.src[12], key.src[13], key.src[14], key.src[15]);
    if key.src != v4_mapped(src.octets()) {
        return None;
    }
    let i = lab.ns_addrs.iter().position(|&a| a == src)?;
    Scenario::ALL.get(i).copied()
}

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Lab(#[from] NetLabError),
    #[error("starting the {what} responder on {addr}")]
    Responder {
        what: &'static str,
        addr: SocketAddrV4,
        #[source]
        source: io::Error,
    },
    #[error("scenario {}", scenario.name())]
    Scenario {
        scenario: Scenario,
        #[source]
        source: io::Error,
    },
}

/// What to send.
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub scenarios: Vec<Scenario>,
    pub duration: Duration,
    /// Per scenario, at most this many events.
    pub max_events: u64,
    /// Multiplies every scenario's [`Scenario::default_rate`].
    pub rate_scale: f64,
    pub seed: u64,
}

impl GenConfig {
    pub fn validate(&self) -> Result<(), GenError> {
        let bad = |m: String| Err(GenError::Config(m));
        if self.scenarios.is_empty() {
            return bad("no scenario to run".into());
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return bad(format!(
                "duration {:?} is outside (0, {}] seconds",
                self.duration,
                MAX_DURATION.as_secs()
            ));
        }
        for s in &self.scenarios {
            let rate = self.rate(*s);
            if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
                return bad(format!(
                    "rate scale {} gives {} {rate} events/s, outside (0, {MAX_RATE}]",
                    self.rate_scale,
                    s.name()
                ));
            }
        }
        Ok(())
    }

    pub fn rate(&self, s: Scenario) -> f64 {
        s.default_rate() * self.rate_scale
    }
}

/// What one scenario sent.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ScenarioReport {
    pub scenario: Scenario,
    /// Queries, connections or packets sent.
    pub events: u64,
    /// Queries unanswered, connections failed, packets the socket refused (buffer full).
    pub failures: u64,
}

/// Runs the scenarios of `config` from `lab`'s namespace to its host end, with the responders
/// they need on the host end, until each has sent its count, the duration is over or `stop`
/// is set. `on_tick` runs on the calling thread every few milliseconds meanwhile.
pub fn run(
    lab: &NetLab,
    config: &GenConfig,
    stop: &AtomicBool,
    mut on_tick: impl FnMut(),
) -> Result<Vec<ScenarioReport>, GenError> {
    config.validate()?;
    for s in &config.scenarios {
        if s.source(lab).is_none() {
            return Err(GenError::Config(format!(
                "the lab has {} source addresses, scenario {} needs {}",
                lab.ns_addrs.len(),
                s.name(),
                s.index() + 1
            )));
        }
    }
    let responder = |what, port| {
        let addr = SocketAddrV4::new(lab.host_addr, port);
        move |source| GenError::Responder { what, addr, source }
    };
    let dns = config
        .scenarios
        .contains(&Scenario::Dns)
        .then(|| UdpSocket::bind((lab.host_addr, DNS_PORT)))
        .transpose()
        .map_err(responder("DNS", DNS_PORT))?;
    let web = config
        .scenarios
        .contains(&Scenario::Web)
        .then(|| TcpListener::bind((lab.host_addr, WEB_PORT)))
        .transpose()
        .map_err(responder("web", WEB_PORT))?;
    let done = AtomicBool::new(false);
    let finished = AtomicUsize::new(0);
    let deadline = Instant::now() + config.duration;
    std::thread::scope(|s| {
        if let Some(sock) = dns {
            s.spawn(|| serve_dns(sock, &done));
        }
        if let Some(listener) = web {
            s.spawn(|| serve_web(listener, &done, config.seed));
        }
        let workers: Vec<_> = config
            .scenarios
            .iter()
            .enumerate()
            .map(|(i, &scenario)| {
                let (finished, config) = (&finished, config);
                s.spawn(move || {
                    let run = || -> Result<ScenarioReport, GenError> {
                        lab.enter()?;
                        let pace = Pace {
                            stop,
                            deadline,
                            max_events: config.max_events,
                            interval: Duration::from_secs_f64(1.0 / config.rate(scenario)),
                        };
                        let from = scenario.source(lab).expect("checked above");
                        let rng = Rng::new(config.seed ^ (i as u64 + 1).wrapping_mul(0x9e37));
                        send(scenario, from, lab.host_addr, &pace, rng)
                            .map_err(|source| GenError::Scenario { scenario, source })
                    };
                    let result = run();
                    finished.fetch_add(1, Ordering::SeqCst);
                    result
                })
            })
            .collect();
        while finished.load(Ordering::SeqCst) < workers.len() {
            on_tick();
            std::thread::sleep(Duration::from_millis(5));
        }
        done.store(true, Ordering::SeqCst);
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// [`run`] while reading `sampler` (the classifier on the lab's host end): `on_sample` gets
/// every sample with the scenario that sent its packet (`None`: not generated traffic).
pub fn run_sampled(
    lab: &NetLab,
    config: &GenConfig,
    stop: &AtomicBool,
    sampler: &mut Sampler,
    mut on_sample: impl FnMut(Option<Scenario>, &Sample),
    mut on_tick: impl FnMut(),
) -> Result<Vec<ScenarioReport>, GenError> {
    let mut drain = || sampler.drain(|s| on_sample(scenario_of(lab, &s.flow), s));
    let reports = run(lab, config, stop, || {
        drain();
        on_tick();
    })?;
    // The last packets' samples may still be on their way through the stack.
    std::thread::sleep(Duration::from_millis(50));
    drain();
    Ok(reports)
}

/// When to send the next event.
struct Pace<'a> {
    stop: &'a AtomicBool,
    deadline: Instant,
    max_events: u64,
    interval: Duration,
}

impl Pace<'_> {
    /// Calls `event` at the pace's rate until a bound is reached; `event` says whether it
    /// succeeded.
    fn run(&self, mut event: impl FnMut(u64) -> io::Result<bool>) -> io::Result<(u64, u64)> {
        let (mut events, mut failures) = (0, 0);
        let mut next = Instant::now();
        while events < self.max_events && !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= self.deadline {
                break;
            }
            if next > now {
                std::thread::sleep((next - now).min(Duration::from_millis(20)));
                continue;
            }
            // Far behind (a slow event, a busy machine): resume the rate instead of bursting.
            if now - next > Duration::from_millis(20) {
                next = now;
            }
            if !event(events)? {
                failures += 1;
            }
            events += 1;
            next += self.interval;
        }
        Ok((events, failures))
    }
}

fn send(
    scenario: Scenario,
    from: Ipv4Addr,
    to: Ipv4Addr,
    pace: &Pace,
    mut rng: Rng,
) -> io::Result<ScenarioReport> {
    let (events, failures) = match scenario {
        Scenario::Dns => pace.run(|_| dns_query(from, to, &mut rng))?,
        Scenario::Web => pace.run(|_| Ok(web_fetch(from, to, &mut rng).is_ok()))?,
        raw_scenario => {
            let sock = RawSocket::new()?;
            let ping_id = rng.below(1 << 16) as u16;
            let scan_port = 40000 + rng.below(20000) as u16;
            let mut scan_order: Vec<u16> = (1..=u16::MAX).filter(|&p| p != WEB_PORT).collect();
            rng.shuffle(&mut scan_order);
            pace.run(|n| {
                let (protocol, l4) = match raw_scenario {
                    Scenario::Ping => {
                        let mut payload = [0u8; 56];
                        payload[..8].copy_from_slice(&n.to_be_bytes());
                        for (i, b) in payload[8..].iter_mut().enumerate() {
                            *b = 0x10 + i as u8;
                        }
                        (PROTO_ICMP, icmp_echo(ping_id, n as u16, &payload))
                    }
                    Scenario::IcmpFlood => {
                        let mut payload = vec![0u8; rng.below(1025)];
                        rng.fill_bytes(&mut payload);
                        (PROTO_ICMP, icmp_echo(ping_id, n as u16, &payload))
                    }
                    Scenario::SynFlood => {
                        let syn = TcpSegment {
                            src_port: 1024 + rng.below(64512) as u16,
                            dst_port: FLOOD_PORT,
                            seq: rng.next_u64() as u32,
                            flags: TCP_SYN,
                            window: 512,
                            options: &[],
                        };
                        (PROTO_TCP, syn.build(from, to))
                    }
                    Scenario::PortScan => {
                        let syn = TcpSegment {
                            src_port: scan_port,
                            dst_port: scan_order[n as usize % scan_order.len()],
                            seq: rng.next_u64() as u32,
                            flags: TCP_SYN,
                            window: 1024,
                            // MSS 1460
                            options: &[2, 4, 0x05, 0xb4],
                        };
                        (PROTO_TCP, syn.build(from, to))
                    }
                    _ => {
                        let mut payload = vec![0u8; rng.below(513)];
                        rng.fill_bytes(&mut payload);
                        let src_port = 1024 + rng.below(64512) as u16;
                        let dst_port = 1024 + rng.below(64512) as u16;
                        (PROTO_UDP, udp(from, to, src_port, dst_port, &payload))
                    }
                };
                let id = 1 + rng.below(usize::from(u16::MAX)) as u16;
                sock.send(&ipv4(from, to, protocol, TTL, id, &l4), to)
            })?
        }
    };
    Ok(ScenarioReport {
        scenario,
        events,
        failures,
    })
}

/// One DNS-like query from a fresh socket (a fresh source port, as resolvers do); true when
/// the answer came.
fn dns_query(from: Ipv4Addr, to: Ipv4Addr, rng: &mut Rng) -> io::Result<bool> {
    const NAMES: [&str; 8] = [
        "www", "mail", "api", "cdn", "static", "img", "login", "news",
    ];
    let sock = UdpSocket::bind((from, 0))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&(rng.next_u64() as u16).to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    let host = format!("{}{}", NAMES[rng.below(NAMES.len())], rng.below(100));
    for label in [host.as_str(), "example", "lab"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    let qtype: u16 = [1, 28, 15][rng.below(3)];
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    sock.send_to(&q, (to, DNS_PORT))?;
    let mut buf = [0u8; 512];
    Ok(sock.recv_from(&mut buf).is_ok())
}

/// Answers every query with the query and one A record until `done`.
fn serve_dns(sock: UdpSocket, done: &AtomicBool) {
    if sock
        .set_read_timeout(Some(Duration::from_millis(20)))
        .is_err()
    {
        return;
    }
    let mut buf = [0u8; 512];
    while !done.load(Ordering::Relaxed) {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if n < 12 || n + 16 > buf.len() {
            continue;
        }
        buf[2..4].copy_from_slice(&[0x81, 0x80]);
        buf[6..8].copy_from_slice(&1u16.to_be_bytes());
        buf[n..n + 16]
            .copy_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1]);
        let _ = sock.send_to(&buf[..n + 16], peer);
    }
}

/// One HTTP-like exchange over a new connection from `from`.
fn web_fetch(from: Ipv4Addr, to: Ipv4Addr, rng: &mut Rng) -> io::Result<()> {
    let mut stream = tcp_connect(
        from,
        SocketAddrV4::new(to, WEB_PORT),
        Duration::from_secs(1),
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let path = [
        "index.html",
        "app.js",
        "style.css",
        "api/items",
        "img/logo.png",
    ][rng.below(5)];
    write!(
        stream,
        "GET /{path}?v={} HTTP/1.1\r\nHost: lab.example\r\nAccept: */*\r\n\r\n",
        rng.below(1000)
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(())
}

/// Answers each connection's request with 200-6000 bytes and closes it, until `done`.
fn serve_web(listener: TcpListener, done: &AtomicBool, seed: u64) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    let mut rng = Rng::new(seed ^ 0x3eb);
    while !done.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = answer(stream, rng.range_i64(200, 6000) as usize);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn answer(mut stream: TcpStream, body: usize) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(300)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.ends_with(b"\r\n\r\n") && request.len() < 8192 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {body}\r\nConnection: close\r\n\r\n"
    )?;
    stream.write_all(&vec![b'x'; body])
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A TCP connection from a chosen local address (std cannot bind before connecting).
fn tcp_connect(from: Ipv4Addr, to: SocketAddrV4, timeout: Duration) -> io::Result<TcpStream> {
    // SAFETY: plain socket calls on a descriptor this function owns, with valid pointers and
    // lengths.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        check(fd)?;
        let sock = OwnedFd::from_raw_fd(fd);
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // The send timeout bounds connect() too.
        check(libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        ))?;
        let local = sockaddr(SocketAddrV4::new(from, 0));
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        check(libc::bind(fd, (&raw const local).cast(), len))?;
        let remote = sockaddr(to);
        check(libc::connect(fd, (&raw const remote).cast(), len))?;
        Ok(TcpStream::from(sock))
    }
}

/// An `IPPROTO_RAW` socket: sends whole IPv4 packets as written.
struct RawSocket(OwnedFd);

impl RawSocket {
    fn new() -> io::Result<Self> {
        // SAFETY: socket() with constant arguments; the descriptor is owned at once.
        unsafe {
            let fd = libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_RAW,
            );
            check(fd)?;
            Ok(Self(OwnedFd::from_raw_fd(fd)))
        }
    }

    /// Sends `packet`; false when the socket's buffer is full (the packet is not sent).
    fn send(&self, packet: &[u8], to: Ipv4Addr) -> io::Result<bool> {
        let dst = sockaddr(SocketAddrV4::new(to, 0));
        // SAFETY: valid buffer and address for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                libc::MSG_DONTWAIT,
                (&raw const dst).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n >= 0 {
            return Ok(true);
        }
        match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::WouldBlock
                || e.raw_os_error() == Some(libc::ENOBUFS) =>
            {
                Ok(false)
            }
            e => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_has_a_source_and_a_named_class() {
        let lab = NetLab::create(Scenario::ALL.len()).expect("root is required (CI runs as root)");
        for s in Scenario::ALL {
            let src = s.source(&lab).unwrap();
            let key = FlowKey {
                src: v4_mapped(src.octets()),
                ..FlowKey::default()
            };
            assert_eq!(scenario_of(&lab, &key), Some(s));
            assert!((s.class() as usize) < CLASS_NAMES.len());
            assert_eq!(s.is_attack(), s.class() != BENIGN);
        }
        let host = FlowKey {
            src: v4_mapped(lab.host_addr.octets()),
            ..FlowKey::default()
        };
        assert_eq!(scenario_of(&lab, &host), None);
    }

    #[test]
    fn config_bounds_are_enforced() {
        let mut c = GenConfig {
            scenarios: vec![Scenario::SynFlood],
            duration: Duration::from_secs(1),
            max_events: 10,
            rate_scale: 1.0,
            seed: 1,
        };
        assert!(c.validate().is_ok());
        c.rate_scale = 100.0;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "rate scale 100 gives syn-flood 150000 events/s, outside (0, 20000]"
        );
        c.rate_scale = 1.0;
        c.duration = Duration::from_secs(601);
        assert!(c.validate().is_err());
        c.duration = Duration::from_secs(1);
        c.scenarios.clear();
        assert!(c.validate().is_err());
    }

    #[test]
    fn every_scenario_sends_within_its_bounds() {
        let lab = NetLab::create(Scenario::ALL.len()).expect("root is required (CI runs as root)");
        let config = GenConfig {
            scenarios: Scenario::ALL.to_vec(),
            duration: Duration::from_secs(2),
            max_events: 20,
            rate_scale: 1.0,
            seed: 3,
        };
        let start = Instant::now();
        let mut ticks = 0;
        let reports = run(&lab, &config, &AtomicBool::new(false), || ticks += 1).unwrap();
        assert!(start.elapsed() < Duration::from_secs(4));
        assert!(ticks > 0);
        for r in reports {
            assert!(r.events <= 20, "{r:?}");
            assert_eq!(r.failures, 0, "{r:?}");
            // Ping's 25/s gives ~50 in 2 s, so every scenario reaches its count.
            assert_eq!(r.events, 20, "{r:?}");
        }
    }
}
