//! The load generator seen from userspace (npk_common::service::loadgen): builds the request frames
//! and their reference replies, attaches the reply counter to the lab namespace's veth end
//! and sends, paced or flat out, from a thread inside the namespace with one of two senders:
//! - [`Sender::LiveFrames`]: `npk_loadgen` under BPF_PROG_TEST_RUN in XDP live-frames mode.
//!   Requests and replies cost no system call each: the only calls are one test run per run,
//!   the signal that ends it and the counter reads.
//! - [`Sender::PacketSocket`], where the kernel refuses live frames (some hardened kernels
//!   do: docs/serve-benchmark.md): the same frames and pacing from userspace through an
//!   AF_PACKET socket, one `sendmmsg` per train (super::packet_sender).
//!
//! Either way `npk_replies` counts, times and checks every reply in the kernel.

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicBool, AtomicI32, Ordering},
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{Array, MapData, MapError, PerCpuArray},
    programs::{ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use npk_common::{
    infer::{PlainLoop, Scratch},
    model::Model,
    service::loadgen::{
        ExpectedReply, FRAME_PAD, FrameTemplate, GenState, LoadgenConfig, LoadgenCounters,
        MAP_LOADGEN_CONFIG, MAP_LOADGEN_EXPECTED, MAP_LOADGEN_FRAMES, MAP_LOADGEN_STATE,
        MAP_LOADGEN_STATS, MAX_CASES, PAYLOAD_OFFSET, PROG_LOADGEN, PROG_REPLIES,
    },
    service::wire::{
        ANY_MODEL, MAX_REPLY_LEN, MAX_REQUEST_LEN, Status, WireError, encode_request, ok_reply_len,
        respond,
    },
};

use super::packet_sender::{PacketSocket, Sent, send_requests};
use crate::{
    kernel::{LoadError, load_object, load_program, require_xdp_load_bytes},
    netlab::{NetLab, NetLabError},
    rng::Rng,
    serve::{client::ClientReport, model::random_features},
};

#[derive(Debug, thiserror::Error)]
pub enum LiveGenError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{0} cases: must be a power of two up to {MAX_CASES}")]
    Cases(usize),
    #[error(transparent)]
    NetLab(#[from] NetLabError),
    #[error("encoding a request")]
    Encode(#[source] WireError),
    #[error("a request shorter than its reply: servers refuse it")]
    Unanswered,
    #[error("map {0} missing")]
    MissingMap(&'static str),
    #[error("program {0} missing")]
    MissingProgram(&'static str),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error("attaching {PROG_REPLIES} to {iface} (native)")]
    AttachCounter {
        iface: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("attaching {PROG_REPLIES} to {iface}")]
    AttachHostPass {
        iface: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("pinning to CPU {cpu}")]
    Pin {
        cpu: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("BPF_PROG_TEST_RUN (live frames) of {PROG_LOADGEN}")]
    TestRun(#[source] Box<ProgramError>),
    #[error("an AF_PACKET socket on {iface}")]
    PacketSocket {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sending requests through the AF_PACKET socket")]
    PacketSend(#[source] std::io::Error),
    #[error("reading the generator's state")]
    State(#[source] MapError),
    #[error("interrupted")]
    Interrupted,
    #[error("installing a SIGUSR1 handler")]
    SignalHandler(#[source] std::io::Error),
    #[error("a socket for SIOCGIFHWADDR")]
    Socket(#[source] std::io::Error),
    #[error("interface name {0} too long")]
    IfaceTooLong(String),
    #[error("reading the MAC address of {iface}")]
    Mac {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interface name with a NUL byte")]
    IfaceNul(#[source] std::ffi::NulError),
    #[error("looking up interface {iface}")]
    Ifindex {
        iface: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = LiveGenError> = std::result::Result<T, E>;

/// Frames per live-frames batch (the kernel's default, NAPI_POLL_WEIGHT).
const BATCH: u32 = 64;
/// The generator's UDP source port.
const SOURCE_PORT: u16 = 40_000;
/// Replies still arriving this long after the last one count; then the run is over.
const SETTLE: Duration = Duration::from_millis(100);

/// What the generator sends.
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub port: u16,
    pub requests: u64,
    /// Offered load in requests/s (`None`: flat out).
    pub rate: Option<f64>,
    /// Distinct requests, 1..=16, a power of two.
    pub cases: usize,
    pub seed: u64,
    /// Pin the generating thread to this CPU.
    pub cpu: Option<usize>,
}

/// How the generator's requests leave the namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// `npk_loadgen` under BPF_PROG_TEST_RUN in XDP live-frames mode: no system call per
    /// request.
    LiveFrames,
    /// An AF_PACKET socket in the namespace, one `sendmmsg` per train of requests.
    PacketSocket,
}

impl Sender {
    pub fn name(self) -> &'static str {
        match self {
            Self::LiveFrames => "live frames",
            Self::PacketSocket => "AF_PACKET",
        }
    }
}

/// The generator and the reply counter, loaded and configured for one lab and model.
pub struct LiveGen {
    ebpf: Ebpf,
    sender: Sender,
    /// Why live frames are not used, when the probe chose [`Sender::PacketSocket`].
    fallback: Option<String>,
    /// The test run's input frame.
    frame: Vec<u8>,
    /// Each case's request frame (the packet sender's templates).
    frames: Vec<Vec<u8>>,
    ns_ifindex: u32,
    host_pass: Option<XdpLinkId>,
}

impl LiveGen {
    /// Loads both programs, fills the frames and the expected replies for `model`, and
    /// attaches the reply counter to the namespace end of `lab` (native mode: the kernel
    /// server's XDP_TX frames reach a veth only through its XDP path). `sender`: the one to
    /// use, or `None` to probe live frames once (one test run of a single frame) and fall
    /// back to the packet socket where the kernel refuses them ([`LiveGen::fallback`] says
    /// why). Naming [`Sender::LiveFrames`] on a kernel that refuses them fails here.
    pub fn load(
        lab: &NetLab,
        model: &Model,
        config: &GenConfig,
        sender: Option<Sender>,
    ) -> Result<Self> {
        require_xdp_load_bytes("the in-kernel load generator", PROG_LOADGEN)?;
        if !(config.cases.is_power_of_two() && config.cases <= MAX_CASES) {
            return Err(LiveGenError::Cases(config.cases));
        }
        install_wakeup_handler()?;
        let mut ebpf = load_object()?;
        for name in [PROG_LOADGEN, PROG_REPLIES] {
            load_program(&mut ebpf, name, || format!("the kernel refused {name}"))?;
        }
        let (ns_mac, ns_ifindex) = lab
            .in_netns(|| Ok::<_, LiveGenError>((mac_of(&lab.ns_if)?, ifindex_of(&lab.ns_if)?)))??;
        let host_mac = mac_of(&lab.host_if)?;
        let addrs = FrameAddrs {
            src_mac: ns_mac,
            dst_mac: host_mac,
            src: lab.ns_addrs[0],
            dst: lab.host_addr,
            port: config.port,
        };
        let mut rng = Rng::new(config.seed);
        let mut scratch = Scratch::new();
        let mut frames = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..config.cases {
            let features = random_features(&mut rng, model);
            let mut request = [0u8; MAX_REQUEST_LEN];
            let reply_len = ok_reply_len(model.header.num_classes as usize);
            let n = encode_request(&mut request, 0, ANY_MODEL, &features, reply_len)
                .map_err(LiveGenError::Encode)?;
            let mut reply = [0u8; MAX_REPLY_LEN];
            let len = respond(
                &request[..n],
                Some(model),
                &mut scratch,
                &mut PlainLoop,
                &mut reply,
            )
            .ok_or(LiveGenError::Unanswered)?;
            frames.push(request_frame(&addrs, &request[..n]));
            let mut words = [0u32; MAX_REPLY_LEN / 4];
            for (w, b) in words.iter_mut().zip(reply.chunks_exact(4)) {
                *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            expected.push((ExpectedReply { words }, len));
        }
        let reply_len = expected[0].1 as u32;
        let frame_len = frames[0].len();
        // The test run's input: a request frame and FRAME_PAD bytes more (see npk_loadgen).
        let mut frame = frames[0].clone();
        frame.resize(frame_len + FRAME_PAD, 0);
        {
            let mut map: Array<&mut MapData, FrameTemplate> = Array::try_from(
                ebpf.map_mut(MAP_LOADGEN_FRAMES)
                    .ok_or(LiveGenError::MissingMap(MAP_LOADGEN_FRAMES))?,
            )?;
            for (i, f) in frames.iter().enumerate() {
                let mut t = FrameTemplate {
                    bytes: [0; npk_common::service::loadgen::FRAME_TEMPLATE_LEN],
                };
                t.bytes[..f.len()].copy_from_slice(f);
                map.set(i as u32, t, 0)?;
            }
        }
        {
            let mut map: Array<&mut MapData, ExpectedReply> = Array::try_from(
                ebpf.map_mut(MAP_LOADGEN_EXPECTED)
                    .ok_or(LiveGenError::MissingMap(MAP_LOADGEN_EXPECTED))?,
            )?;
            for (i, (e, _)) in expected.iter().enumerate() {
                map.set(i as u32, *e, 0)?;
            }
        }
        let mut cfg: Array<&mut MapData, LoadgenConfig> = Array::try_from(
            ebpf.map_mut(MAP_LOADGEN_CONFIG)
                .ok_or(LiveGenError::MissingMap(MAP_LOADGEN_CONFIG))?,
        )?;
        cfg.set(
            0,
            LoadgenConfig {
                frame_len: frame_len as u32,
                cases: config.cases as u32,
                server_port: config.port,
                _pad: 0,
                reply_len,
            },
            0,
        )?;
        let counter = replies_program(&mut ebpf)?;
        lab.in_netns(|| counter.attach(&lab.ns_if, XdpMode::Driver))?
            .map_err(|e| LiveGenError::AttachCounter {
                iface: lab.ns_if.clone(),
                source: Box::new(e),
            })?;
        let mut generator = Self {
            ebpf,
            sender: sender.unwrap_or(Sender::LiveFrames),
            fallback: None,
            frame,
            frames,
            ns_ifindex,
            host_pass: None,
        };
        if sender != Some(Sender::PacketSocket) {
            match generator.probe_live_frames(lab) {
                Ok(()) => {}
                Err(e) if sender.is_none() => {
                    generator.sender = Sender::PacketSocket;
                    generator.fallback = Some(crate::output::error_text(&e));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(generator)
    }

    /// The sender this generator uses.
    pub fn sender(&self) -> Sender {
        self.sender
    }

    /// Why live frames are not used, when the probe fell back to the packet socket.
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// One live-frames test run of the generator with nothing to send (it drops its one
    /// frame): whether the kernel takes live frames at all.
    fn probe_live_frames(&mut self, lab: &NetLab) -> Result<()> {
        self.set_state(GenState::new(0, None))?;
        let ctx = self.xdp_ctx();
        let frame = &self.frame;
        let program = self.loadgen_program()?;
        lab.in_netns(|| {
            program.test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                repeat: 1,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..TestRunOptions::new()
            })
        })?
        .map(drop)
        .map_err(|e| LiveGenError::TestRun(Box::new(e)))
    }

    fn set_state(&mut self, state: GenState) -> Result<()> {
        let mut map: Array<&mut MapData, GenState> = Array::try_from(
            self.ebpf
                .map_mut(MAP_LOADGEN_STATE)
                .ok_or(LiveGenError::MissingMap(MAP_LOADGEN_STATE))?,
        )?;
        map.set(0, state, 0)?;
        Ok(())
    }

    /// The test run's struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    /// rx_queue_index, egress_ifindex.
    fn xdp_ctx(&self) -> [u8; 24] {
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(self.frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&self.ns_ifindex.to_ne_bytes());
        ctx
    }

    fn loadgen_program(&self) -> Result<&Xdp> {
        Ok(self
            .ebpf
            .program(PROG_LOADGEN)
            .ok_or(LiveGenError::MissingProgram(PROG_LOADGEN))?
            .try_into()?)
    }

    /// Attaches the reply counter (which passes requests) natively to the host end too, or
    /// detaches it: a veth end takes XDP frames from its peer only with an XDP program of
    /// its own, so a server that is not XDP (the userspace one) needs this one there.
    pub fn set_host_pass(&mut self, lab: &NetLab, on: bool) -> Result<()> {
        let prog = replies_program(&mut self.ebpf)?;
        match (on, self.host_pass.take()) {
            (true, None) => {
                let id = prog.attach(&lab.host_if, XdpMode::Driver).map_err(|e| {
                    LiveGenError::AttachHostPass {
                        iface: lab.host_if.clone(),
                        source: Box::new(e),
                    }
                })?;
                self.host_pass = Some(id);
            }
            (false, Some(id)) => prog.detach(id)?,
            (_, keep) => self.host_pass = keep,
        }
        Ok(())
    }

    /// Counters summed over CPUs.
    pub fn counters(&self) -> Result<LoadgenCounters> {
        let map = self
            .ebpf
            .map(MAP_LOADGEN_STATS)
            .ok_or(LiveGenError::MissingMap(MAP_LOADGEN_STATS))?;
        let per_cpu: PerCpuArray<&MapData, LoadgenCounters> = PerCpuArray::try_from(map)?;
        let mut total: LoadgenCounters = bytemuck::Zeroable::zeroed();
        for c in per_cpu.get(&0, 0)?.iter() {
            total.add(c);
        }
        Ok(total)
    }

    fn state_map(&self) -> Result<Array<&MapData, GenState>> {
        let map = self
            .ebpf
            .map(MAP_LOADGEN_STATE)
            .ok_or(LiveGenError::MissingMap(MAP_LOADGEN_STATE))?;
        Ok(Array::try_from(map)?)
    }

    /// Sends `config.requests` requests at `config.rate` (or flat out) and waits for the
    /// replies; the report counts this run only (the counters are read before and after).
    pub fn run(
        &mut self,
        lab: &NetLab,
        config: &GenConfig,
        stop: &AtomicBool,
    ) -> Result<ClientReport> {
        let before = self.counters()?;
        let (sent, first_sent) = match self.sender {
            Sender::LiveFrames => self.send_live_frames(lab, config, stop)?,
            Sender::PacketSocket => self.send_from_socket(lab, config, stop)?,
        };
        // Replies still in flight: wait until the count stops moving, and time the run to
        // the last change seen.
        let mut last = self.counters()?;
        let mut last_change = Instant::now();
        while last_change.elapsed() < SETTLE && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
            let now = self.counters()?;
            if now.replies_total() != last.replies_total() {
                last = now;
                last_change = Instant::now();
            }
        }
        if stop.load(Ordering::Relaxed) {
            return Err(LiveGenError::Interrupted);
        }
        let mut run = last.since(&before);
        // The packet sender counts what it sent itself.
        run.sent = sent.unwrap_or(run.sent);
        let replies = run.replies_total();
        // Timed on the kernel's clock, from the first request out to the last reply in:
        // neither the sender's setup nor the settling wait above counts.
        let seconds = if replies > 0 {
            run.last_reply_ns.saturating_sub(first_sent) as f64 / 1e9
        } else {
            0.0
        };
        Ok(ClientReport {
            sent: run.sent,
            replies,
            ok: run.replies[Status::Ok as usize],
            mismatches: run.mismatches,
            lost: run.sent.saturating_sub(replies),
            unexpected: 0,
            seconds,
            rps: if seconds > 0.0 {
                replies as f64 / seconds
            } else {
                0.0
            },
            p50_us: run.latency_quantile_ns(50, 100) as f64 / 1000.0,
            p99_us: run.latency_quantile_ns(99, 100) as f64 / 1000.0,
            // The generator spins between requests: its CPU time says nothing per request.
            cpu_ns_per_request: 0.0,
            problems: Vec::new(),
        })
    }

    /// `npk_loadgen` in one live-frames test run, interrupted once every request is out;
    /// returns the first request's time (the generator counts what it sent in its map).
    fn send_live_frames(
        &mut self,
        lab: &NetLab,
        config: &GenConfig,
        stop: &AtomicBool,
    ) -> Result<(Option<u64>, u64)> {
        self.set_state(GenState::new(
            config.requests,
            config.rate.map(|r| r.round() as u64),
        ))?;
        let ctx = self.xdp_ctx();
        let frame = &self.frame;
        let program = self.loadgen_program()?;
        let state_map = self.state_map()?;
        let done = AtomicBool::new(false);
        let tid = AtomicI32::new(0);
        let generated = std::thread::scope(|s| {
            let generator = s.spawn(|| -> Result<()> {
                enter_and_pin(lab, config.cpu)?;
                // The test run spins in the kernel: whatever shares its CPU (the reply
                // counter's NAPI thread) goes first. Best effort, as before. (The packet
                // sender sleeps between trains and keeps the process's priority: at the
                // lowest, a busy machine delays its wake-ups by more than a train.)
                let _ = crate::sys::set_nice(19);
                // SAFETY: gettid has no preconditions.
                tid.store(unsafe { libc::gettid() }, Ordering::SeqCst);
                while !done.load(Ordering::SeqCst) {
                    let run = program.test_run(TestRunOptions {
                        data_in: Some(frame),
                        ctx_in: Some(&ctx),
                        repeat: u32::MAX,
                        attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                        ..TestRunOptions::new()
                    });
                    // Interrupted by wake_up below (EINTR) once the run is over.
                    if run.is_err() && done.load(Ordering::SeqCst) {
                        break;
                    }
                    run.map_err(|e| LiveGenError::TestRun(Box::new(e)))?;
                }
                Ok(())
            });
            // The test run ends only when interrupted: signal the generator once every
            // request is out (or on Ctrl-C, or if the state cannot be read), and again until
            // it stops, since a signal that lands between two calls is missed.
            let mut watch = Ok(());
            while !generator.is_finished() {
                let over = match state_map.get(&0, 0) {
                    Ok(s) => s.remaining == 0 || stop.load(Ordering::Relaxed),
                    Err(e) => {
                        watch = Err(LiveGenError::State(e));
                        true
                    }
                };
                if over {
                    done.store(true, Ordering::SeqCst);
                    wake_up(tid.load(Ordering::SeqCst));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let joined = generator
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            watch.and(joined)
        });
        generated?;
        Ok((None, state_map.get(&0, 0)?.first_sent_ns))
    }

    /// The same frames and pacing through an AF_PACKET socket on the namespace end;
    /// returns what it sent and the first request's time.
    fn send_from_socket(
        &self,
        lab: &NetLab,
        config: &GenConfig,
        stop: &AtomicBool,
    ) -> Result<(Option<u64>, u64)> {
        let cases = &self.frames[..config.cases.clamp(1, self.frames.len())];
        let sent = std::thread::scope(|s| {
            s.spawn(|| -> Result<Sent> {
                enter_and_pin(lab, config.cpu)?;
                let socket = PacketSocket::open(self.ns_ifindex).map_err(|source| {
                    LiveGenError::PacketSocket {
                        iface: lab.ns_if.clone(),
                        source,
                    }
                })?;
                send_requests(&socket, cases, config.requests, config.rate, stop)
                    .map_err(LiveGenError::PacketSend)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })?;
        Ok((Some(sent.sent), sent.first_sent_ns))
    }
}

/// Moves the calling thread into the lab's namespace and onto `cpu`.
fn enter_and_pin(lab: &NetLab, cpu: Option<usize>) -> Result<()> {
    lab.enter()?;
    if let Some(cpu) = cpu {
        crate::sys::pin_to_cpu(cpu).map_err(|source| LiveGenError::Pin { cpu, source })?;
    }
    Ok(())
}

/// A no-op SIGUSR1 handler: the signal only has to interrupt the generator's system call
/// (without a handler it would end the process).
fn install_wakeup_handler() -> Result<()> {
    extern "C" fn ignore(_: libc::c_int) {}
    // SAFETY: sigaction with a zeroed struct, an empty mask and a handler that does nothing.
    let r = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut())
    };
    if r != 0 {
        return Err(LiveGenError::SignalHandler(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Sends SIGUSR1 to thread `tid` of this process (0: not started yet, nothing to do).
fn wake_up(tid: i32) {
    if tid != 0 {
        // SAFETY: tgkill to a thread of this process, whose SIGUSR1 handler does nothing.
        unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR1) };
    }
}

fn replies_program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    Ok(ebpf
        .program_mut(PROG_REPLIES)
        .ok_or(LiveGenError::MissingProgram(PROG_REPLIES))?
        .try_into()?)
}

/// Where the generator's frames go.
struct FrameAddrs {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    port: u16,
}

/// An Ethernet + IPv4 + UDP frame carrying `payload`. The UDP checksum is 0 ("none", legal
/// over IPv4), so the generator may change the payload without recomputing it.
fn request_frame(a: &FrameAddrs, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(PAYLOAD_OFFSET + payload.len());
    f.extend_from_slice(&a.dst_mac);
    f.extend_from_slice(&a.src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&a.src.octets());
    ip[16..20].copy_from_slice(&a.dst.octets());
    let sum = ip
        .chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&SOURCE_PORT.to_be_bytes());
    f.extend_from_slice(&a.port.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// The hardware address of `iface` in the calling thread's namespace.
fn mac_of(iface: &str) -> Result<[u8; 6]> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").map_err(LiveGenError::Socket)?;
    // SAFETY: ifreq is a plain C struct; zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if iface.len() >= req.ifr_name.len() {
        return Err(LiveGenError::IfaceTooLong(iface.to_string()));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills the ifreq we pass on a valid socket.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SIOCGIFHWADDR,
            &mut req,
        )
    };
    if r != 0 {
        return Err(LiveGenError::Mac {
            iface: iface.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: SIOCGIFHWADDR set the hwaddr member of the union.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    Ok(std::array::from_fn(|i| data[i] as u8))
}

/// The index of `iface` in the calling thread's namespace.
fn ifindex_of(iface: &str) -> Result<u32> {
    let name = std::ffi::CString::new(iface).map_err(LiveGenError::IfaceNul)?;
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(LiveGenError::Ifindex {
            iface: iface.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(index)
}
