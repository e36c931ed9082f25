//! `npk bench serve`: the kernel server and the userspace server (both I/O styles) under the
//! same load over a veth pair made for the run; optionally one more run per server with
//! `strace -c -f` attached once it serves, to count its system calls per request.
//!
//! Servers run as child processes (`npk serve ...`), so that strace sees exactly one server;
//! the client runs in this process with its sockets inside the lab's namespace. Every exit
//! path (errors, Ctrl-C, SIGTERM) stops the children and deletes the lab.
//!
//! Here: the runs of every mode and the summary; `children` starts and stops the servers,
//! `strace` counts their system calls, `livegen` is the in-kernel load generator, `capacity`
//! searches the rate a server sustains, `pinning` places the work on CPUs.

mod capacity;
mod children;
pub mod livegen;
pub mod packet_sender;
mod pinning;
pub mod strace;

use std::{
    io,
    path::PathBuf,
    process::ExitStatus,
    sync::atomic::{AtomicBool, Ordering},
};

use npk_common::model::Model;
use serde::Serialize;

pub use capacity::{LOSS_TOLERANCE, Trial};
use children::ServerChild;
use livegen::{GenConfig, LiveGen, LiveGenError, Sender};
pub use pinning::Pin;
use strace::{StraceError, SyscallTable};

use crate::{
    kernel::BpfStats,
    netlab::{NetLab, NetLabError},
    serve::{
        ServeError, ServerEvent, XdpAttach,
        client::{self, ClientConfig, ClientReport},
        user::IoStyle,
    },
    sys,
};

/// What failed in `npk bench serve`: the lab, the generator, a server child, strace, the
/// capacity search.
#[derive(Debug, thiserror::Error)]
pub enum ServeBenchError {
    #[error("creating the veth pair and namespace")]
    CreateLab(#[source] NetLabError),
    #[error(transparent)]
    NetLab(#[from] NetLabError),
    #[error("pinning to CPU {cpu}")]
    Pin {
        cpu: usize,
        #[source]
        source: io::Error,
    },
    #[error("loading the in-kernel load generator")]
    LoadGenerator(#[source] LiveGenError),
    #[error(transparent)]
    LiveGen(#[from] LiveGenError),
    #[error("benchmarking the {} server", mode.name())]
    Mode {
        mode: Mode,
        #[source]
        source: Box<ServeBenchError>,
    },
    #[error("benchmarking the {} server under strace", mode.name())]
    TracedMode {
        mode: Mode,
        #[source]
        source: Box<ServeBenchError>,
    },
    #[error("no kernel generator loaded")]
    NoGenerator,
    #[error("the capacity search needs the kernel or packet generator")]
    CapacityNeedsKernelGenerator,
    #[error("creating the client sockets in the namespace")]
    ClientSockets(#[source] io::Error),
    #[error(transparent)]
    Client(#[from] ServeError),
    #[error("interrupted")]
    Interrupted,
    #[error("starting {}", exe.display())]
    StartServer {
        exe: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no {0} pipe")]
    NoPipe(&'static str),
    #[error("waiting for the server")]
    WaitServer(#[source] io::Error),
    #[error("the server exited before serving ({0}); its error is above")]
    ExitedBeforeServing(ExitStatus),
    #[error("the server did not report ready within {seconds} s")]
    NotReady { seconds: u64 },
    #[error("the server ended ({0}) without its counters")]
    NoCounters(ExitStatus),
    #[error("starting strace (is it installed?)")]
    StartStrace(#[source] io::Error),
    #[error("strace did not attach to the server (pid {pid})")]
    StraceNotAttached { pid: u32 },
    #[error("waiting for strace")]
    WaitStrace(#[source] io::Error),
    #[error("strace did not finish after the server exited")]
    StraceUnfinished,
    #[error("reading strace's summary {}", path.display())]
    ReadStraceSummary {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parsing {}", path.display())]
    ParseStraceSummary {
        path: PathBuf,
        #[source]
        source: StraceError,
    },
    #[error("{iface} has no NAPI thread (threaded NAPI off, or no XDP program attached)")]
    NoNapiThread { iface: String },
    #[error("pinning NAPI thread {tid} of {iface} to CPU {cpu}")]
    PinNapiThread {
        tid: i32,
        iface: String,
        cpu: usize,
        #[source]
        source: io::Error,
    },
    #[error("making NAPI thread {tid} of {iface} real-time")]
    RealtimeNapiThread {
        tid: i32,
        iface: String,
        #[source]
        source: io::Error,
    },
    #[error("reading /proc/stat")]
    ProcStat(#[source] io::Error),
    #[error("the server lost requests even at {rps:.0} requests/s")]
    NoCapacity { rps: f64 },
}

type Result<T, E = ServeBenchError> = std::result::Result<T, E>;

/// Niceness of the benchmark and its servers (see [`run`]).
const BENCH_NICE: i32 = -10;

/// Which server a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Kernel,
    UserPlain,
    UserMmsg,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::UserPlain => "user-plain",
            Self::UserMmsg => "user-mmsg",
        }
    }

    /// The userspace server's I/O style (`None`: the kernel server).
    fn io(self) -> Option<IoStyle> {
        match self {
            Self::Kernel => None,
            Self::UserPlain => Some(IoStyle::Plain),
            Self::UserMmsg => Some(IoStyle::Mmsg),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Padding and width flags apply (the report's columns).
        f.pad(self.name())
    }
}

/// What sends the requests and checks the replies. `kernel` and `packet` share the reply
/// counter (npk_replies, XDP on the namespace end: every reply checked and timed in the
/// kernel) and the pacing; without a rate, each server's capacity is searched for (the
/// highest rate it answers with at most LOSS_TOLERANCE lost) and the timed run is offered
/// that rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Generator {
    /// `kernel` where the kernel takes BPF_PROG_TEST_RUN live frames (probed once),
    /// `packet` where it refuses them.
    #[default]
    Auto,
    /// npk_loadgen under BPF_PROG_TEST_RUN live frames: no socket and no system call per
    /// request.
    Kernel,
    /// The same frames and pacing sent from userspace through an AF_PACKET socket in the
    /// namespace: one sendmmsg per train of 32 requests, on the client's CPU.
    Packet,
    /// `npk client`'s UDP sockets (client::run): costs the socket stack per request on the
    /// same CPUs as the servers.
    Socket,
}

impl Generator {
    /// Whether the requests are frames counted by npk_replies (`kernel`, `packet`, `auto`)
    /// rather than `npk client`'s sockets.
    pub fn counts_in_kernel(self) -> bool {
        self != Self::Socket
    }

    /// The frame sender it names (`None`: probe).
    fn sender(self) -> Option<Sender> {
        match self {
            Self::Kernel => Some(Sender::LiveFrames),
            Self::Packet => Some(Sender::PacketSocket),
            Self::Auto | Self::Socket => None,
        }
    }

    fn of_sender(sender: Sender) -> Self {
        match sender {
            Sender::LiveFrames => Self::Kernel,
            Sender::PacketSocket => Self::Packet,
        }
    }
}

#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub generator: Generator,
    /// The npk binary that runs the servers.
    pub exe: PathBuf,
    /// `npk serve` arguments that rebuild `model` in the server.
    pub model_args: Vec<String>,
    pub requests: u64,
    /// Offered load in requests/s (`None`: as fast as replies come back).
    pub rate: Option<f64>,
    pub window: usize,
    pub threads: usize,
    pub batch: usize,
    /// Native also attaches the program to the namespace's veth end so that XDP_TX frames
    /// are accepted there.
    pub xdp_mode: XdpAttach,
    pub strace: bool,
    /// Requests of the traced runs (strace slows a server down by an order of magnitude).
    pub strace_requests: u64,
    pub port: u16,
    pub modes: Vec<Mode>,
    /// Timed runs per mode (the median is kept).
    pub rounds: usize,
    /// CPUs of the client and the server side, or `None` to let the scheduler choose.
    pub pin: Option<Pin>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModeRun {
    pub mode: Mode,
    /// The timed run (no tracing).
    pub client: ClientReport,
    pub server: ServerEvent,
    /// The rate the timed run was offered (kernel generator; `None`: as fast as replies come
    /// back, or flat out).
    pub offered_rps: Option<f64>,
    /// Busy time of the server's CPU per reply in the timed run: everything that ran there
    /// (NAPI thread, XDP program, the stack, the server process), so kernel and userspace
    /// servers compare on one footing (kernel generator, pinned).
    pub server_cpu_ns_per_request: Option<f64>,
    /// The capacity search's trials before the timed run (kernel generator, no --rate).
    pub trials: Vec<Trial>,
    /// The second, traced run (--strace): its replies are checked too, its speed is strace's.
    pub traced_client: Option<ClientReport>,
    /// strace's table of the traced run.
    pub syscalls: Option<SyscallTable>,
    /// Server process system calls while serving per request it saw, in the traced run.
    pub syscalls_per_request: Option<f64>,
}

/// The load of a run.
#[derive(Clone, Copy, Debug)]
enum Load {
    /// At this rate (`None`: as fast as replies come back, or flat out).
    Rate(Option<f64>),
    /// At the capacity found by a search first (kernel generator).
    Capacity,
}

/// The benchmark's one-line result (user_* is the userspace mode with the most requests/s).
#[derive(Clone, Debug, Default, Serialize)]
pub struct BenchSummary {
    pub kernel_rps: f64,
    pub user_rps: f64,
    pub kernel_p50_us: f64,
    pub kernel_p99_us: f64,
    pub user_p50_us: f64,
    pub user_p99_us: f64,
    pub user_syscalls_per_request: Option<f64>,
    pub kernel_server_syscalls_per_request: Option<f64>,
    /// The rates the timed runs were offered (kernel generator: the capacities found).
    pub kernel_offered_rps: Option<f64>,
    pub user_offered_rps: Option<f64>,
    /// Busy time of the server's CPU per reply (kernel generator, pinned).
    pub kernel_server_cpu_ns_per_request: Option<f64>,
    pub user_server_cpu_ns_per_request: Option<f64>,
    pub mismatches: u64,
    pub lost: u64,
    /// The best userspace mode's name (empty without one).
    pub user_mode: String,
    pub xdp_mode: XdpAttach,
    /// The generator that ran (`auto` resolved).
    pub generator: Generator,
    /// Why `auto` did not use live frames (the kernel's refusal), when it fell back.
    pub generator_fallback: Option<String>,
}

/// Runs every configured mode `rounds` times, interleaved (the machine's load drifts), keeps
/// each mode's median run by requests/s, then (--strace) one traced run per mode. `on_mode`
/// sees each mode's result (for progress output).
pub fn run(
    config: &BenchConfig,
    model: &Model,
    stop: &AtomicBool,
    mut on_mode: impl FnMut(&ModeRun),
) -> Result<(Vec<ModeRun>, BenchSummary)> {
    // The kernel's run-time accounting (a global switch other tools and `npk attach --pin`
    // turn on) reads the clock twice around every BPF program run, the generator's and the
    // counter's included: a paravirtual clock read in a VM, a quarter of the generator's CPU.
    // Off while the benchmark runs, restored after.
    let _stats_off = BpfStats::off();
    let lab = NetLab::create(1).map_err(ServeBenchError::CreateLab)?;
    if let Some(pin) = config.pin {
        // This process (the generator's driver, the counter reads) stays off the server's CPU.
        sys::pin_to_cpu(pin.client).map_err(|source| ServeBenchError::Pin {
            cpu: pin.client,
            source,
        })?;
        // Requests are processed (XDP, or the stack up to the userspace server's socket) on
        // the server's CPU, replies on the client's.
        lab.steer_receive(1 << pin.server, 1 << pin.client)?;
    }
    // Other work on the machine preempts the userspace server and client but not the XDP
    // program (softirq): a higher priority keeps the comparison fair. Children inherit it.
    // Best effort, as before: without the privilege the run is only less fair.
    let _ = sys::set_nice(BENCH_NICE);
    let livegen = match config.generator {
        Generator::Socket => None,
        generator => Some(
            LiveGen::load(
                &lab,
                model,
                &gen_config(config, config.requests, None),
                generator.sender(),
            )
            .map_err(ServeBenchError::LoadGenerator)?,
        ),
    };
    let generator = livegen
        .as_ref()
        .map_or(Generator::Socket, |g| Generator::of_sender(g.sender()));
    let generator_fallback = livegen
        .as_ref()
        .and_then(|g| g.fallback().map(str::to_string));
    let mut bench = Bench {
        config,
        model,
        lab: &lab,
        livegen,
        stop,
    };
    let load = match (generator, config.rate) {
        (Generator::Kernel | Generator::Packet, None) => Load::Capacity,
        (_, rate) => Load::Rate(rate),
    };
    let mut timed: Vec<Vec<ModeRun>> = config.modes.iter().map(|_| Vec::new()).collect();
    let mut mismatches = 0;
    let mut lost = 0;
    for _ in 0..config.rounds.max(1) {
        for (i, &mode) in config.modes.iter().enumerate() {
            let m = bench
                .run_mode(mode, load, false)
                .map_err(|e| ServeBenchError::Mode {
                    mode,
                    source: Box::new(e),
                })?;
            mismatches += m.client.mismatches + m.trials_mismatches();
            lost += m.client.lost;
            timed[i].push(m);
        }
    }
    let mut runs = Vec::new();
    for (&mode, mut results) in config.modes.iter().zip(timed) {
        results.sort_by(|a, b| a.client.rps.total_cmp(&b.client.rps));
        let mut run = results.swap_remove(results.len() / 2);
        // ptrace stops the server at every system call: count them in a separate run so
        // that the timed runs are not slowed down. The kernel generator offers the timed
        // run's rate (flat out, a traced server would see mostly drops).
        if config.strace {
            let load = match load {
                Load::Capacity => Load::Rate(run.offered_rps),
                rate => rate,
            };
            let m = bench
                .run_mode(mode, load, true)
                .map_err(|e| ServeBenchError::TracedMode {
                    mode,
                    source: Box::new(e),
                })?;
            mismatches += m.client.mismatches;
            run.syscalls_per_request = m
                .syscalls
                .as_ref()
                .filter(|_| m.server.requests > 0)
                .map(|t| t.total_calls as f64 / m.server.requests as f64);
            run.syscalls = m.syscalls;
            run.traced_client = Some(m.client);
        }
        on_mode(&run);
        runs.push(run);
    }
    // The generator's programs go before the lab's interfaces.
    drop(bench);
    drop(lab);
    let mut summary = BenchSummary {
        xdp_mode: config.xdp_mode,
        generator,
        generator_fallback,
        mismatches,
        lost,
        ..BenchSummary::default()
    };
    if let Some(k) = runs.iter().find(|r| r.mode == Mode::Kernel) {
        summary.kernel_rps = k.client.rps;
        summary.kernel_p50_us = k.client.p50_us;
        summary.kernel_p99_us = k.client.p99_us;
        summary.kernel_server_syscalls_per_request = k.syscalls_per_request;
        summary.kernel_offered_rps = k.offered_rps;
        summary.kernel_server_cpu_ns_per_request = k.server_cpu_ns_per_request;
    }
    let best_user = runs
        .iter()
        .filter(|r| r.mode != Mode::Kernel)
        .max_by(|a, b| a.client.rps.total_cmp(&b.client.rps));
    if let Some(u) = best_user {
        summary.user_rps = u.client.rps;
        summary.user_p50_us = u.client.p50_us;
        summary.user_p99_us = u.client.p99_us;
        summary.user_syscalls_per_request = u.syscalls_per_request;
        summary.user_offered_rps = u.offered_rps;
        summary.user_server_cpu_ns_per_request = u.server_cpu_ns_per_request;
        summary.user_mode = u.mode.name().to_string();
    }
    Ok((runs, summary))
}

/// The kernel generator's settings for a run of `requests` at `rate`.
fn gen_config(config: &BenchConfig, requests: u64, rate: Option<f64>) -> GenConfig {
    GenConfig {
        port: config.port,
        requests,
        rate,
        cases: npk_common::service::loadgen::MAX_CASES,
        seed: 1,
        cpu: config.pin.map(|p| p.client),
    }
}

impl ModeRun {
    fn trials_mismatches(&self) -> u64 {
        self.trials.iter().map(|t| t.mismatches).sum()
    }
}

/// What every run of one benchmark shares.
struct Bench<'a> {
    config: &'a BenchConfig,
    model: &'a Model,
    lab: &'a NetLab,
    /// The kernel generator (`None`: the socket client).
    livegen: Option<LiveGen>,
    stop: &'a AtomicBool,
}

impl Bench<'_> {
    /// One run of a server as a ModeRun; `syscalls` is strace's table when `traced`.
    fn run_mode(&mut self, mode: Mode, load: Load, traced: bool) -> Result<ModeRun> {
        let (config, lab) = (self.config, self.lab);
        let trace_file = traced.then(|| {
            std::env::temp_dir().join(format!(
                "npk-strace-{}-{}.txt",
                std::process::id(),
                mode.name()
            ))
        });
        if let Some(livegen) = self.livegen.as_mut() {
            // Before the server starts: the kernel server attaches to the host end itself.
            livegen.set_host_pass(lab, mode != Mode::Kernel)?;
        }
        let mut server = ServerChild::spawn(&config.exe, &self.server_args(mode))?;
        server.wait_ready(self.stop)?;
        if let Some(file) = &trace_file {
            server.trace(file)?;
        }
        let requests = if traced {
            config.strace_requests
        } else {
            config.requests
        };
        let measured = if self.livegen.is_some() {
            self.offer_from_kernel(load, requests)?
        } else {
            self.offer_from_sockets(load, requests)?
        };
        let (server, syscalls) = server.stop()?;
        Ok(ModeRun {
            mode,
            client: measured.client,
            server,
            offered_rps: measured.offered_rps,
            server_cpu_ns_per_request: measured.server_cpu_ns_per_request,
            trials: measured.trials,
            traced_client: None,
            syscalls,
            syscalls_per_request: None,
        })
    }

    /// The `npk serve` command line of `mode`'s server.
    fn server_args(&self, mode: Mode) -> Vec<String> {
        let (config, lab) = (self.config, self.lab);
        let port = config.port.to_string();
        let mut args: Vec<String> = vec!["serve".into(), "--json".into(), "--port".into(), port];
        match mode {
            Mode::Kernel => {
                args.extend(["--kernel".into(), lab.host_if.clone()]);
                args.extend(["--xdp-mode".into(), config.xdp_mode.name().into()]);
                if self.livegen.is_some() && config.pin.is_some() {
                    // The server CPU's busy time is measured instead, as for the userspace one.
                    args.push("--no-run-time".into());
                }
                // The kernel generator's counter is the namespace end's XDP program.
                if config.xdp_mode == XdpAttach::Native && self.livegen.is_none() {
                    args.extend(["--peer".into(), format!("{}:{}", lab.netns, lab.ns_if)]);
                }
            }
            Mode::UserPlain | Mode::UserMmsg => {
                args.extend(["--user".into(), "--bind".into(), lab.host_addr.to_string()]);
            }
        }
        if let Some(io) = mode.io() {
            args.extend(["--io".into(), io.name().into()]);
            args.extend(["--batch".into(), config.batch.to_string()]);
        }
        if let Some(pin) = config.pin {
            args.extend(["--cpu".into(), pin.server.to_string()]);
        }
        args.extend(config.model_args.iter().cloned());
        args
    }

    /// The load from the kernel generator, at a rate or at the capacity searched for first,
    /// with the server CPU's busy time per reply when it has a CPU of its own.
    fn offer_from_kernel(&mut self, load: Load, requests: u64) -> Result<Measured> {
        let Self {
            config,
            lab,
            ref mut livegen,
            stop,
            ..
        } = *self;
        let livegen = livegen.as_mut().ok_or(ServeBenchError::NoGenerator)?;
        if let Some(pin) = config.pin {
            pinning::pin_napi_threads(lab, pin)?;
        }
        let timed = |livegen: &mut LiveGen, rate: Option<f64>| {
            pinning::server_cpu_per_reply(
                config.pin,
                || Ok(livegen.run(lab, &gen_config(config, requests, rate), stop)?),
                |client| client.replies,
            )
        };
        Ok(match load {
            Load::Rate(rate) => {
                let (client, cpu) = timed(livegen, rate)?;
                Measured {
                    client,
                    offered_rps: rate,
                    server_cpu_ns_per_request: cpu,
                    trials: Vec::new(),
                }
            }
            Load::Capacity => {
                let (rate, trials) = capacity::find_capacity(|requests, rate| {
                    Ok(livegen.run(lab, &gen_config(config, requests, Some(rate)), stop)?)
                })?;
                let (client, cpu, rate, trials) =
                    capacity::confirm(rate, requests, trials, |rate| timed(livegen, Some(rate)))?;
                Measured {
                    client,
                    offered_rps: Some(rate),
                    server_cpu_ns_per_request: cpu,
                    trials,
                }
            }
        })
    }

    /// The load from `npk client`'s sockets inside the lab's namespace.
    fn offer_from_sockets(&self, load: Load, requests: u64) -> Result<Measured> {
        let (config, lab, stop) = (self.config, self.lab, self.stop);
        let target = (lab.host_addr, config.port).into();
        let mut client_config = ClientConfig::new(target);
        client_config.requests = Some(requests);
        let Load::Rate(rate) = load else {
            return Err(ServeBenchError::CapacityNeedsKernelGenerator);
        };
        client_config.rate = rate;
        client_config.window = config.window;
        client_config.cpu = config.pin.map(|p| p.client);
        let sockets = lab
            .in_netns(|| client::connect_sockets(target, config.threads))?
            .map_err(ServeBenchError::ClientSockets)?;
        let client = client::run(&client_config, self.model, sockets, stop)?;
        if stop.load(Ordering::Relaxed) {
            return Err(ServeBenchError::Interrupted);
        }
        Ok(Measured {
            client,
            offered_rps: rate,
            server_cpu_ns_per_request: None,
            trials: Vec::new(),
        })
    }
}

/// What the load side measured of one run.
struct Measured {
    client: ClientReport,
    offered_rps: Option<f64>,
    server_cpu_ns_per_request: Option<f64>,
    trials: Vec<Trial>,
}
