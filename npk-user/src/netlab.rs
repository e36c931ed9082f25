//! A throwaway network for tests and benchmarks that need real packets but no NIC: a network
//! namespace and a veth pair with one end in it, each end with an IPv4 address in its own /30.
//!
//! Names and addresses are unique per process and lab, so labs of parallel tests do not
//! collide. Everything is removed when the [`NetLab`] is dropped; a process that wants that to
//! happen on Ctrl-C or SIGTERM too checks [`stop_flag`] in its loops and returns normally.

use std::{
    fs::File,
    io,
    net::Ipv4Addr,
    os::fd::AsRawFd,
    process::Command,
    sync::{
        Once,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum NetLabError {
    #[error("network namespaces and veth pairs need root (CAP_NET_ADMIN + CAP_SYS_ADMIN)")]
    NotRoot,
    #[error("running `{args}` (are iproute2 and sh installed?)")]
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
    #[error("setting RPS masks with `{script}` failed: {stderr}")]
    Steer { script: String, stderr: String },
    #[error("the thread working in network namespace {0} panicked")]
    Panicked(String),
}

/// A namespace with one end of a veth pair; the other end stays in the caller's namespace.
#[derive(Debug)]
pub struct NetLab {
    pub netns: String,
    /// The veth end in the caller's namespace.
    pub host_if: String,
    /// The veth end inside [`NetLab::netns`].
    pub ns_if: String,
    pub host_addr: Ipv4Addr,
    pub ns_addr: Ipv4Addr,
}

static LABS: AtomicU32 = AtomicU32::new(0);

/// Runs `ip` with `args`.
pub fn ip(args: &[&str]) -> Result<(), NetLabError> {
    let joined = args.join(" ");
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| NetLabError::Spawn {
            args: format!("ip {joined}"),
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

impl NetLab {
    /// Creates the namespace and the veth pair, addresses them and brings them up.
    pub fn create() -> Result<Self, NetLabError> {
        // SAFETY: plain libc call.
        if unsafe { libc::geteuid() } != 0 {
            return Err(NetLabError::NotRoot);
        }
        let pid = std::process::id();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        // Interface names have at most 15 bytes: "nk" + pid in hex (<= 6) + lab number + end.
        let tag = format!("nk{pid:x}{n}");
        // One /30 in 10.64.0.0/10 per (process, lab).
        let block = ((pid as u64 * 64 + n as u64) % (1 << 20)) as u32;
        let base = u32::from(Ipv4Addr::new(10, 64, 0, 0)) + block * 4;
        // Fields first, so that Drop cleans up whatever the steps below created.
        let lab = Self {
            netns: format!("npk-{pid}-{n}"),
            host_if: format!("{tag}h"),
            ns_if: format!("{tag}n"),
            host_addr: Ipv4Addr::from(base + 1),
            ns_addr: Ipv4Addr::from(base + 2),
        };
        let host_cidr = format!("{}/30", lab.host_addr);
        let ns_cidr = format!("{}/30", lab.ns_addr);
        let (ns, h, p) = (&lab.netns, &lab.host_if, &lab.ns_if);
        ip(&["netns", "add", ns])?;
        ip(&[
            "link", "add", h, "type", "veth", "peer", "name", p, "netns", ns,
        ])?;
        ip(&["addr", "add", &host_cidr, "dev", h])?;
        ip(&["link", "set", h, "up"])?;
        ip(&["-n", ns, "addr", "add", &ns_cidr, "dev", p])?;
        ip(&["-n", ns, "link", "set", p, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(lab)
    }

    /// Runs `f` on a thread inside the namespace. Sockets it creates stay in the namespace
    /// wherever they are used afterwards.
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetLabError> {
        in_netns(&self.netns, f)
    }

    /// Steers the receive processing of each veth end to a CPU set (RPS bit masks): what
    /// arrives on the host end is processed on `host_cpus`, on the namespace end on `ns_cpus`.
    /// Without it, a packet is processed on the CPU that sent it.
    pub fn steer_receive(&self, host_cpus: u64, ns_cpus: u64) -> Result<(), NetLabError> {
        let script = |iface: &str, mask: u64| {
            format!(
                "for q in /sys/class/net/{iface}/queues/rx-*; do echo {mask:x} > $q/rps_cpus || exit 1; done"
            )
        };
        let host = script(&self.host_if, host_cpus);
        // The namespace end's sysfs is only visible to a process in the namespace with sysfs
        // remounted, which `ip netns exec` does.
        let ns = script(&self.ns_if, ns_cpus);
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
                return Err(NetLabError::Steer {
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

/// Runs `f` on a thread that has entered network namespace `netns` (a name under
/// /run/netns, as `ip netns` creates).
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T, NetLabError> {
    let path = format!("/run/netns/{netns}");
    let enter_error = |source| NetLabError::Enter {
        netns: netns.to_string(),
        source,
    };
    let file = File::open(&path).map_err(enter_error)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a valid namespace fd; it affects only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(enter_error(io::Error::last_os_error()));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| NetLabError::Panicked(netns.to_string()))?
    })
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Set once SIGINT or SIGTERM arrives; the first call installs the handlers.
///
/// The handlers are installed without SA_RESTART, so a blocking call on the thread that gets
/// the signal returns EINTR; loops should also use timeouts, as another thread may get it.
pub fn stop_flag() -> &'static AtomicBool {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            for signal in [libc::SIGINT, libc::SIGTERM] {
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
    });
    &STOP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_reaches_across_and_cleans_up() {
        let lab = NetLab::create().expect("root is required (CI runs as root)");
        let host = std::net::UdpSocket::bind((lab.host_addr, 0)).unwrap();
        let to = host.local_addr().unwrap();
        lab.in_netns(|| {
            let s = std::net::UdpSocket::bind((lab.ns_addr, 0)).unwrap();
            s.send_to(b"hi", to).unwrap();
        })
        .unwrap();
        host.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = host.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from.ip()), (&b"hi"[..], lab.ns_addr.into()));
        let (netns, host_if) = (lab.netns.clone(), lab.host_if.clone());
        drop(lab);
        assert!(!std::path::Path::new(&format!("/run/netns/{netns}")).exists());
        assert!(ip(&["link", "show", &host_if]).is_err());
    }

    #[test]
    fn unknown_namespace_is_a_clear_error() {
        let e = in_netns("npk-no-such-namespace", || ()).unwrap_err();
        assert!(e.to_string().contains("npk-no-such-namespace"), "{e}");
    }
}
