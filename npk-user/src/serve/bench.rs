//! `npk bench serve`: the kernel server and the userspace server (both I/O styles) under the
//! same load over a veth pair made for the run; optionally one more run per server with
//! `strace -c -f` attached once it serves, to count its system calls per request.
//!
//! Servers run as child processes (`npk serve ...`), so that strace sees exactly one server;
//! the client runs in this process with its sockets inside the lab's namespace. Every exit
//! path (errors, Ctrl-C, SIGTERM) stops the children and deletes the lab.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use npk_common::model::Model;
use serde::Serialize;

use super::{
    ServerEvent,
    client::{self, ClientConfig, ClientReport},
    livegen::{GenConfig, LiveGen},
    strace::{self, SyscallTable},
};
use crate::{kernel::BpfStats, netlab::NetLab, sys};

/// Loading and verifying the program can take a while on a busy machine.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Niceness of the benchmark and its servers (see [`run`]).
const BENCH_NICE: i32 = -10;
/// The capacity search (kernel generator): trials of half a second's requests (at least
/// TRIAL_MIN_REQUESTS), doubling the offered rate from SEARCH_START_RPS until a trial fails,
/// then bisecting until the bounds are SEARCH_PRECISION apart.
const TRIAL_SECONDS: f64 = 0.5;
const TRIAL_MIN_REQUESTS: u64 = 20_000;
const SEARCH_START_RPS: f64 = 50_000.0;
const SEARCH_PRECISION: f64 = 0.02;
const SEARCH_MAX_RPS: f64 = 50e6;
const SEARCH_MIN_RPS: f64 = 1_000.0;
/// A trial passes when at most this fraction of its requests goes unanswered and the replies
/// keep up with the offered rate (RFC 2544's throughput, with a tolerance for the odd drop).
pub const LOSS_TOLERANCE: f64 = 0.001;
const KEEP_UP: f64 = 0.97;
/// Timed runs at the capacity found, each offered CONFIRM_STEP of the last one's rate.
const CONFIRM_ATTEMPTS: usize = 5;
const CONFIRM_STEP: f64 = 0.9;
/// SCHED_FIFO priority of the lab's NAPI threads (see [`pin_napi_threads`]).
const NAPI_PRIORITY: i32 = 50;

/// Which server a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// What sends the requests and checks the replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generator {
    /// `npk client`'s UDP sockets (client::run): costs the socket stack per request on the
    /// same CPUs as the servers.
    Socket,
    /// npk_loadgen under BPF_PROG_TEST_RUN live frames and the npk_replies counter
    /// (livegen): no socket and no system call per request. Without a rate, each server's
    /// capacity is searched for (the highest rate it answers with at most LOSS_TOLERANCE
    /// lost) and the timed run is offered that rate.
    Kernel,
}

impl Generator {
    pub fn name(self) -> &'static str {
        match self {
            Self::Socket => "socket",
            Self::Kernel => "kernel",
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
    /// `skb` or `native`; native also attaches the program to the namespace's veth end so
    /// that XDP_TX frames are accepted there.
    pub xdp_mode: String,
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

/// Which CPU does what (see [`NetLab::steer_receive`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    pub client: usize,
    pub server: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModeRun {
    pub mode: &'static str,
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

/// One trial of the capacity search.
#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    pub offered_rps: f64,
    pub rps: f64,
    pub sent: u64,
    pub lost: u64,
    pub mismatches: u64,
    pub passed: bool,
}

impl Trial {
    /// Judges a run of `requests` offered at `rate`.
    fn new(rate: f64, requests: u64, r: &ClientReport) -> Self {
        Self {
            offered_rps: rate,
            rps: r.rps,
            sent: r.sent,
            lost: r.lost,
            mismatches: r.mismatches,
            passed: r.sent == requests
                && r.lost as f64 <= LOSS_TOLERANCE * r.sent as f64
                && r.rps >= KEEP_UP * rate,
        }
    }
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
    pub user_mode: String,
    pub xdp_mode: String,
    pub generator: String,
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
    let lab = NetLab::create(1).context("creating the veth pair and namespace")?;
    if let Some(pin) = config.pin {
        // This process (the generator's driver, the counter reads) stays off the server's CPU.
        sys::pin_to_cpu(pin.client).with_context(|| format!("pinning to CPU {}", pin.client))?;
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
        Generator::Kernel => Some(
            LiveGen::load(&lab, model, &gen_config(config, config.requests, None))
                .context("loading the in-kernel load generator")?,
        ),
    };
    let mut bench = Bench {
        config,
        model,
        lab: &lab,
        livegen,
        stop,
    };
    let load = match (config.generator, config.rate) {
        (Generator::Kernel, None) => Load::Capacity,
        (_, rate) => Load::Rate(rate),
    };
    let mut timed: Vec<Vec<ModeRun>> = config.modes.iter().map(|_| Vec::new()).collect();
    let mut mismatches = 0;
    let mut lost = 0;
    for _ in 0..config.rounds.max(1) {
        for (i, &mode) in config.modes.iter().enumerate() {
            let m = bench
                .run_mode(mode, load, false)
                .with_context(|| format!("benchmarking the {} server", mode.name()))?;
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
                .with_context(|| format!("benchmarking the {} server under strace", mode.name()))?;
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
        xdp_mode: config.xdp_mode.clone(),
        generator: config.generator.name().to_string(),
        mismatches,
        lost,
        ..BenchSummary::default()
    };
    if let Some(k) = runs.iter().find(|r| r.mode == Mode::Kernel.name()) {
        summary.kernel_rps = k.client.rps;
        summary.kernel_p50_us = k.client.p50_us;
        summary.kernel_p99_us = k.client.p99_us;
        summary.kernel_server_syscalls_per_request = k.syscalls_per_request;
        summary.kernel_offered_rps = k.offered_rps;
        summary.kernel_server_cpu_ns_per_request = k.server_cpu_ns_per_request;
    }
    let best_user = runs
        .iter()
        .filter(|r| r.mode != Mode::Kernel.name())
        .max_by(|a, b| a.client.rps.total_cmp(&b.client.rps));
    if let Some(u) = best_user {
        summary.user_rps = u.client.rps;
        summary.user_p50_us = u.client.p50_us;
        summary.user_p99_us = u.client.p99_us;
        summary.user_syscalls_per_request = u.syscalls_per_request;
        summary.user_offered_rps = u.offered_rps;
        summary.user_server_cpu_ns_per_request = u.server_cpu_ns_per_request;
        summary.user_mode = u.mode.to_string();
    }
    Ok((runs, summary))
}

/// The kernel generator's settings for a run of `requests` at `rate`.
fn gen_config(config: &BenchConfig, requests: u64, rate: Option<f64>) -> GenConfig {
    GenConfig {
        port: config.port,
        requests,
        rate,
        cases: npk_common::loadgen::MAX_CASES,
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
        let Self {
            config,
            model,
            lab,
            ref mut livegen,
            stop,
        } = *self;
        let port = config.port.to_string();
        let mut args: Vec<String> = vec!["serve".into(), "--json".into(), "--port".into(), port];
        match mode {
            Mode::Kernel => {
                args.extend(["--kernel".into(), lab.host_if.clone()]);
                args.extend(["--xdp-mode".into(), config.xdp_mode.clone()]);
                if livegen.is_some() && config.pin.is_some() {
                    // The server CPU's busy time is measured instead, as for the userspace one.
                    args.push("--no-run-time".into());
                }
                // The kernel generator's counter is the namespace end's XDP program.
                if config.xdp_mode == "native" && livegen.is_none() {
                    args.extend(["--peer".into(), format!("{}:{}", lab.netns, lab.ns_if)]);
                }
            }
            Mode::UserPlain | Mode::UserMmsg => {
                args.extend(["--user".into(), "--bind".into(), lab.host_addr.to_string()]);
                let io = if mode == Mode::UserPlain {
                    "plain"
                } else {
                    "mmsg"
                };
                args.extend(["--io".into(), io.into()]);
                args.extend(["--batch".into(), config.batch.to_string()]);
            }
        }
        if let Some(pin) = config.pin {
            args.extend(["--cpu".into(), pin.server.to_string()]);
        }
        args.extend(config.model_args.iter().cloned());
        let trace_file = traced.then(|| {
            std::env::temp_dir().join(format!(
                "npk-strace-{}-{}.txt",
                std::process::id(),
                mode.name()
            ))
        });
        if let Some(livegen) = livegen.as_mut() {
            // Before the server starts: the kernel server attaches to the host end itself.
            livegen.set_host_pass(lab, mode != Mode::Kernel)?;
        }
        let mut server = ServerChild::spawn(&config.exe, &args)?;
        server.wait_ready(stop)?;
        if let Some(file) = &trace_file {
            server.trace(file)?;
        }

        let requests = if traced {
            config.strace_requests
        } else {
            config.requests
        };
        if let Some(livegen) = livegen {
            if let Some(pin) = config.pin {
                pin_napi_threads(lab, pin)?;
            }
            // One run, with the server CPU's busy time per reply when it has a CPU of its own.
            let run = |livegen: &mut LiveGen,
                       rate: Option<f64>|
             -> Result<(ClientReport, Option<f64>)> {
                let busy = |pin: Option<Pin>| -> Result<Option<Duration>> {
                    pin.map(|p| sys::cpu_busy_time(p.server))
                        .transpose()
                        .context("reading /proc/stat")
                };
                let before = busy(config.pin)?;
                let client = livegen.run(lab, &gen_config(config, requests, rate), stop)?;
                let after = busy(config.pin)?;
                let per_request = before
                    .zip(after)
                    .filter(|_| client.replies > 0)
                    .map(|(b, a)| (a.saturating_sub(b)).as_nanos() as f64 / client.replies as f64);
                Ok((client, per_request))
            };
            let (client, rate, server_cpu, trials) = match load {
                Load::Rate(rate) => {
                    let (client, cpu) = run(livegen, rate)?;
                    (client, rate, cpu, Vec::new())
                }
                Load::Capacity => {
                    let (mut rate, mut trials) = find_capacity(config, lab, livegen, stop)?;
                    // The timed run is much longer than a trial: if the server does not sustain
                    // the rate found, offer CONFIRM_STEP of it, a few times at most.
                    let mut attempts = 1;
                    loop {
                        let (client, cpu) = run(livegen, Some(rate))?;
                        let trial = Trial::new(rate, requests, &client);
                        if trial.passed || attempts == CONFIRM_ATTEMPTS {
                            break (client, Some(rate), cpu, trials);
                        }
                        trials.push(trial);
                        rate *= CONFIRM_STEP;
                        attempts += 1;
                    }
                }
            };
            let (server, syscalls) = server.stop()?;
            return Ok(ModeRun {
                mode: mode.name(),
                client,
                server,
                offered_rps: rate,
                server_cpu_ns_per_request: server_cpu,
                trials,
                traced_client: None,
                syscalls,
                syscalls_per_request: None,
            });
        }
        let target = (lab.host_addr, config.port).into();
        let mut client_config = ClientConfig::new(target);
        client_config.requests = Some(requests);
        let Load::Rate(rate) = load else {
            bail!("the capacity search needs the kernel generator");
        };
        client_config.rate = rate;
        client_config.window = config.window;
        client_config.cpu = config.pin.map(|p| p.client);
        let sockets = lab
            .in_netns(|| client::connect_sockets(target, config.threads))?
            .context("creating the client sockets in the namespace")?;
        let client = client::run(&client_config, model, sockets, stop)?;
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let (server, syscalls) = server.stop()?;
        Ok(ModeRun {
            mode: mode.name(),
            client,
            server,
            offered_rps: rate,
            server_cpu_ns_per_request: None,
            trials: Vec::new(),
            traced_client: None,
            syscalls,
            syscalls_per_request: None,
        })
    }
}

/// Moves NAPI polling into threads and pins the host end's (the server side) to the
/// server's CPU and the namespace end's (the reply counter) to the client's, where the
/// generator spins. All get a real-time priority: the priority softirq work has over
/// processes when NAPI is not threaded (the Linux default), so the stack's receive path runs
/// ahead of a userspace server as it would on a NIC's interrupt; an ordinary priority would
/// also let the spinning generator delay the counter by a time slice (milliseconds, where a
/// veth ring holds 256 frames). veth makes its NAPI instances on XDP attach, so this runs
/// once the server is up.
fn pin_napi_threads(lab: &NetLab, pin: Pin) -> Result<()> {
    lab.thread_napi()?;
    let (host, ns) = lab.napi_threads()?;
    for (threads, iface, cpu) in [
        (host, &lab.host_if, pin.server),
        (ns, &lab.ns_if, pin.client),
    ] {
        if threads.is_empty() {
            bail!("{iface} has no NAPI thread (threaded NAPI off, or no XDP program attached)");
        }
        for tid in threads {
            sys::pin_thread(tid, cpu)
                .with_context(|| format!("pinning NAPI thread {tid} of {iface} to CPU {cpu}"))?;
            sys::make_realtime(tid, NAPI_PRIORITY)
                .with_context(|| format!("making NAPI thread {tid} of {iface} real-time"))?;
        }
    }
    Ok(())
}

/// The highest offered rate the running server answers with at most LOSS_TOLERANCE lost:
/// doubling from SEARCH_START_RPS until a trial fails, then bisecting.
fn find_capacity(
    config: &BenchConfig,
    lab: &NetLab,
    livegen: &mut LiveGen,
    stop: &AtomicBool,
) -> Result<(f64, Vec<Trial>)> {
    let mut trials = Vec::new();
    // A trial that fails is run once more: one hiccup of the VM's CPUs (a millisecond
    // overflows a veth ring) should not decide the capacity.
    let mut trial = |rate: f64| -> Result<bool> {
        let requests = ((rate * TRIAL_SECONDS) as u64).max(TRIAL_MIN_REQUESTS);
        for _ in 0..2 {
            let r = livegen.run(lab, &gen_config(config, requests, Some(rate)), stop)?;
            let trial = Trial::new(rate, requests, &r);
            let passed = trial.passed;
            trials.push(trial);
            if passed {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let (mut good, mut bad) = (0.0, SEARCH_START_RPS);
    while bad < SEARCH_MAX_RPS && trial(bad)? {
        good = bad;
        bad *= 2.0;
    }
    while bad - good > SEARCH_PRECISION * bad && bad > SEARCH_MIN_RPS {
        let mid = (good + bad) / 2.0;
        if trial(mid)? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    if good == 0.0 {
        bail!("the server lost requests even at {bad:.0} requests/s");
    }
    Ok((good, trials))
}

/// A server process, optionally traced once it serves; stopped and reaped on drop.
struct ServerChild {
    child: Child,
    lines: mpsc::Receiver<String>,
    tracer: Option<Tracer>,
}

/// `strace -c` attached to the serving process: it counts the serving phase only, not the
/// startup (loading and verifying the program alone takes thousands of calls).
struct Tracer {
    child: Child,
    file: PathBuf,
}

impl ServerChild {
    fn spawn(exe: &Path, args: &[String]) -> Result<Self> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        Ok(Self {
            child,
            lines: line_channel(stdout),
            tracer: None,
        })
    }

    fn wait_ready(&mut self, stop: &AtomicBool) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < READY_TIMEOUT {
            if stop.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Ok(e) = serde_json::from_str::<ServerEvent>(&line)
                        && e.event == "ready"
                    {
                        return Ok(());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    bail!("the server exited before serving ({status}); its error is above");
                }
            }
        }
        bail!(
            "the server did not report ready within {} s",
            READY_TIMEOUT.as_secs()
        )
    }

    /// Attaches `strace -c -f -o file` to the server and waits until it traces.
    fn trace(&mut self, file: &Path) -> Result<()> {
        let mut child = Command::new("strace")
            .args(["-c", "-f", "-o"])
            .arg(file)
            .arg("-p")
            .arg(self.child.id().to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting strace (is it installed?)")?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        self.tracer = Some(Tracer {
            child,
            file: file.to_path_buf(),
        });
        let lines = line_channel(stderr);
        let start = Instant::now();
        while start.elapsed() < EXIT_TIMEOUT {
            match lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains("attached") => {
                    // Keep draining strace's messages so that it never blocks on them.
                    std::thread::spawn(move || while lines.recv().is_ok() {});
                    return Ok(());
                }
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        bail!(
            "strace did not attach to the server (pid {})",
            self.child.id()
        )
    }

    /// SIGTERM to the server; returns its `stopped` line and, when traced, strace's table.
    fn stop(mut self) -> Result<(ServerEvent, Option<SyscallTable>)> {
        self.terminate();
        let status = self.child.wait().context("waiting for the server")?;
        let mut last = None;
        while let Ok(line) = self.lines.recv_timeout(EXIT_TIMEOUT) {
            if let Ok(e) = serde_json::from_str::<ServerEvent>(&line)
                && e.event == "stopped"
            {
                last = Some(e);
            }
        }
        let last =
            last.with_context(|| format!("the server ended ({status}) without its counters"))?;
        let syscalls = match &mut self.tracer {
            Some(t) => {
                // strace writes its table once the traced process is gone.
                let traced =
                    wait_timeout(&mut t.child, EXIT_TIMEOUT).context("waiting for strace")?;
                if !traced {
                    bail!("strace did not finish after the server exited");
                }
                let text = std::fs::read_to_string(&t.file)
                    .with_context(|| format!("reading strace's summary {}", t.file.display()))?;
                Some(
                    strace::parse(&text)
                        .with_context(|| format!("parsing {}", t.file.display()))?,
                )
            }
            None => None,
        };
        Ok((last, syscalls))
    }

    /// Asks the server to stop and gives it EXIT_TIMEOUT before killing it.
    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: signals the process this struct started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        if !wait_timeout(&mut self.child, EXIT_TIMEOUT).unwrap_or(false) {
            let _ = self.child.kill();
        }
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        self.terminate();
        let _ = self.child.wait();
        if let Some(t) = &mut self.tracer {
            if !wait_timeout(&mut t.child, EXIT_TIMEOUT).unwrap_or(false) {
                let _ = t.child.kill();
            }
            let _ = t.child.wait();
            let _ = std::fs::remove_file(&t.file);
        }
    }
}

/// Whether `child` exited within `timeout` (polled: std has no timed wait).
fn wait_timeout(child: &mut Child, timeout: Duration) -> std::io::Result<bool> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(false)
}

/// The lines of `pipe`, read on a thread.
fn line_channel(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}
