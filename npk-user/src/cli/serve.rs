//! `npk serve`: answer inference requests (npk_common::service::wire over UDP) in the kernel (XDP) or
//! from a userspace socket, until Ctrl-C, SIGTERM or --seconds.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use clap::Args;
use npk_common::{
    model::Model,
    service::wire::{DEFAULT_PORT, ServeCounters, Status},
};

use super::Hidden;
use crate::{
    kernel::attach::IfaceName,
    model_file::ModelFile,
    outln,
    output::ConsoleError,
    serve::{
        ServerEvent, ServerEventKind, XdpAttach,
        kernel::KernelServer,
        model::random_tabular_model,
        user::{IoStyle, UserServer},
    },
    sys::{pin_to_cpu, process_cpu_time, stop_flag},
};

/// How often the kernel server's process looks at the counters and the stop flag: the only
/// system calls it makes while serving, with reading the interface's addresses.
const POLL: Duration = Duration::from_millis(250);
/// How often the kernel server's addresses are compared with its interface's.
const ADDRESS_REFRESH: Duration = Duration::from_secs(1);

/// The model to serve or to check replies against: a model file, or a random tabular model
/// (every process given the same arguments builds the same one).
#[derive(Clone, Debug, Args)]
pub struct ModelArgs {
    /// Model file (`npk train --out`); without it, a random model as described below.
    #[arg(
        long,
        value_name = "MODEL",
        conflicts_with_all = ["inputs", "hidden", "classes", "model_seed"]
    )]
    pub model: Option<PathBuf>,
    /// Inputs (features per request) of the random model.
    #[arg(long, default_value_t = 4)]
    pub inputs: usize,
    /// Hidden layer widths of the random model.
    #[arg(long, default_value = "16,16")]
    pub hidden: Hidden,
    /// Classes of the random model.
    #[arg(long, default_value_t = 3)]
    pub classes: usize,
    /// Seed of the random model's weights.
    #[arg(long, default_value_t = 1)]
    pub model_seed: u64,
}

impl ModelArgs {
    pub fn build(&self) -> Result<Box<Model>> {
        if let Some(path) = &self.model {
            return Ok(ModelFile::load(path)?.kernel_model()?);
        }
        random_tabular_model(self.inputs, &self.hidden.0, self.classes, self.model_seed)
            .context("building the random model")
    }

    /// The same arguments for another npk process.
    pub fn to_args(&self) -> Result<Vec<String>> {
        if let Some(path) = &self.model {
            // Absolute: the other process may run elsewhere.
            let path = std::path::absolute(path)
                .with_context(|| format!("resolving {}", path.display()))?;
            return Ok(vec!["--model".into(), path.display().to_string()]);
        }
        let hidden: Vec<String> = self.hidden.0.iter().map(usize::to_string).collect();
        Ok(vec![
            "--inputs".into(),
            self.inputs.to_string(),
            "--hidden".into(),
            hidden.join(","),
            "--classes".into(),
            self.classes.to_string(),
            "--model-seed".into(),
            self.model_seed.to_string(),
        ])
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("server").args(["kernel", "user"]).required(true)))]
pub struct ServeArgs {
    /// Serve in the kernel: attach the XDP server to this interface (`--iface` as in the other
    /// commands).
    #[arg(long, value_name = "IFACE", visible_alias = "iface")]
    kernel: Option<IfaceName>,
    /// Serve from a userspace UDP socket.
    #[arg(long)]
    user: bool,
    /// UDP port served.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Address the userspace server binds (--user; the kernel server's socket for IP
    /// fragments binds all addresses of its interface).
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Userspace I/O style.
    #[arg(long, value_enum, default_value_t = IoStyle::Mmsg)]
    io: IoStyle,
    /// Datagrams per recvmmsg/sendmmsg call (--io mmsg).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// XDP attach mode (--kernel; `--mode` as in the other commands).
    #[arg(long, value_enum, default_value_t = XdpAttach::Skb, visible_alias = "mode")]
    xdp_mode: XdpAttach,
    /// Also attach to this veth peer, NETNS:IFACE, so that native-mode replies are accepted
    /// there (npk_serve passes them on).
    #[arg(long, value_name = "NETNS:IFACE")]
    peer: Option<String>,
    /// Stop after this many seconds (default: at Ctrl-C or SIGTERM).
    #[arg(long)]
    seconds: Option<f64>,
    /// Pin the server process to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Kernel server: leave the kernel's per-run time accounting off (it reads the clock
    /// twice per request); the server CPU time per request is then not reported.
    #[arg(long)]
    no_run_time: bool,
    /// One JSON line when serving starts and one with the counters at the end.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: ServeArgs) -> Result<()> {
    ensure!(args.port != 0, "--port 0 cannot be served");
    let model = args.model.build()?;
    if let Some(cpu) = args.cpu {
        pin_to_cpu(cpu).with_context(|| format!("--cpu {cpu}"))?;
    }
    let stop = stop_flag();
    if let Some(s) = args.seconds {
        ensure!(
            s.is_finite() && s > 0.0,
            "--seconds must be a positive number, not {s}"
        );
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(s));
            stop.store(true, Ordering::SeqCst);
        });
    }
    let start = Instant::now();
    let cpu_start = process_cpu_time();
    let (counters, cpu_ns_per_request) = match &args.kernel {
        Some(iface) => {
            let mut server = KernelServer::load(args.port)?;
            if args.no_run_time {
                server.stop_run_time_stats();
            }
            let version = server.push(&model)?;
            // What XDP passes (IP fragments, IPv6 extension headers) is answered here once
            // the stack has reassembled it, with the model the kernel serves.
            let mut pushed = model.clone();
            pushed.header.model_version = version;
            let mut passed = UserServer::bind_device(iface.as_str(), args.port, &pushed)?;
            server.attach(iface.as_str(), args.xdp_mode.mode())?;
            if let Some(peer) = &args.peer {
                let (netns, peer_if) = peer
                    .split_once(':')
                    .with_context(|| format!("--peer {peer}: expected NETNS:IFACE"))?;
                server.attach_in_netns(netns, peer_if, args.xdp_mode.mode())?;
            }
            let insns = server.verified_insns()?;
            ready(
                &args,
                &format!(
                    "in the kernel on {iface} ({} XDP, {insns} instructions verified)",
                    args.xdp_mode.name()
                ),
            )?;
            let mut kernel_log = server.take_log()?;
            let mut addrs = KernelServer::interface_addrs(iface.as_str())?;
            let mut read_at = Instant::now();
            let passed = std::thread::scope(|s| {
                let serving: Vec<_> = passed.iter_mut().map(|p| s.spawn(|| p.run(stop))).collect();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(POLL);
                    kernel_log.forward();
                    // Addresses added or removed are served (or no longer) within a second.
                    if read_at.elapsed() >= ADDRESS_REFRESH {
                        read_at = Instant::now();
                        match KernelServer::interface_addrs(iface.as_str()) {
                            Ok(now) if now != addrs => {
                                if let Err(e) = server.set_addresses(&now) {
                                    crate::noteln!("npk serve: updating the served addresses: {e}");
                                }
                                addrs = now;
                            }
                            _ => {}
                        }
                    }
                }
                serving
                    .into_iter()
                    .map(|t| t.join().expect("the socket servers do not panic"))
                    .collect::<Result<Vec<_>, _>>()
            })?;
            let mut counters = server.counters()?;
            for c in &passed {
                counters.add(c);
            }
            // Every frame the program saw was a request in a benchmark; elsewhere passed
            // frames (cheap) lower the mean.
            (counters, server.ns_per_run()?)
        }
        None => {
            let io = args.io.with_batch(args.batch);
            let mut server = UserServer::bind(SocketAddr::new(args.bind, args.port), model, io)?;
            ready(
                &args,
                &format!("from userspace ({}) on {}", io.name(), server.local_addr()?),
            )?;
            let counters = server.run(stop)?;
            let cpu = (process_cpu_time() - cpu_start).as_nanos() as f64;
            (
                counters,
                (counters.requests > 0).then(|| cpu / counters.requests as f64),
            )
        }
    };
    if args.json {
        let mut event = ServerEvent::from_counters(ServerEventKind::Stopped, &counters);
        event.cpu_ns_per_request = cpu_ns_per_request;
        outln!("{}", serde_json::to_string(&event)?)?;
    } else {
        print_counters(&counters, start.elapsed())?;
        if let Some(ns) = cpu_ns_per_request {
            outln!("server CPU time: {ns:.0} ns per request")?;
        }
    }
    Ok(())
}

/// The line whoever started the server waits for: when it cannot be written, nobody is
/// listening and the server does not start.
fn ready(args: &ServeArgs, what: &str) -> Result<()> {
    if args.json {
        let event =
            ServerEvent::from_counters(ServerEventKind::Ready, &bytemuck::Zeroable::zeroed());
        outln!("{}", serde_json::to_string(&event)?)?;
    } else {
        outln!(
            "serving port {} {what} (pid {}); Ctrl-C stops",
            args.port,
            std::process::id()
        )?;
    }
    Ok(())
}

fn print_counters(c: &ServeCounters, elapsed: Duration) -> Result<(), ConsoleError> {
    outln!(
        "{} requests in {:.1} s; replies:",
        c.requests,
        elapsed.as_secs_f64()
    )?;
    for s in Status::ALL {
        let n = c.replies[s as usize];
        if n > 0 {
            outln!("  {:<20} {n}", s.name())?;
        }
    }
    if c.malformed + c.unsupported + c.tx_errors > 0 {
        outln!(
            "  malformed {} unsupported {} tx errors {}",
            c.malformed,
            c.unsupported,
            c.tx_errors
        )?;
    }
    if c.refused_address + c.refused_amplifying > 0 {
        outln!(
            "  unanswered: {} from or to an address not served, {} shorter than their reply",
            c.refused_address,
            c.refused_amplifying
        )?;
    }
    Ok(())
}
