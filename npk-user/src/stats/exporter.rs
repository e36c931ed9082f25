//! `npk exporter`: every npk attachment and kernel server on the host, in the Prometheus text
//! format (version 0.0.4), read fresh from the kernel at each scrape.
//!
//! Attachments are found as `npk stats` and `npk cleanup` find them: the directories under
//! `/sys/fs/bpf/npk` whose pinned program the kernel runs on the interface now (stale pins are
//! left out; a renamed interface is shown by its name now). Kernel servers (`npk serve
//! --kernel`) pin nothing: they are the loaded programs named `npk_serve` that an interface of
//! this network namespace runs (labelled by that interface: a reload's new program id is the
//! same server), their counters the map `NPK_SERVE_STATS` among the program's maps.
//! Metric names, help and units of the classifier come from [`super::COUNTERS`]; encoding
//! is prometheus-client's.

use std::{
    fmt, io,
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use aya::{
    maps::{Map, MapData, MapInfo, PerCpuArray},
    programs::{ProgramInfo, loaded_programs},
};
use npk_common::{
    maps::Counters,
    model::{MAX_CLASSES, Model},
    service::wire::{MAP_SERVE_STATS, NUM_STATUSES, PROG_SERVE, ServeCounters, Status},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, prometheus_text},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use super::{CLASS_COUNTERS, COUNTERS};
use crate::kernel::{
    ControlMaps,
    attach::{self, AttachMode, IfaceName, PinState},
};

/// The port `npk exporter` listens on by default (on 127.0.0.1 only).
pub const DEFAULT_PORT: u16 = 9595;

/// The exposition's content type (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error("listing npk's pins: {0}")]
    Pins(#[from] attach::AttachError),
    #[error("reading the attachment on {iface}: {source}")]
    Attachment {
        iface: IfaceName,
        source: Box<crate::kernel::KernelError>,
    },
    #[error("reading the program attached to {iface}: {source}")]
    Program {
        iface: IfaceName,
        source: Box<attach::PinsError>,
    },
    #[error("listing the kernel's BPF programs: {0}")]
    Programs(#[from] aya::programs::ProgramError),
    #[error("reading map {MAP_SERVE_STATS} of program {program_id}: {source}")]
    ServerMap {
        program_id: u32,
        source: aya::maps::MapError,
    },
    #[error("encoding the metrics: {0}")]
    Encode(#[from] fmt::Error),
    #[error("listening on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
}

/// The kernel's accounting of a program (kept while kernel.bpf_stats_enabled is on).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunTime {
    pub runs: u64,
    pub time: Duration,
}

impl RunTime {
    /// None while the kernel keeps no accounting (no run counted).
    fn of(info: &ProgramInfo) -> Option<Self> {
        (info.run_count() > 0).then(|| Self {
            runs: info.run_count(),
            time: info.run_time(),
        })
    }
}

/// The active model of an attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub version: u32,
    /// CRC32 of the model as pushed, version field zeroed: the same weights give the same id
    /// on every host and after every push.
    pub id: u32,
    pub classes: u32,
    pub inputs: u32,
}

impl ModelInfo {
    pub fn of(model: &Model) -> Self {
        let mut unversioned = bytemuck::zeroed_box::<Model>();
        *unversioned = *model;
        unversioned.header.model_version = 0;
        Self {
            version: model.header.model_version,
            id: crc32fast::hash(bytemuck::bytes_of(&*unversioned)),
            classes: model.header.num_classes,
            inputs: model.header.num_inputs,
        }
    }
}

/// One live attachment.
#[derive(Clone, Debug)]
pub struct AttachmentStats {
    /// The interface's name now.
    pub iface: IfaceName,
    /// Its pin directory (named after the interface's name when it was attached).
    pub pins: std::path::PathBuf,
    /// Where the kernel runs it.
    pub mode: AttachMode,
    pub program: ProgramSummary,
    /// `npk attach --pin`: it stays attached without a process.
    pub pinned_link: bool,
    /// The foreground `npk attach` that holds it, while it runs.
    pub owner: Option<u32>,
    pub counters: Counters,
    pub model: Option<ModelInfo>,
    pub run_time: Option<RunTime>,
}

/// The attached program as the kernel knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSummary {
    pub name: String,
    pub id: u32,
    /// When it was loaded (the kernel's boot-time clock, converted).
    pub loaded_at: Option<SystemTime>,
}

impl ProgramSummary {
    fn of(info: &ProgramInfo) -> Self {
        Self {
            name: info.name_as_str().unwrap_or("?").to_string(),
            id: info.id(),
            loaded_at: info.loaded_at(),
        }
    }
}

/// One kernel server.
#[derive(Clone, Debug)]
pub struct ServerStats {
    /// The interface it serves on (the first by name when it serves on several).
    pub iface: IfaceName,
    pub program_id: u32,
    pub counters: ServeCounters,
    pub run_time: Option<RunTime>,
}

/// Everything the exporter shows, read at one moment.
#[derive(Debug, Default)]
pub struct HostStats {
    pub attachments: Vec<AttachmentStats>,
    pub servers: Vec<ServerStats>,
    /// The pin directories that are no live attachment here (stale, being made, another
    /// namespace's): `npk status` lists them, the exposition does not.
    pub other_pins: Vec<attach::PinDir>,
}

impl HostStats {
    /// Reads every live attachment and kernel server now.
    pub fn read() -> Result<Self, ExporterError> {
        let (mut attachments, mut other_pins) = (Vec::new(), Vec::new());
        for dir in attach::pin_dirs()? {
            // `<iface>:<pid>` directories are attachments being made: not yet there.
            let Some(iface) = dir
                .dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<IfaceName>().ok())
            else {
                other_pins.push(dir);
                continue;
            };
            // Stale, half-made or gone since the listing: not an attachment.
            let (iface, how) = match attach::pin_state(&iface) {
                Ok(Some(PinState::Attached {
                    mode,
                    pinned_link,
                    running_owner,
                })) => (
                    iface,
                    How {
                        mode,
                        pinned_link,
                        owner: running_owner,
                    },
                ),
                // Listed under the interface's name now; its pins stay under the old one.
                Ok(Some(PinState::Renamed { now, mode })) => (
                    now,
                    How {
                        mode,
                        pinned_link: true,
                        owner: None,
                    },
                ),
                _ => {
                    other_pins.push(dir);
                    continue;
                }
            };
            match read_attachment(&iface, &dir.dir, how) {
                Ok(a) => attachments.push(a),
                // Detached while being read: gone, not an error.
                Err(_) if !attached(&iface) => {}
                Err(e) => return Err(e),
            }
        }
        let mut servers = Vec::new();
        for info in loaded_programs() {
            let info = info?;
            if info.name_as_str() == Some(PROG_SERVE)
                && let Some(server) = read_server(&info)?
            {
                servers.push(server);
            }
        }
        attachments.sort_by(|a, b| a.iface.as_str().cmp(b.iface.as_str()));
        servers.sort_by_key(|s| s.program_id);
        Ok(Self {
            attachments,
            servers,
            other_pins,
        })
    }

    /// The Prometheus text exposition of these numbers.
    pub fn encode(self) -> Result<String, ExporterError> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry)?;
        Ok(text)
    }
}

/// Whether the kernel runs the program pinned for `iface` there now.
fn attached(iface: &IfaceName) -> bool {
    attach::live_pins(iface).is_ok()
}

/// How an attachment is attached, from its [`PinState::Attached`].
struct How {
    mode: AttachMode,
    pinned_link: bool,
    owner: Option<u32>,
}

fn read_attachment(
    iface: &IfaceName,
    dir: &std::path::Path,
    how: How,
) -> Result<AttachmentStats, ExporterError> {
    let failed = |source: crate::kernel::KernelError| ExporterError::Attachment {
        iface: iface.clone(),
        source: Box::new(source),
    };
    let maps = ControlMaps::from_pins(dir).map_err(failed)?;
    let info = attach::pinned_program_in(dir).map_err(|source| ExporterError::Program {
        iface: iface.clone(),
        source: Box::new(source),
    })?;
    Ok(AttachmentStats {
        iface: iface.clone(),
        pins: dir.to_path_buf(),
        mode: how.mode,
        program: ProgramSummary::of(&info),
        pinned_link: how.pinned_link,
        owner: how.owner,
        counters: maps.counters().map_err(failed)?,
        model: maps
            .active_model()
            .map_err(failed)?
            .map(|m| ModelInfo::of(&m)),
        run_time: RunTime::of(&info),
    })
}

/// The counters of a loaded `npk_serve` (None: it has no server map, so it is not npk's, or
/// it serves on no interface of this network namespace).
fn read_server(info: &ProgramInfo) -> Result<Option<ServerStats>, ExporterError> {
    let program_id = info.id();
    let Some(iface) = attach::xdp_interfaces_running(program_id)
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let map_error = |source| ExporterError::ServerMap { program_id, source };
    let map_ids = info
        .map_ids()
        .map_err(ExporterError::Programs)?
        .unwrap_or_default();
    for id in map_ids {
        // A map freed since the listing is simply not there.
        let Ok(map) = MapInfo::from_id(id) else {
            continue;
        };
        if map.name_as_str() != Some(MAP_SERVE_STATS) {
            continue;
        }
        let data = MapData::from_id(id).map_err(map_error)?;
        let map = Map::from_map_data(data).map_err(map_error)?;
        let per_cpu = PerCpuArray::<_, ServeCounters>::try_from(&map).map_err(map_error)?;
        let mut counters: ServeCounters = bytemuck::Zeroable::zeroed();
        for c in per_cpu.get(&0, 0).map_err(map_error)?.iter() {
            counters.add(c);
        }
        return Ok(Some(ServerStats {
            iface,
            program_id,
            counters,
            run_time: RunTime::of(info),
        }));
    }
    Ok(None)
}

/// A counter of the kernel server besides the replies per status (ServeCounters' fields).
struct ServerCounterDesc {
    metric: &'static str,
    help: &'static str,
    read: fn(&ServeCounters) -> u64,
}

const SERVER_COUNTERS: [ServerCounterDesc; 8] = [
    ServerCounterDesc {
        metric: "npk_server_requests",
        help: "UDP datagrams to the served port with sound IP and UDP headers",
        read: |c| c.requests,
    },
    ServerCounterDesc {
        metric: "npk_server_passed_packets",
        help: "Frames not for the server, passed to the stack",
        read: |c| c.passed,
    },
    ServerCounterDesc {
        metric: "npk_server_malformed_packets",
        help: "Frames to the served port with inconsistent IP or UDP lengths (passed)",
        read: |c| c.malformed,
    },
    ServerCounterDesc {
        metric: "npk_server_unsupported_packets",
        help: "IPv4 fragments and IPv6 with extension headers (passed)",
        read: |c| c.unsupported,
    },
    ServerCounterDesc {
        metric: "npk_server_swap_retry_inferences",
        help: "Inferences run again because a push rewrote the model slot under them",
        read: |c| c.swap_retries,
    },
    ServerCounterDesc {
        metric: "npk_server_tx_error_replies",
        help: "Replies that could not be written into the frame (dropped)",
        read: |c| c.tx_errors,
    },
    ServerCounterDesc {
        metric: "npk_server_refused_address_packets",
        help: "Datagrams to the served port from or to an address the server does not answer \
               (broadcast, multicast, not its own; passed)",
        read: |c| c.refused_address,
    },
    ServerCounterDesc {
        metric: "npk_server_refused_amplifying_requests",
        help: "Requests shorter than their reply would be (unpadded): dropped unanswered",
        read: |c| c.refused_amplifying,
    },
];

type Labels = Vec<(&'static str, String)>;

/// One metric family: its descriptor, then one sample per label set.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: impl IntoIterator<Item = (Labels, M)>,
) -> Result<(), fmt::Error> {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

impl Collector for HostStats {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), fmt::Error> {
        let iface = |a: &AttachmentStats| vec![("interface", a.iface.as_str().to_string())];
        // Labelled by interface, not by program id: a reload makes a new id, not a new server.
        let server = |s: &ServerStats| vec![("interface", s.iface.as_str().to_string())];
        family(
            &mut e,
            "npk_build_info",
            "The npk that serves these metrics: its version (always 1)",
            MetricType::Gauge,
            [(
                vec![("version", env!("CARGO_PKG_VERSION").to_string())],
                ConstGauge::new(1i64),
            )],
        )?;
        for d in &CLASS_COUNTERS {
            let samples = self.attachments.iter().flat_map(|a| {
                let classes = a.model.as_ref().map_or(MAX_CLASSES, |m| m.classes as usize);
                (d.read)(&a.counters)[..classes.min(MAX_CLASSES)]
                    .iter()
                    .enumerate()
                    .map(move |(class, n)| {
                        let mut labels = iface(a);
                        labels.push(("class", class.to_string()));
                        (labels, counter(*n))
                    })
            });
            family(&mut e, d.metric, d.help, MetricType::Counter, samples)?;
        }
        for d in &COUNTERS {
            let samples = self
                .attachments
                .iter()
                .map(|a| (iface(a), counter((d.read)(&a.counters))));
            family(&mut e, d.metric, d.help, MetricType::Counter, samples)?;
        }
        let models = || {
            self.attachments
                .iter()
                .filter_map(|a| Some((a, a.model.as_ref()?)))
        };
        family(
            &mut e,
            "npk_model_info",
            "The active model: version (bumped by every push), id (CRC32 of its weights), \
             classes and inputs; the value is always 1",
            MetricType::Gauge,
            models().map(|(a, m)| {
                let mut labels = iface(a);
                labels.extend([
                    ("version", m.version.to_string()),
                    ("id", format!("{:08x}", m.id)),
                    ("classes", m.classes.to_string()),
                    ("inputs", m.inputs.to_string()),
                ]);
                (labels, ConstGauge::new(1i64))
            }),
        )?;
        family(
            &mut e,
            "npk_model_version",
            "Version of the active model (bumped by every push)",
            MetricType::Gauge,
            models().map(|(a, m)| (iface(a), ConstGauge::new(i64::from(m.version)))),
        )?;
        let runs = || {
            self.attachments
                .iter()
                .filter_map(|a| Some((iface(a), a.run_time?)))
                .chain(self.servers.iter().filter_map(|s| {
                    let mut labels = server(s);
                    labels.push(("program", PROG_SERVE.to_string()));
                    Some((labels, s.run_time?))
                }))
        };
        family(
            &mut e,
            "npk_program_runs",
            "Runs of the program the kernel counted (kernel.bpf_stats_enabled on)",
            MetricType::Counter,
            runs().map(|(l, r)| (l, counter(r.runs))),
        )?;
        family(
            &mut e,
            "npk_program_run_seconds",
            "Time the kernel spent in the program (kernel.bpf_stats_enabled on)",
            MetricType::Counter,
            runs().map(|(l, r)| (l, ConstCounter::new(r.time.as_secs_f64()))),
        )?;
        family(
            &mut e,
            "npk_program_seconds_per_run",
            "Mean time per program run, i.e. per packet, since the program was loaded",
            MetricType::Gauge,
            runs().map(|(l, r)| {
                let mean = r.time.as_secs_f64() / r.runs as f64;
                (l, ConstGauge::new(mean))
            }),
        )?;
        family(
            &mut e,
            "npk_server_replies",
            "Replies of the kernel server, by wire status",
            MetricType::Counter,
            self.servers.iter().flat_map(|s| {
                (0..NUM_STATUSES).map(move |i| {
                    let mut labels = server(s);
                    labels.push(("status", Status::ALL[i].name().to_string()));
                    (labels, counter(s.counters.replies[i]))
                })
            }),
        )?;
        for d in &SERVER_COUNTERS {
            let samples = self
                .servers
                .iter()
                .map(|s| (server(s), counter((d.read)(&s.counters))));
            family(&mut e, d.metric, d.help, MetricType::Counter, samples)?;
        }
        Ok(())
    }
}

/// Connections served at once; more are closed as they come (a scrape needs one).
const MAX_CONNECTIONS: usize = 128;
/// How long a connection may stay open: a scrape takes milliseconds, and Prometheus opens
/// a new connection when its kept-alive one is gone.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(10);
/// Descriptors kept for reading the maps and pins of a scrape (six maps and a directory per
/// attachment, a few per kernel server) beside the connections.
const RESERVED_DESCRIPTORS: u64 = 24;
/// The wait after a failed accept (no descriptor left) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How many connections to serve at once: MAX_CONNECTIONS, or fewer when the descriptor
/// limit would not leave RESERVED_DESCRIPTORS for the scrapes themselves (the soft limit is
/// raised to the hard one first, as servers do).
fn connection_cap() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return MAX_CONNECTIONS;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                ..limit
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    let spare = limit.rlim_cur.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    MAX_CONNECTIONS.min(usize::try_from(spare).unwrap_or(usize::MAX))
}

/// Serves `GET /metrics` on `listener` until `stop` completes; every other path is 404.
/// Bounded: at most [`connection_cap`] connections at once (more are closed as they come),
/// each for at most CONNECTION_LIFETIME; a failed accept (descriptors exhausted anyway) is
/// logged and retried, never the end of the exporter.
pub async fn serve(
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ExporterError> {
    use http_body_util::Full;
    use hyper::{Request, Response, StatusCode, body::Bytes, header, service::service_fn};

    let addr = listener
        .local_addr()
        .map_err(|source| ExporterError::Listen {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
    let handle = |request: Request<hyper::body::Incoming>| async move {
        let reply = |status: StatusCode, kind: &str, body: String| {
            Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, kind)
                .body(Full::new(Bytes::from(body)))
        };
        if request.uri().path() != "/metrics" {
            return reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "npk exporter: the metrics are at /metrics\n".into(),
            );
        }
        match HostStats::read().and_then(HostStats::encode) {
            Ok(text) => reply(StatusCode::OK, CONTENT_TYPE, text),
            Err(e) => {
                crate::noteln!("npk exporter: {e}");
                reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("{e}\n"),
                )
            }
        }
    };
    tokio::pin!(stop);
    let max_connections = connection_cap();
    let open = std::rc::Rc::new(std::cell::Cell::new(0usize));
    // Said once per run of failures, not every ACCEPT_RETRY.
    let mut accept_failing = false;
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => {
                        if std::mem::take(&mut accept_failing) {
                            crate::noteln!("npk exporter: accepting connections again");
                        }
                        stream
                    }
                    // Out of descriptors (or memory): the clients already connected still
                    // get their answers and close; try again shortly instead of exiting.
                    Err(e) => {
                        if !std::mem::replace(&mut accept_failing, true) {
                            crate::noteln!(
                                "npk exporter: accepting a connection on {addr}: {e} (retrying)"
                            );
                        }
                        tokio::time::sleep(ACCEPT_RETRY).await;
                        continue;
                    }
                };
                if open.get() >= max_connections {
                    // Closed at once: the descriptors stay for the clients being served.
                    drop(stream);
                    continue;
                }
                open.set(open.get() + 1);
                let io = hyper_util::rt::TokioIo::new(stream);
                let open = open.clone();
                tokio::task::spawn_local(async move {
                    // A client that goes away mid-request ends only its connection; one that
                    // stays (idle, or trickling bytes) is closed after CONNECTION_LIFETIME.
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service_fn(handle));
                    let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
                    open.set(open.get() - 1);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> HostStats {
        let mut counters: Counters = bytemuck::Zeroable::zeroed();
        counters.class_packets[..2].copy_from_slice(&[7, 3]);
        counters.class_bytes[..2].copy_from_slice(&[700, 300]);
        counters.non_ip = 2;
        counters.dropped = 3;
        let mut serve: ServeCounters = bytemuck::Zeroable::zeroed();
        serve.requests = 5;
        serve.replies[0] = 4;
        serve.replies[Status::NoModel as usize] = 1;
        let run_time = Some(RunTime {
            runs: 12,
            time: Duration::from_micros(6),
        });
        HostStats {
            attachments: vec![AttachmentStats {
                iface: "eth0".parse().unwrap(),
                pins: "/sys/fs/bpf/npk/eth0".into(),
                mode: AttachMode::Native,
                program: ProgramSummary {
                    name: "npk_bounded_32".into(),
                    id: 40,
                    loaded_at: None,
                },
                pinned_link: true,
                owner: None,
                counters,
                model: Some(ModelInfo {
                    version: 2,
                    id: 0xdead_beef,
                    classes: 2,
                    inputs: 26,
                }),
                run_time,
            }],
            servers: vec![ServerStats {
                iface: "eth1".parse().unwrap(),
                program_id: 41,
                counters: serve,
                run_time,
            }],
            other_pins: Vec::new(),
        }
    }

    /// Every metric name the exporter can emit (a `# TYPE` line of [`example`]'s exposition).
    fn emitted_names() -> Vec<String> {
        example()
            .encode()
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_exposition_names_units_and_labels_every_counter() {
        let text = example().encode().unwrap();
        for line in [
            "# TYPE npk_packets_total counter",
            "npk_packets_total{interface=\"eth0\"} 12",
            "npk_class_packets_total{interface=\"eth0\",class=\"1\"} 3",
            "npk_class_bytes_total{interface=\"eth0\",class=\"0\"} 700",
            "npk_dropped_packets_total{interface=\"eth0\"} 3",
            "npk_model_info{interface=\"eth0\",version=\"2\",id=\"deadbeef\",classes=\"2\",inputs=\"26\"} 1",
            "npk_model_version{interface=\"eth0\"} 2",
            "npk_program_runs_total{interface=\"eth0\"} 12",
            "npk_program_seconds_per_run{interface=\"eth1\",program=\"npk_serve\"} 5e-7",
            "npk_server_replies_total{interface=\"eth1\",status=\"NO_MODEL\"} 1",
            "npk_server_requests_total{interface=\"eth1\"} 5",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Only the model's classes.
        assert!(!text.contains("class=\"2\""), "{text}");
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(helps, types);
        // The build info, the attachments' families, the servers'.
        assert_eq!(
            types,
            1 + 2 + COUNTERS.len() + 5 + 1 + SERVER_COUNTERS.len()
        );
    }

    /// Every PromQL expression of the dashboard, wherever it sits in the panels.
    fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => exprs(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_dashboard_queries_only_metrics_the_exporter_emits_and_shows_them_all() {
        let text = include_str!("../../../deploy/grafana-npk.json");
        let dashboard: serde_json::Value = serde_json::from_str(text).unwrap();
        let mut queries = Vec::new();
        exprs(&dashboard, &mut queries);
        assert!(queries.len() > 10, "{queries:?}");
        let emitted = emitted_names();
        let mut queried = std::collections::BTreeSet::new();
        for expr in &queries {
            let mut names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("npk_"))
                .peekable();
            assert!(names.peek().is_some(), "{expr} queries no npk metric");
            // Every host's series apart (the instance variable), rates over Grafana's own
            // window for the scrape interval.
            assert!(expr.contains(r#"instance=~"$instance""#), "{expr}");
            assert!(
                !expr.contains("rate(") || expr.contains("[$__rate_interval]"),
                "{expr}"
            );
            assert!(
                !expr.contains("sum by") || expr.contains("sum by (instance,"),
                "{expr}"
            );
            for name in names {
                assert!(
                    emitted.iter().any(|e| e == name),
                    "{expr}: npk exporter has no {name}"
                );
                queried.insert(name.to_string());
            }
        }
        for name in &emitted {
            assert!(
                queried.contains(name.as_str()),
                "the dashboard does not show {name}"
            );
        }
    }

    #[test]
    fn nothing_to_show_is_the_build_info_alone() {
        let text = HostStats::default().encode().unwrap();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [format!(
                "npk_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )],
            "{text}"
        );
    }

    #[test]
    fn the_model_id_ignores_the_version() {
        let mut model = bytemuck::zeroed_box::<Model>();
        model.header.num_classes = 3;
        let first = ModelInfo::of(&model);
        model.header.model_version = 9;
        let again = ModelInfo::of(&model);
        assert_eq!((first.id, again.version), (again.id, 9));
        model.layers[0].bias[0] = 1;
        assert_ne!(ModelInfo::of(&model).id, first.id);
    }
}
