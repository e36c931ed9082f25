//! A throwaway network for tests, benchmarks and generated traffic: a network namespace joined
//! to the caller's by a veth pair. The namespace end has one IPv4 address per traffic source, the host end one
//! address, all in one /27 of 10.200.0.0/16 chosen per process and lab.
//!
//! Everything is removed when the [`NetLab`] is dropped; namespaces left by a process that was
//! killed outright are removed by the next [`NetLab::create`] and by `npk cleanup`
//! ([`lab_namespaces`]). A process that wants cleanup on
//! Ctrl-C, SIGTERM or SIGHUP checks [`crate::sys::stop_flag`] in its loops and returns normally.

use std::{
    fs::File,
    io,
    net::Ipv4Addr,
    os::fd::AsRawFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

/// Names of lab namespaces start with this, then `<pid>-<n>`.
const NETNS_PREFIX: &str = "npkd-";
/// Usable addresses in a lab's /27, after the host end's.
pub const MAX_SOURCES: usize = 29;

#[derive(Debug, thiserror::Error)]
pub enum NetLabError {
    #[error("network namespaces and veth pairs need root (CAP_NET_ADMIN + CAP_SYS_ADMIN)")]
    NotRoot,
    #[error("a lab has at most {MAX_SOURCES} source addresses, {0} were asked for")]
    TooManySources(usize),
    #[error("running `ip {args}` (is iproute2 installed?)")]
    Spawn {
        args: String,
        #[source]
        source: io::Error,
    },
    #[error("`ip {args}` failed: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("entering network namespace {netns}")]
    Enter {
        netns: String,
        #[source]
        source: io::Error,
    },
    #[error("`{script}` failed: {stderr}")]
    Sysfs { script: String, stderr: String },
    #[error("listing /proc")]
    Proc {
        #[source]
        source: io::Error,
    },
}

/// Runs `ip` with `args`.
pub fn ip(args: &[&str]) -> Result<(), NetLabError> {
    let joined = args.join(" ");
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| NetLabError::Spawn {
            args: joined.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetLabError::Ip {
            args: joined,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// A namespace with one end of a veth pair; the other end stays in the caller's namespace.
#[derive(Debug)]
pub struct NetLab {
    pub netns: String,
    /// The veth end in the caller's namespace: attach the classifier here to see the traffic
    /// the namespace sends.
    pub host_if: String,
    /// The veth end inside [`NetLab::netns`].
    pub ns_if: String,
    pub host_addr: Ipv4Addr,
    /// The namespace end's addresses, one per traffic source.
    pub ns_addrs: Vec<Ipv4Addr>,
}

static LABS: AtomicU32 = AtomicU32::new(0);

impl NetLab {
    /// Creates the namespace and the veth pair with `sources` addresses inside, brings both
    /// ends up, and turns IPv6 off inside so the namespace sends no neighbour discovery.
    pub fn create(sources: usize) -> Result<Self, NetLabError> {
        if sources > MAX_SOURCES {
            return Err(NetLabError::TooManySources(sources));
        }
        // SAFETY: plain libc call.
        if unsafe { libc::geteuid() } != 0 {
            return Err(NetLabError::NotRoot);
        }
        remove_orphans();
        let pid = std::process::id();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let block = (pid.wrapping_mul(8).wrapping_add(n)) % 2048;
        let base = u32::from(Ipv4Addr::new(10, 200, 0, 0)) + block * 32;
        let (netns, host_if, ns_if) = lab_names(pid, n);
        // Fields first, so that Drop cleans up whatever the steps below created.
        let lab = Self {
            netns,
            host_if,
            ns_if,
            host_addr: Ipv4Addr::from(base + 1),
            ns_addrs: (0..sources as u32)
                .map(|i| Ipv4Addr::from(base + 2 + i))
                .collect(),
        };
        let (ns, h, p) = (&lab.netns, &lab.host_if, &lab.ns_if);
        ip(&["netns", "add", ns])?;
        lab.in_netns(|| {
            for conf in ["all", "default"] {
                // Absent without IPv6 support: then there is nothing to turn off.
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1");
            }
        })?;
        ip(&[
            "link", "add", h, "type", "veth", "peer", "name", p, "netns", ns,
        ])?;
        ip(&["addr", "add", &format!("{}/27", lab.host_addr), "dev", h])?;
        ip(&["link", "set", h, "up"])?;
        for a in &lab.ns_addrs {
            ip(&["-n", ns, "addr", "add", &format!("{a}/27"), "dev", p])?;
        }
        ip(&["-n", ns, "link", "set", p, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(lab)
    }

    /// Moves the calling thread into the namespace: sockets it creates from now on live there.
    pub fn enter(&self) -> Result<(), NetLabError> {
        enter(&self.netns)
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetLabError> {
        in_netns(&self.netns, f)
    }

    /// Steers the receive processing of each veth end to a CPU set (RPS bit masks): what
    /// arrives on the host end is processed on `host_cpus`, on the namespace end on `ns_cpus`.
    /// Without it, a packet is processed on the CPU that sent it.
    pub fn steer_receive(&self, host_cpus: u64, ns_cpus: u64) -> Result<(), NetLabError> {
        self.on_each_end(|iface| {
            let mask = if iface == self.host_if {
                host_cpus
            } else {
                ns_cpus
            };
            format!(
                "for q in /sys/class/net/{iface}/queues/rx-*; do echo {mask:x} > $q/rps_cpus || exit 1; done"
            )
        })
    }

    /// Moves each end's NAPI polling (where a veth with an XDP program runs it and, for
    /// frames it passes, the stack's receive path) out of softirq context on whichever CPU
    /// sent the frame into kernel threads, which [`NetLab::napi_threads`] finds for pinning.
    pub fn thread_napi(&self) -> Result<(), NetLabError> {
        self.on_each_end(|iface| format!("echo 1 > /sys/class/net/{iface}/threaded"))
    }

    /// The NAPI threads of the host end and of the namespace end (thread ids). veth makes
    /// its NAPI instances when an XDP program is attached and removes them on detach, so
    /// look again after every attach.
    pub fn napi_threads(&self) -> Result<(Vec<i32>, Vec<i32>), NetLabError> {
        // The kernel names them "napi/<interface>-<napi id>", cut to 15 bytes.
        let prefix = |iface: &str| {
            let mut p = format!("napi/{iface}-");
            p.truncate(15);
            p
        };
        let (host, ns) = (prefix(&self.host_if), prefix(&self.ns_if));
        let (mut host_threads, mut ns_threads) = (Vec::new(), Vec::new());
        let proc_error = |source| NetLabError::Proc { source };
        for entry in std::fs::read_dir("/proc").map_err(proc_error)?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            // A process may end while we look: skip what cannot be read.
            let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
                continue;
            };
            let comm = comm.trim_end();
            if comm.starts_with(&host) {
                host_threads.push(pid);
            } else if comm.starts_with(&ns) {
                ns_threads.push(pid);
            }
        }
        Ok((host_threads, ns_threads))
    }

    /// Runs the shell script `script(interface)` for the host end here and for the namespace
    /// end inside the namespace (its sysfs is only visible to a process there with sysfs
    /// remounted, which `ip netns exec` does).
    fn on_each_end(&self, script: impl Fn(&str) -> String) -> Result<(), NetLabError> {
        let host = script(&self.host_if);
        let ns = script(&self.ns_if);
        for (args, what) in [
            (vec!["sh", "-c", host.as_str()], host.clone()),
            (
                vec!["ip", "netns", "exec", &self.netns, "sh", "-c", ns.as_str()],
                ns.clone(),
            ),
        ] {
            let out = Command::new(args[0])
                .args(&args[1..])
                .output()
                .map_err(|source| NetLabError::Spawn {
                    args: what.clone(),
                    source,
                })?;
            if !out.status.success() {
                return Err(NetLabError::Sysfs {
                    script: what,
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
        }
        Ok(())
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth end inside it, and with it the pair; the
        // host end is deleted explicitly in case the namespace step failed half-way. Errors
        // are expected for the parts that were never created.
        let _ = ip(&["netns", "del", &self.netns]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

/// Runs `f` on a thread that has entered network namespace `netns` (a name under /run/netns,
/// as `ip netns` creates).
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T, NetLabError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(netns)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Moves the calling thread into network namespace `netns`.
fn enter(netns: &str) -> Result<(), NetLabError> {
    let path = format!("/run/netns/{netns}");
    let enter_error = |source| NetLabError::Enter {
        netns: netns.to_string(),
        source,
    };
    let file = File::open(&path).map_err(enter_error)?;
    // SAFETY: setns on a valid namespace fd; it affects only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(enter_error(io::Error::last_os_error()));
    }
    Ok(())
}

/// The names of lab `n` of process `pid`: namespace, host veth end, namespace veth end.
fn lab_names(pid: u32, n: u32) -> (String, String, String) {
    // Interface names have at most 15 bytes: "nd" + pid in hex (<= 6) + lab number + end.
    let tag = format!("nd{pid:x}{n}");
    (
        format!("{NETNS_PREFIX}{pid}-{n}"),
        format!("{tag}h"),
        format!("{tag}n"),
    )
}

/// A namespace in /run/netns named like a lab's (`npkd-...`).
#[derive(Debug, PartialEq, Eq)]
pub struct LabNamespace {
    pub netns: String,
    /// The process and lab number its name carries (None: the rest of the name is not
    /// `<pid>-<n>`, so it is not one of npk's).
    pub owner: Option<(u32, u32)>,
}

impl LabNamespace {
    fn parse(netns: &str) -> Option<Self> {
        let rest = netns.strip_prefix(NETNS_PREFIX)?;
        let number = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u32>().ok())
                .flatten()
        };
        let owner = rest
            .split_once('-')
            .and_then(|(pid, n)| Some((number(pid)?, number(n)?)));
        Some(Self {
            netns: netns.to_string(),
            owner,
        })
    }

    /// The veth end a lab keeps in the caller's namespace.
    pub fn host_if(&self) -> Option<String> {
        self.owner.map(|(pid, n)| lab_names(pid, n).1)
    }

    /// A leftover: a lab of a process that no longer runs (a pid that is now another
    /// process's keeps it, which errs on the side of keeping).
    pub fn is_orphan(&self) -> bool {
        self.owner.is_some_and(|(pid, _)| !process_runs(pid))
    }

    /// Deletes the namespace and, if something still holds the namespace alive, the lab's
    /// veth pair (by its host end, only if that is a veth).
    pub fn remove(&self) -> Result<(), NetLabError> {
        let deleted = ip(&["netns", "del", &self.netns]);
        // Gone meanwhile is fine: every NetLab::create removes orphans too.
        if std::path::Path::new("/run/netns")
            .join(&self.netns)
            .exists()
        {
            deleted?;
        }
        if let Some(host_if) = self.host_if()
            && is_veth(&host_if)
        {
            ip(&["link", "del", &host_if])?;
        }
        Ok(())
    }
}

/// Whether process `pid` exists and is not a zombie (dead, not yet reaped).
fn process_runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, after_name)| after_name.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// Whether `iface` exists in this namespace and is a veth.
fn is_veth(iface: &str) -> bool {
    Command::new("ip")
        .args(["-o", "-d", "link", "show", "dev", iface])
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .any(|w| w == "veth")
        })
}

/// The namespaces in /run/netns named like labs (`npkd-...`); others are never listed.
pub fn lab_namespaces() -> Vec<LabNamespace> {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut labs: Vec<LabNamespace> = entries
        .flatten()
        .filter_map(|e| LabNamespace::parse(&e.file_name().to_string_lossy()))
        .collect();
    labs.sort_by(|a, b| a.netns.cmp(&b.netns));
    labs
}

/// Deletes lab namespaces whose process is gone (killed before its labs were dropped).
fn remove_orphans() {
    for lab in lab_namespaces().into_iter().filter(LabNamespace::is_orphan) {
        let _ = lab.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_reaches_across_from_every_source_and_cleans_up() {
        let lab = NetLab::create(3).expect("root is required (CI runs as root)");
        let host = std::net::UdpSocket::bind((lab.host_addr, 0)).unwrap();
        host.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let to = host.local_addr().unwrap();
        lab.in_netns(|| {
            for &a in &lab.ns_addrs {
                let s = std::net::UdpSocket::bind((a, 0)).unwrap();
                s.send_to(b"hi", to).unwrap();
            }
        })
        .unwrap();
        let mut buf = [0u8; 8];
        let mut from = Vec::new();
        for _ in &lab.ns_addrs {
            let (n, peer) = host
                .recv_from(&mut buf)
                .expect("a datagram from each source");
            assert_eq!(&buf[..n], b"hi");
            from.push(peer.ip());
        }
        from.sort();
        let want: Vec<std::net::IpAddr> = lab.ns_addrs.iter().map(|&a| a.into()).collect();
        assert_eq!(from, want);
        let (netns, host_if) = (lab.netns.clone(), lab.host_if.clone());
        drop(lab);
        assert!(!std::path::Path::new(&format!("/run/netns/{netns}")).exists());
        assert!(ip(&["link", "show", &host_if]).is_err());
    }

    #[test]
    fn lab_namespace_names_are_npks_only_when_they_carry_a_pid_and_number() {
        let lab = LabNamespace::parse("npkd-4242-3").unwrap();
        assert_eq!(lab.owner, Some((4242, 3)));
        assert_eq!(lab.host_if().as_deref(), Some("nd10923h"));
        for foreign in [
            "npkd-",
            "npkd-12",
            "npkd-12-",
            "npkd-x-1",
            "npkd-1-2-3",
            "npkd-+1-2",
        ] {
            let ns = LabNamespace::parse(foreign).unwrap();
            assert_eq!(ns.owner, None, "{foreign}");
            assert!(!ns.is_orphan(), "{foreign}: must be kept");
        }
        assert_eq!(LabNamespace::parse("blue"), None);
        let mine = LabNamespace::parse(&format!("npkd-{}-0", std::process::id())).unwrap();
        assert!(!mine.is_orphan(), "a running process's lab is kept");
    }

    #[test]
    fn too_many_sources_is_refused_before_anything_is_created() {
        assert_eq!(
            NetLab::create(MAX_SOURCES + 1).unwrap_err().to_string(),
            "a lab has at most 29 source addresses, 30 were asked for"
        );
    }
}
