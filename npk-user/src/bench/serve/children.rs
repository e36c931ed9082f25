//! The servers under test as child processes (`npk serve --json ...`): started, awaited until
//! they report `ready`, stopped with SIGTERM for their `stopped` counters, reaped on drop.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use super::{
    Result, ServeBenchError,
    strace::{SyscallTable, Tracer},
};
use crate::serve::{ServerEvent, ServerEventKind};

/// Loading and verifying the program can take a while on a busy machine.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
pub(super) const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server process, optionally traced once it serves; stopped and reaped on drop.
pub(super) struct ServerChild {
    child: Child,
    lines: mpsc::Receiver<String>,
    tracer: Option<Tracer>,
}

impl ServerChild {
    pub(super) fn spawn(exe: &Path, args: &[String]) -> Result<Self> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|source| ServeBenchError::StartServer {
                exe: exe.to_path_buf(),
                source,
            })?;
        let stdout = child
            .stdout
            .take()
            .ok_or(ServeBenchError::NoPipe("stdout"))?;
        Ok(Self {
            child,
            lines: line_channel(stdout),
            tracer: None,
        })
    }

    pub(super) fn wait_ready(&mut self, stop: &AtomicBool) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < READY_TIMEOUT {
            if stop.load(Ordering::Relaxed) {
                return Err(ServeBenchError::Interrupted);
            }
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Ok(e) = serde_json::from_str::<ServerEvent>(&line)
                        && e.event == ServerEventKind::Ready
                    {
                        return Ok(());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map_err(ServeBenchError::WaitServer)?;
                    return Err(ServeBenchError::ExitedBeforeServing(status));
                }
            }
        }
        Err(ServeBenchError::NotReady {
            seconds: READY_TIMEOUT.as_secs(),
        })
    }

    /// Attaches `strace -c -f -o file` to the server (see [`Tracer`]).
    pub(super) fn trace(&mut self, file: &Path) -> Result<()> {
        self.tracer = Some(Tracer::attach(self.child.id(), file)?);
        Ok(())
    }

    /// SIGTERM to the server; returns its `stopped` line and, when traced, strace's table.
    pub(super) fn stop(mut self) -> Result<(ServerEvent, Option<SyscallTable>)> {
        self.terminate();
        let status = self.child.wait().map_err(ServeBenchError::WaitServer)?;
        let mut last = None;
        while let Ok(line) = self.lines.recv_timeout(EXIT_TIMEOUT) {
            if let Ok(e) = serde_json::from_str::<ServerEvent>(&line)
                && e.event == ServerEventKind::Stopped
            {
                last = Some(e);
            }
        }
        let last = last.ok_or(ServeBenchError::NoCounters(status))?;
        let syscalls = match &mut self.tracer {
            Some(t) => Some(t.table()?),
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
        // The tracer (a field) goes after the server: strace ends with its tracee.
    }
}

/// Whether `child` exited within `timeout` (polled: std has no timed wait).
pub(super) fn wait_timeout(child: &mut Child, timeout: Duration) -> std::io::Result<bool> {
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
pub(super) fn line_channel(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
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
