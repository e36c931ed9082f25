//! A traffic lab built on real tools: servers (nginx, dnsmasq, iperf3) in a server namespace,
//! clients and attackers (curl, dig, iperf3, ping, hping3, nmap) in a client namespace, joined
//! by a veth pair whose server end is where traffic is recorded: through the kernel classifier
//! (the sample ring buffer, as `npk capture` records) and optionally by tcpdump into a pcap
//! (both directions: `npk features` counts the server's packets as replies). Offloads are off on both ends, so the server sees MTU-sized frames as from a real NIC.
//!
//! Every scenario ([`scenario::ToolScenario`]) sends from addresses of its own, with settings
//! drawn from the run's seed ([`scenario::plan`]); a [`Manifest`] records them with each
//! scenario's time window, and labels each packet by its source address and arrival time
//! ([`Labels`]). Both namespaces, every process and the temporary files go on every exit path:
//! errors, Ctrl-C/SIGTERM (netlab's stop flag), and, if npk is killed outright, each tool ends
//! by its own `timeout` and the next lab removes the namespaces.

pub mod process;
pub mod scenario;

use std::{
    io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use npk_common::maps::Sample;
use serde::{Deserialize, Serialize};

use crate::{
    kernel::{
        KernelError,
        attach::{AttachMode, Attachment, IfaceName, IfaceNameError},
    },
    netlab::{self, NetLab, NetLabError},
    output::{OutputError, OutputPath},
    packets::capture::{self, CaptureError, Sampler},
    sys::monotonic_ns,
};
use process::{Proto, Tool, listening, wait_for_line};
use scenario::{
    DNS_PORT, Family, HTTP_PORT, IPERF_TCP_PORT, IPERF_UDP_PORT, OBJECT_SIZES, Planned, Target,
    ToolScenario,
};

/// The longest run the lab accepts.
pub const MAX_RUN: Duration = Duration::from_secs(600);
/// A packet from a scenario's address this long before or after its window still counts as
/// its own (a tool's last packets, the kernel's answers to them).
pub const LABEL_GRACE: Duration = Duration::from_secs(2);
/// The manifest's format version.
pub const MANIFEST_VERSION: u32 = 1;

/// The Debian packages of the tools, by command (scripts/setup.sh installs them).
const TOOLS: [(&str, &str); 10] = [
    ("nginx", "nginx-light"),
    ("dnsmasq", "dnsmasq-base"),
    ("iperf3", "iperf3"),
    ("curl", "curl"),
    ("dig", "bind9-dnsutils"),
    ("ping", "iputils-ping"),
    ("hping3", "hping3"),
    ("nmap", "nmap"),
    ("tcpdump", "tcpdump"),
    ("ethtool", "ethtool"),
];

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{0}")]
    Config(String),
    #[error("`{command}` not found: install {package} (scripts/setup.sh does)")]
    MissingTool {
        command: &'static str,
        package: &'static str,
    },
    #[error(transparent)]
    Net(#[from] NetLabError),
    #[error("starting `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{what} did not start within {seconds} s{detail}")]
    NotReady {
        what: String,
        seconds: u64,
        detail: String,
    },
    #[error("{what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("attaching the recording classifier")]
    CaptureIface(#[source] IfaceNameError),
    #[error("attaching the recording classifier")]
    Capture(#[source] CaptureError),
    #[error("attaching the recording classifier")]
    CaptureCounters(#[source] Box<KernelError>),
    #[error("interrupted; the lab's namespaces and processes were removed")]
    Interrupted,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct LabConfig {
    pub scenarios: Vec<ToolScenario>,
    pub duration: Duration,
    pub seed: u64,
    pub family: Family,
    /// Where tcpdump writes the server's traffic, both directions (none: no tcpdump).
    pub pcap: Option<PathBuf>,
    pub mode: AttachMode,
}

impl LabConfig {
    pub fn validate(&self) -> Result<(), LabError> {
        if self.scenarios.is_empty() {
            return Err(LabError::Config("no scenario to run".into()));
        }
        if self.duration < Duration::from_secs(2) || self.duration > MAX_RUN {
            return Err(LabError::Config(format!(
                "a lab run lasts 2 to {} s, not {:?}",
                MAX_RUN.as_secs(),
                self.duration
            )));
        }
        let mut sorted = self.scenarios.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.scenarios.len() {
            return Err(LabError::Config("a scenario is listed twice".into()));
        }
        Ok(())
    }
}

/// One scenario of a run as the manifest records it.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioRecord {
    pub scenario: ToolScenario,
    pub label: u32,
    pub class: &'static str,
    pub sources: Vec<Ipv4Addr>,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub settings: scenario::Settings,
    pub commands: Vec<Vec<String>>,
    /// Per command: its exit code (124 when `timeout` ended it; none when killed by a signal).
    pub exit_codes: Vec<Option<i32>>,
    /// Packets the kernel recorded with this scenario's label.
    pub packets: u64,
}

/// A run's record: written next to its pcap/CSV, read back by [`Labels`].
#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub seed: u64,
    pub family: Family,
    pub seconds: f64,
    pub server: Ipv4Addr,
    pub server_if: String,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub pcap: Option<PathBuf>,
    pub scenarios: Vec<ScenarioRecord>,
    /// Kernel-recorded packets from no scenario's address/window (ARP is not counted: not IP).
    pub unlabelled_packets: u64,
    pub samples_lost: u64,
}

impl Manifest {
    /// Writes the manifest as pretty JSON (atomically: see [`crate::output`]).
    pub fn write(&self, out: &OutputPath) -> Result<(), OutputError> {
        let json = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        out.write_all(&json)
    }
}

/// A sibling of `path` to write first and rename into place.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// The part of a manifest labelling needs.
#[derive(Clone, Debug, Deserialize)]
struct LabelWindow {
    scenario: ToolScenario,
    label: u32,
    sources: Vec<Ipv4Addr>,
    start_unix_ns: u64,
    end_unix_ns: u64,
}

#[derive(Debug, Deserialize)]
struct ManifestLabels {
    manifest_version: u32,
    server: Ipv4Addr,
    scenarios: Vec<LabelWindow>,
}

/// Per-packet labels of a run: the scenario whose address sent the packet within its window
/// (plus [`LABEL_GRACE`]).
#[derive(Clone, Debug)]
pub struct Labels {
    windows: Vec<LabelWindow>,
    /// The server's address: a packet from it is a reply (none for a run's own labels).
    pub server: Option<Ipv4Addr>,
}

impl Labels {
    /// Reads the labels of a manifest file written by [`Manifest::write`].
    pub fn load(path: &Path) -> Result<Self, LabError> {
        let file_error = |source| LabError::File {
            what: "reading the manifest",
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(file_error)?;
        let m: ManifestLabels = serde_json::from_str(&text).map_err(|e| {
            file_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line {}, column {}: {e}", e.line(), e.column()),
            ))
        })?;
        if m.manifest_version != MANIFEST_VERSION {
            return Err(file_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "manifest_version {} (this npk reads {MANIFEST_VERSION})",
                    m.manifest_version
                ),
            )));
        }
        Ok(Self {
            windows: m.scenarios,
            server: Some(m.server),
        })
    }

    fn from_records(records: &[ScenarioRecord]) -> Self {
        Self {
            windows: records
                .iter()
                .map(|r| LabelWindow {
                    scenario: r.scenario,
                    label: r.label,
                    sources: r.sources.clone(),
                    start_unix_ns: r.start_unix_ns,
                    end_unix_ns: r.end_unix_ns,
                })
                .collect(),
            server: None,
        }
    }

    /// The scenario and label of a packet from `src` (IPv4-mapped, as in a flow key) that
    /// arrived at `unix_ns`.
    pub fn label(&self, src: &[u8; 16], unix_ns: u64) -> Option<(ToolScenario, u32)> {
        let v4 = src.strip_prefix(&[0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff])?;
        let addr = Ipv4Addr::new(v4[0], v4[1], v4[2], v4[3]);
        let grace = LABEL_GRACE.as_nanos() as u64;
        self.windows
            .iter()
            .find(|w| {
                w.sources.contains(&addr)
                    && unix_ns + grace >= w.start_unix_ns
                    && unix_ns <= w.end_unix_ns + grace
            })
            .map(|w| (w.scenario, w.label))
    }
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Checks that every tool the lab runs is installed.
pub fn check_tools() -> Result<(), LabError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for (command, package) in TOOLS {
        let found = std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .any(|d| d.join(command).is_file());
        if !found {
            return Err(LabError::MissingTool { command, package });
        }
    }
    Ok(())
}

/// The two namespaces: [`NetLab`]'s (the clients, one address per source) and a server
/// namespace into which the lab's other veth end is moved.
struct ToolNet {
    clients: NetLab,
    server_netns: String,
}

impl ToolNet {
    fn create(sources: usize) -> Result<Self, LabError> {
        let clients = NetLab::create(sources)?;
        // Same prefix and pid as the client namespace: orphans are removed the same way.
        let net = Self {
            server_netns: format!("{}-srv", clients.netns),
            clients,
        };
        let (srv, iface) = (&net.server_netns, &net.clients.host_if);
        netlab::ip(&["netns", "add", srv])?;
        netlab::ip(&["link", "set", iface, "netns", srv])?;
        let addr = format!("{}/27", net.clients.host_addr);
        netlab::ip(&["-n", srv, "addr", "add", &addr, "dev", iface])?;
        netlab::ip(&["-n", srv, "link", "set", iface, "up"])?;
        netlab::ip(&["-n", srv, "link", "set", "lo", "up"])?;
        netlab::in_netns(srv, || {
            for conf in ["all", "default"] {
                // Absent without IPv6 support: then there is nothing to turn off.
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1");
            }
        })?;
        for (ns, iface) in [(srv, iface), (&net.clients.netns, &net.clients.ns_if)] {
            let args = ["-K", iface, "tso", "off", "gso", "off", "gro", "off"];
            run_quiet(ns, "ethtool", &args)?;
        }
        Ok(net)
    }
}

impl Drop for ToolNet {
    fn drop(&mut self) {
        // The client namespace (and with it the veth pair) goes with `clients`.
        let _ = netlab::ip(&["netns", "del", &self.server_netns]);
    }
}

/// Runs a short command in `netns` and checks that it succeeded.
fn run_quiet(netns: &str, command: &str, args: &[&str]) -> Result<(), LabError> {
    let joined = std::iter::once(command)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("ip")
        .args(["netns", "exec", netns, command])
        .args(args)
        .output()
        .map_err(|source| LabError::Spawn {
            command: joined.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Failed {
            command: joined,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// A directory of the run's own files (server configs, web objects), removed on drop.
struct WorkDir(PathBuf);

static RUNS: AtomicU32 = AtomicU32::new(0);

impl WorkDir {
    fn create() -> Result<Self, LabError> {
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("npk-lab-{}-{n}", std::process::id()));
        let file_error = |source| LabError::File {
            what: "creating",
            path: dir.clone(),
            source,
        };
        let _ = std::fs::remove_dir_all(&dir);
        let objects = dir.join("www/o");
        std::fs::create_dir_all(&objects).map_err(file_error)?;
        let work = Self(dir.clone());
        for size in OBJECT_SIZES {
            let file = std::fs::File::create(objects.join(size.to_string())).map_err(file_error)?;
            file.set_len(size).map_err(file_error)?;
        }
        Ok(work)
    }

    fn nginx_conf(&self, server: Ipv4Addr) -> Result<PathBuf, LabError> {
        let d = self.0.display();
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  keepalive_requests 100000;\n  \
             server {{ listen {server}:{HTTP_PORT} backlog=4096; root {d}/www; }}\n}}\n"
        );
        let path = self.0.join("nginx.conf");
        std::fs::write(&path, conf).map_err(|source| LabError::File {
            what: "writing",
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file removed on drop unless taken out (a pcap that was never completed).
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What a run did, besides the manifest.
#[derive(Clone, Debug, Serialize)]
pub struct LabReport {
    pub rows: u64,
    pub pcap_bytes: Option<u64>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Runs the lab: servers, recording, then every scenario in its window. `on_sample` gets every
/// packet the kernel classified at the server's ingress with its scenario and label, if any.
pub fn run(
    config: &LabConfig,
    stop: &AtomicBool,
    on_sample: impl FnMut(Option<(ToolScenario, u32)>, &Sample) + Send,
) -> Result<(Manifest, LabReport), LabError> {
    let mode = config.mode;
    let record = move |side: &ServerSide| capture::start(side.iface, mode);
    run_with(config, stop, record, on_sample, |_| {})
}

/// Where a run's traffic is, for whoever attaches the classifier at the server's ingress.
pub struct ServerSide<'a> {
    pub client_netns: &'a str,
    pub server_netns: &'a str,
    /// The server's end of the veth pair.
    pub iface: &'a IfaceName,
}

/// [`run`] with the server's ingress classifier attached by `attach` (`run`: the recording
/// model, every class passed) and `tick` called with it between drains (every ~20 ms).
pub fn run_with(
    config: &LabConfig,
    stop: &AtomicBool,
    attach: impl FnOnce(&ServerSide) -> Result<(Attachment, Sampler), CaptureError> + Send,
    on_sample: impl FnMut(Option<(ToolScenario, u32)>, &Sample) + Send,
    tick: impl FnMut(&Attachment) + Send,
) -> Result<(Manifest, LabReport), LabError> {
    config.validate()?;
    check_tools()?;
    let counts = scenario::address_counts(&config.scenarios, config.seed, config.family);
    let total: usize = counts.iter().sum();
    if total > netlab::MAX_SOURCES {
        return Err(LabError::Config(format!(
            "the scenarios need {total} source addresses, a lab has {}",
            netlab::MAX_SOURCES
        )));
    }
    let net = ToolNet::create(total)?;
    let mut addrs = net.clients.ns_addrs.iter().copied();
    // The client namespace's primary (first) address goes to the first scenario in
    // ToolScenario order, which is the one that may ignore its source address.
    let mut order: Vec<usize> = (0..config.scenarios.len()).collect();
    order.sort_by_key(|&i| config.scenarios[i]);
    let mut sources = vec![Vec::new(); config.scenarios.len()];
    for i in order {
        sources[i] = addrs.by_ref().take(counts[i]).collect();
    }
    let plans: Vec<Planned> = config
        .scenarios
        .iter()
        .zip(sources)
        .map(|(&s, src)| scenario::plan(s, src, config.duration, config.seed, config.family))
        .collect();
    let work = WorkDir::create()?;
    let server_netns = net.server_netns.clone();
    netlab::in_netns(&server_netns, || {
        let hooks = Hooks {
            attach,
            on_sample,
            tick,
        };
        run_in_server_netns(config, stop, &net, &work, &plans, hooks)
    })?
}

/// What the caller of [`run_with`] does at the server's ingress.
struct Hooks<A, S, T> {
    attach: A,
    on_sample: S,
    tick: T,
}

fn run_in_server_netns(
    config: &LabConfig,
    stop: &AtomicBool,
    net: &ToolNet,
    work: &WorkDir,
    plans: &[Planned],
    hooks: Hooks<
        impl FnOnce(&ServerSide) -> Result<(Attachment, Sampler), CaptureError>,
        impl FnMut(Option<(ToolScenario, u32)>, &Sample),
        impl FnMut(&Attachment),
    >,
) -> Result<(Manifest, LabReport), LabError> {
    let Hooks {
        attach,
        mut on_sample,
        mut tick,
    } = hooks;
    let server = net.clients.host_addr;
    let srv = net.server_netns.as_str();
    // Servers outlive the clients by a margin, and end by themselves if npk cannot stop them.
    let life = format!("{}", config.duration.as_secs() + 30);
    let bounded = |argv: &[&str]| {
        let mut v = strings(&["timeout", "-k", "1", &life]);
        v.extend(strings(argv));
        v
    };
    let conf = work.nginx_conf(server)?;
    let d = work.0.display().to_string();
    let server_addr = server.to_string();
    let mut servers = vec![
        Tool::spawn(
            srv,
            &bounded(&["nginx", "-p", &d, "-e", &format!("{d}/error.log"), "-c"])
                .into_iter()
                .chain([conf.display().to_string()])
                .collect::<Vec<_>>(),
            false,
        )?,
        Tool::spawn(
            srv,
            &bounded(&[
                "dnsmasq",
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                &format!("--listen-address={server_addr}"),
                &format!("--address=/example.test/{server_addr}"),
                &format!("--pid-file={d}/dnsmasq.pid"),
                "--log-facility=/dev/null",
            ]),
            false,
        )?,
    ];
    for port in [IPERF_TCP_PORT, IPERF_UDP_PORT] {
        let argv = bounded(&["iperf3", "-s", "-B", &server_addr, "-p", &port.to_string()]);
        servers.push(Tool::spawn(srv, &argv, false)?);
    }
    let ready = [
        ("nginx", Proto::Tcp, HTTP_PORT),
        ("dnsmasq", Proto::Udp, DNS_PORT),
        ("iperf3", Proto::Tcp, IPERF_TCP_PORT),
        ("iperf3", Proto::Tcp, IPERF_UDP_PORT),
    ];
    let wait = Duration::from_secs(5);
    let deadline = Instant::now() + wait;
    for (what, proto, port) in ready {
        while !listening(proto, port).unwrap_or(false) {
            if Instant::now() > deadline || stop.load(Ordering::Relaxed) {
                let exited = servers
                    .iter_mut()
                    .filter_map(|t| t.exited().map(|s| format!("{} exited with {s}", t.name)))
                    .collect::<Vec<_>>();
                return Err(LabError::NotReady {
                    what: format!("{what} on port {port}"),
                    seconds: wait.as_secs(),
                    detail: if exited.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", exited.join(", "))
                    },
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    let iface = net.clients.host_if.as_str();
    let iface_name = iface.parse().map_err(LabError::CaptureIface)?;
    let (attachment, mut sampler) = attach(&ServerSide {
        client_netns: &net.clients.netns,
        server_netns: srv,
        iface: &iface_name,
    })
    .map_err(LabError::Capture)?;
    let pcap_tmp = config.pcap.as_deref().map(temp_path);
    let mut unfinished_pcap = RemoveOnDrop(pcap_tmp.clone());
    let mut tcpdump = match &pcap_tmp {
        Some(tmp) => {
            let argv = bounded(&[
                "tcpdump", "-i", iface, "-Q", "inout", "-s", "256", "-U", "-n", "-Z", "root", "-w",
            ])
            .into_iter()
            .chain([tmp.display().to_string()])
            .collect::<Vec<_>>();
            let mut t = Tool::spawn(srv, &argv, true)?;
            let stderr = t.take_stderr().expect("stderr is piped");
            if !wait_for_line(stderr, "listening on", wait) {
                return Err(LabError::NotReady {
                    what: "tcpdump".into(),
                    seconds: wait.as_secs(),
                    detail: t
                        .exited()
                        .map(|s| format!(" (exited with {s})"))
                        .unwrap_or_default(),
                });
            }
            Some(t)
        }
        None => None,
    };

    let clock_offset = unix_ns().saturating_sub(monotonic_ns());
    let start = Instant::now();
    let start_unix = unix_ns();
    let window_ns = |at: Duration| start_unix + at.as_nanos() as u64;
    let mut records: Vec<ScenarioRecord> = plans
        .iter()
        .map(|p| ScenarioRecord {
            scenario: p.scenario,
            label: p.scenario.class(),
            class: p.scenario.class_name(),
            sources: p.sources.clone(),
            start_unix_ns: window_ns(p.start),
            end_unix_ns: window_ns(p.start + p.duration),
            settings: p.settings.clone(),
            commands: p.commands(&Target {
                server,
                client_if: &net.clients.ns_if,
            }),
            exit_codes: Vec::new(),
            packets: 0,
        })
        .collect();
    let labels = Labels::from_records(&records);
    let mut packets = vec![0u64; plans.len()];
    let mut unlabelled = 0u64;
    let mut rows = 0u64;
    let mut drain = |sampler: &mut capture::Sampler| {
        sampler.drain(|s| {
            let label = labels.label(&s.flow.src, s.timestamp_ns + clock_offset);
            match label {
                Some((scenario, _)) => {
                    if let Some(i) = plans.iter().position(|p| p.scenario == scenario) {
                        packets[i] += 1;
                    }
                    rows += 1;
                }
                None => unlabelled += 1,
            }
            on_sample(label, s);
        });
    };

    // Clients: started at their offsets, each command a tool; all stopped by the run's end.
    let mut started = vec![false; plans.len()];
    let mut clients: Vec<(usize, Tool)> = Vec::new();
    let end = config.duration + Duration::from_secs(2);
    let outcome = loop {
        drain(&mut sampler);
        tick(&attachment);
        if stop.load(Ordering::Relaxed) {
            break Err(LabError::Interrupted);
        }
        let now = start.elapsed();
        for (i, p) in plans.iter().enumerate() {
            if !started[i] && now >= p.start {
                started[i] = true;
                for argv in &records[i].commands {
                    match Tool::spawn(&net.clients.netns, argv, false) {
                        Ok(t) => clients.push((i, t)),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        let all_started = started.iter().all(|&s| s);
        if now >= end || (all_started && clients.iter_mut().all(|(_, t)| t.exited().is_some())) {
            break Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for (i, mut tool) in clients {
        let status = tool.stop(Duration::from_millis(500));
        records[i].exit_codes.push(status.and_then(|s| s.code()));
    }
    outcome?;
    let end_unix = unix_ns();
    // The last packets' samples may still be on their way through the stack.
    std::thread::sleep(Duration::from_millis(200));
    drain(&mut sampler);
    let samples_lost = attachment
        .classifier
        .counters()
        .map_err(|e| LabError::CaptureCounters(Box::new(e)))?
        .samples_lost;
    drop(attachment);
    let pcap_bytes = match (tcpdump.as_mut(), &pcap_tmp, &config.pcap) {
        (Some(t), Some(tmp), Some(path)) => {
            t.stop(Duration::from_secs(2));
            let file_error = |source| LabError::File {
                what: "writing the pcap",
                path: path.clone(),
                source,
            };
            let bytes = std::fs::metadata(tmp).map_err(file_error)?.len();
            std::fs::rename(tmp, path).map_err(file_error)?;
            unfinished_pcap.0 = None;
            Some(bytes)
        }
        _ => None,
    };
    drop(tcpdump);
    drop(servers);
    for (r, n) in records.iter_mut().zip(&packets) {
        r.packets = *n;
    }
    let manifest = Manifest {
        manifest_version: MANIFEST_VERSION,
        seed: config.seed,
        family: config.family,
        seconds: config.duration.as_secs_f64(),
        server,
        server_if: iface.to_string(),
        start_unix_ns: start_unix,
        end_unix_ns: end_unix,
        pcap: config.pcap.clone(),
        scenarios: records,
        unlabelled_packets: unlabelled,
        samples_lost,
    };
    Ok((manifest, LabReport { rows, pcap_bytes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_setup_command_says_it_failed_and_why() {
        let netns = format!("npk-absent-{}", std::process::id());
        let err = run_quiet(&netns, "true", &[]).unwrap_err().to_string();
        assert!(err.starts_with("`true` failed (exit status: "), "{err}");
        assert!(
            err.contains(&netns),
            "names the namespace ip could not enter: {err}"
        );
        assert!(!err.contains("did not start"), "{err}");
    }

    #[test]
    fn labels_follow_address_and_window() {
        let records = [ScenarioRecord {
            scenario: ToolScenario::SynFlood,
            label: 1,
            class: "syn_flood",
            sources: vec![Ipv4Addr::new(10, 1, 2, 3)],
            start_unix_ns: 10_000_000_000,
            end_unix_ns: 20_000_000_000,
            settings: scenario::Settings::Ping {
                interval_ms: 1,
                payload: 1,
                ttl: 1,
                count: 1,
            },
            commands: vec![],
            exit_codes: vec![],
            packets: 0,
        }];
        let labels = Labels::from_records(&records);
        let src = crate::packets::synth::v4_mapped([10, 1, 2, 3]);
        let other = crate::packets::synth::v4_mapped([10, 1, 2, 4]);
        assert_eq!(
            labels.label(&src, 15_000_000_000),
            Some((ToolScenario::SynFlood, 1))
        );
        assert_eq!(
            labels.label(&src, 21_500_000_000),
            Some((ToolScenario::SynFlood, 1))
        );
        assert_eq!(labels.label(&src, 22_500_000_000), None, "after the grace");
        assert_eq!(labels.label(&src, 7_000_000_000), None, "before the grace");
        assert_eq!(labels.label(&other, 15_000_000_000), None);
    }
}
