//! `npk bench serve`: the kernel server and the userspace server (both I/O styles) under the
//! same load over a veth pair made for the run; optionally each server process under
//! `strace -c` to count its system calls per request.
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
    strace::{self, SyscallTable},
};
use crate::netlab::NetLab;

/// Loading and verifying the program can take a while on a busy machine.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

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

#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// The npk binary that runs the servers.
    pub exe: PathBuf,
    /// `npk serve` arguments that rebuild `model` in the server.
    pub model_args: Vec<String>,
    pub requests: u64,
    pub window: usize,
    pub threads: usize,
    pub batch: usize,
    /// `skb` or `native`; native also attaches the program to the namespace's veth end so
    /// that XDP_TX frames are accepted there.
    pub xdp_mode: String,
    pub strace: bool,
    pub port: u16,
    pub modes: Vec<Mode>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModeRun {
    pub mode: &'static str,
    pub client: ClientReport,
    pub server: ServerEvent,
    pub syscalls: Option<SyscallTable>,
    /// Server process system calls (startup included) per request it saw.
    pub syscalls_per_request: Option<f64>,
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
    pub mismatches: u64,
    pub lost: u64,
    pub user_mode: String,
    pub xdp_mode: String,
}

/// Runs every configured mode in turn. `on_mode` sees each finished run (for progress output).
pub fn run(
    config: &BenchConfig,
    model: &Model,
    stop: &AtomicBool,
    mut on_mode: impl FnMut(&ModeRun),
) -> Result<(Vec<ModeRun>, BenchSummary)> {
    let lab = NetLab::create().context("creating the veth pair and namespace")?;
    let mut runs = Vec::new();
    for &mode in &config.modes {
        let run = run_mode(config, model, &lab, mode, stop)
            .with_context(|| format!("benchmarking the {} server", mode.name()))?;
        on_mode(&run);
        runs.push(run);
    }
    drop(lab);
    let mut summary = BenchSummary {
        xdp_mode: config.xdp_mode.clone(),
        ..BenchSummary::default()
    };
    for r in &runs {
        summary.mismatches += r.client.mismatches;
        summary.lost += r.client.lost;
    }
    if let Some(k) = runs.iter().find(|r| r.mode == Mode::Kernel.name()) {
        summary.kernel_rps = k.client.rps;
        summary.kernel_p50_us = k.client.p50_us;
        summary.kernel_p99_us = k.client.p99_us;
        summary.kernel_server_syscalls_per_request = k.syscalls_per_request;
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
        summary.user_mode = u.mode.to_string();
    }
    Ok((runs, summary))
}

fn run_mode(
    config: &BenchConfig,
    model: &Model,
    lab: &NetLab,
    mode: Mode,
    stop: &AtomicBool,
) -> Result<ModeRun> {
    let port = config.port.to_string();
    let mut args: Vec<String> = vec!["serve".into(), "--json".into(), "--port".into(), port];
    match mode {
        Mode::Kernel => {
            args.extend(["--kernel".into(), lab.host_if.clone()]);
            args.extend(["--xdp-mode".into(), config.xdp_mode.clone()]);
            if config.xdp_mode == "native" {
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
    args.extend(config.model_args.iter().cloned());
    let trace_file = config.strace.then(|| {
        std::env::temp_dir().join(format!(
            "npk-strace-{}-{}.txt",
            std::process::id(),
            mode.name()
        ))
    });
    let mut server = ServerChild::spawn(&config.exe, &args, trace_file.as_deref())?;
    server.wait_ready(stop)?;

    let target = (lab.host_addr, config.port).into();
    let mut client_config = ClientConfig::new(target);
    client_config.requests = Some(config.requests);
    client_config.window = config.window;
    let sockets = lab
        .in_netns(|| client::connect_sockets(target, config.threads))?
        .context("creating the client sockets in the namespace")?;
    let report = client::run(&client_config, model, sockets, stop)?;
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    let (stopped, syscalls) = server.stop()?;
    let syscalls_per_request = syscalls
        .as_ref()
        .filter(|_| stopped.requests > 0)
        .map(|t| t.total_calls as f64 / stopped.requests as f64);
    Ok(ModeRun {
        mode: mode.name(),
        client: report,
        server: stopped,
        syscalls,
        syscalls_per_request,
    })
}

/// A server process (under strace or not), stopped and reaped on drop.
struct ServerChild {
    child: Child,
    /// The npk process itself (strace's child when traced): the one to signal.
    server_pid: Option<u32>,
    lines: mpsc::Receiver<String>,
    trace_file: Option<PathBuf>,
}

impl ServerChild {
    fn spawn(exe: &Path, args: &[String], trace_file: Option<&Path>) -> Result<Self> {
        let mut command = match trace_file {
            Some(file) => {
                let mut c = Command::new("strace");
                c.args(["-c", "-f", "-o"]).arg(file).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {}{}",
                    if trace_file.is_some() { "strace " } else { "" },
                    exe.display()
                )
            })?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            server_pid: None,
            lines,
            trace_file: trace_file.map(Path::to_path_buf),
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
                        self.server_pid = Some(e.pid);
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
        let syscalls = match &self.trace_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading strace's summary {}", path.display()))?;
                Some(strace::parse(&text).with_context(|| format!("parsing {}", path.display()))?)
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
        let pid = self.server_pid.unwrap_or(self.child.id());
        // SAFETY: signals a process this struct started (or strace's child of it).
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < EXIT_TIMEOUT {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        self.terminate();
        let _ = self.child.wait();
        if let Some(f) = &self.trace_file {
            let _ = std::fs::remove_file(f);
        }
    }
}
