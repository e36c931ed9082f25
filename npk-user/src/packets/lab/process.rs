//! The lab's processes: every tool runs under `ip netns exec` in a namespace of the lab, in a
//! process group of its own, bounded by `timeout` (so it ends even if npk is killed outright),
//! and is killed with its whole group when its [`Tool`] is dropped.

use std::{
    io::{self, BufRead, BufReader},
    os::unix::process::CommandExt,
    process::{Child, ChildStderr, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::LabError;

/// A running tool.
pub struct Tool {
    pub name: String,
    child: Child,
}

impl Tool {
    /// Starts `argv` inside `netns`, stdout discarded; stderr piped when `stderr` is set.
    pub fn spawn(netns: &str, argv: &[String], stderr: bool) -> Result<Self, LabError> {
        let name = argv
            .iter()
            .find(|a| !matches!(a.as_str(), "timeout" | "-k") && a.parse::<f64>().is_err())
            .cloned()
            .unwrap_or_default();
        let child = Command::new("ip")
            .args(["netns", "exec", netns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if stderr {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .process_group(0)
            .spawn()
            .map_err(|source| LabError::Spawn {
                command: argv.join(" "),
                source,
            })?;
        Ok(Self { name, child })
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// The exit status if it has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Asks the group to end (SIGTERM), then kills it after `grace`; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        let group = self.child.id() as libc::pid_t;
        // SAFETY: signals to the process group this Tool created.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        self.child.wait().ok()
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let status = self.stop(Duration::from_millis(500));
        // The group leader is gone; anything left in the group (a tool under `timeout`) goes too.
        // SAFETY: the group this Tool created; ESRCH when it is empty.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = status;
    }
}

/// Reads `stderr` on a thread until a line contains `needle` (true) or it ends or `timeout`
/// passes (false); the thread keeps draining the pipe so the tool never blocks on it.
pub fn wait_for_line(stderr: ChildStderr, needle: &'static str, timeout: Duration) -> bool {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !seen && line.contains(needle) {
                seen = true;
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(timeout).is_ok()
}

/// Protocols of [`listening`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// Whether a socket of `proto` listens (TCP) or is bound (UDP) on local `port` in the calling
/// thread's network namespace (/proc/thread-self/net: the thread's, not the process's).
pub fn listening(proto: Proto, port: u16) -> io::Result<bool> {
    let (file, state) = match proto {
        Proto::Tcp => ("tcp", "0A"),
        Proto::Udp => ("udp", "07"),
    };
    let table = std::fs::read_to_string(format!("/proc/thread-self/net/{file}"))?;
    Ok(table.lines().skip(1).any(|line| {
        let mut cols = line.split_whitespace();
        let local = cols.nth(1).unwrap_or_default();
        let st = cols.nth(1).unwrap_or_default();
        let local_port = local
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        local_port == Some(port) && st == state
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_a_tool_kills_its_whole_group() {
        let lab = crate::netlab::NetLab::create(1).expect("root is required (CI runs as root)");
        let argv: Vec<String> = ["timeout", "30", "sh", "-c", "sleep 30 & sleep 30"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let tool = Tool::spawn(&lab.netns, &argv, false).unwrap();
        let group = tool.child.id() as i32;
        std::thread::sleep(Duration::from_millis(200));
        assert!(live_members(group) >= 2, "timeout, sh and the sleeps run");
        drop(tool);
        // Killed members may stay zombies until something reaps them: count only live ones.
        let deadline = Instant::now() + Duration::from_secs(2);
        while live_members(group) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(live_members(group), 0, "a process survived");
    }

    /// Processes of process group `group` that are not zombies.
    fn live_members(group: i32) -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                // After the `(comm)`: state, ppid, pgrp.
                let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
                let mut f = rest.split_whitespace();
                let state = f.next();
                let pgrp = f.nth(1).and_then(|p| p.parse::<i32>().ok());
                pgrp == Some(group) && state != Some("Z")
            })
            .count()
    }

    #[test]
    fn finds_a_listening_socket_in_the_threads_namespace() {
        let lab = crate::netlab::NetLab::create(1).expect("root is required (CI runs as root)");
        let addr = lab.ns_addrs[0];
        let found = lab
            .in_netns(|| {
                let l = std::net::TcpListener::bind((addr, 0)).unwrap();
                let port = l.local_addr().unwrap().port();
                (
                    listening(Proto::Tcp, port).unwrap(),
                    listening(Proto::Udp, port).unwrap(),
                )
            })
            .unwrap();
        assert_eq!(found, (true, false));
    }
}
