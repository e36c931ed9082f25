//! `npk attach`, `npk detach`, `npk push`, `npk stats`: the classifier on a live interface.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use npk_common::{
    maps::{Action, Config, Counters, FLAG_FAIL_CLOSED},
    model::{MAX_CLASSES, Model},
};
use serde::Serialize;

use crate::{
    kernel::{
        ControlMaps, ProgramKind,
        attach::{self, AttachMode, pin_dir},
    },
    model_file::ModelFile,
};

fn load_model(path: &std::path::Path) -> Result<Box<Model>> {
    Ok(ModelFile::load(path)?.quantized.model)
}

/// `CLASS=ACTION`, e.g. `1=drop`.
#[derive(Clone, Debug)]
pub struct ClassAction(usize, Action);

impl std::str::FromStr for ClassAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (c, a) = s
            .split_once('=')
            .ok_or(format!("`{s}`: expected CLASS=ACTION, e.g. 1=drop"))?;
        let class: usize = c
            .parse()
            .map_err(|_| format!("`{c}` is not a class number"))?;
        if class >= MAX_CLASSES {
            return Err(format!(
                "class {class} is beyond the limit of {MAX_CLASSES} classes"
            ));
        }
        let action = match a {
            "pass" => Action::Pass,
            "drop" => Action::Drop,
            "count" => Action::Count,
            "sample" => Action::Sample,
            _ => return Err(format!("`{a}`: actions are pass, drop, count, sample")),
        };
        Ok(Self(class, action))
    }
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Network interface to classify the packets of, as `ip link` names it.
    #[arg(long)]
    iface: String,
    /// A packet-feature model file (from `npk train` on `npk features`/`npk capture` data).
    #[arg(long)]
    model: PathBuf,
    /// Where the classifier runs: native (driver) XDP, generic (skb) XDP or TC ingress.
    #[arg(long, value_enum, default_value = "native")]
    mode: AttachMode,
    /// Leave program and maps in bpffs after npk exits (`npk detach` removes them).
    #[arg(long)]
    pin: bool,
    /// What to do per class, e.g. `--action 1=drop --action 2=sample` (default: pass).
    #[arg(long = "action")]
    actions: Vec<ClassAction>,
    /// Re-run the model on a flow every N packets (1 = every packet).
    #[arg(long, default_value_t = 1)]
    reinfer: u32,
    /// Drop packets that cannot be parsed (default: pass them).
    #[arg(long)]
    fail_closed: bool,
}

#[derive(Debug, Args)]
pub struct DetachArgs {
    /// Interface whose classifier to remove, as given to `npk attach`.
    #[arg(long)]
    iface: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Interface with an attached classifier (`npk attach`).
    #[arg(long)]
    iface: String,
    /// The packet-feature model file that replaces the running one.
    #[arg(long)]
    model: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Interface with an attached classifier (`npk attach`).
    #[arg(long)]
    iface: String,
    /// Print every second until Ctrl-C.
    #[arg(long)]
    watch: bool,
    /// Print one JSON object per snapshot instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run_attach(args: AttachArgs) -> Result<()> {
    anyhow::ensure!(args.reinfer >= 1, "--reinfer must be at least 1");
    let model = load_model(&args.model)?;
    let mut class_action = [Action::Pass as u8; MAX_CLASSES];
    for ClassAction(c, a) in &args.actions {
        anyhow::ensure!(
            (*c as u32) < model.header.num_classes,
            "--action {c}=...: the model has {} classes",
            model.header.num_classes
        );
        class_action[*c] = *a as u8;
    }
    let config = Config {
        reinfer_every: args.reinfer,
        flags: if args.fail_closed {
            FLAG_FAIL_CLOSED
        } else {
            0
        },
        class_action,
        _pad: [0; 2],
    };
    let attachment = attach::attach(&args.iface, args.mode, &model, &config, args.pin)?;
    if args.pin {
        println!(
            "attached to {} ({:?}), pinned in {}; `npk detach --iface {}` removes it",
            args.iface,
            args.mode,
            pin_dir(&args.iface).display(),
            args.iface
        );
        return Ok(());
    }
    eprintln!(
        "attached to {} ({:?}); Ctrl-C detaches",
        args.iface, args.mode
    );
    let classes = model.header.num_classes as usize;
    let result = watch(&args.iface, false, classes, || {
        attachment.classifier.counters()
    });
    drop(attachment);
    eprintln!("detached from {}", args.iface);
    result
}

pub fn run_detach(args: DetachArgs) -> Result<()> {
    attach::detach(&args.iface)?;
    println!("detached from {}", args.iface);
    Ok(())
}

pub fn run_push(args: PushArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    let dir = pin_dir(&args.iface);
    if !dir.exists() {
        bail!(
            "npk is not attached to {} (no {}): `npk attach` first",
            args.iface,
            dir.display()
        );
    }
    let mut maps = ControlMaps::from_pins(&dir)?;
    let version = maps.push(&model, ProgramKind::Xdp.schema())?;
    println!("model version {version} active on {}", args.iface);
    Ok(())
}

pub fn run_stats(args: StatsArgs) -> Result<()> {
    let dir = pin_dir(&args.iface);
    if !dir.exists() {
        bail!(
            "npk is not attached to {} (no {})",
            args.iface,
            dir.display()
        );
    }
    let maps = ControlMaps::from_pins(&dir)?;
    let classes = maps
        .active_model()?
        .map_or(MAX_CLASSES as u32, |m| m.header.num_classes);
    if !args.watch {
        let s = Snapshot::take(&args.iface, maps.counters()?, classes as usize, None);
        print_snapshot(&s, args.json)?;
        return Ok(());
    }
    watch(&args.iface, args.json, classes as usize, || maps.counters())
}

#[derive(Debug, Serialize)]
struct Snapshot {
    class_packets: Vec<u64>,
    class_bytes: Vec<u64>,
    packets: u64,
    pps: Option<f64>,
    dropped: u64,
    non_ip: u64,
    unparsed: u64,
    truncated: u64,
    no_model: u64,
    inferences: u64,
    swap_retries: u64,
    swap_failures: u64,
    samples_lost: u64,
    /// Mean ns per packet from the kernel's run_time_ns / run_cnt (None when bpf stats are off).
    avg_ns_per_packet: Option<f64>,
}

impl Snapshot {
    fn take(iface: &str, c: Counters, classes: usize, pps: Option<f64>) -> Self {
        let classes = classes.min(MAX_CLASSES);
        let avg = attach::program_info(iface).ok().and_then(|i| {
            let n = i.run_count();
            (n > 0).then(|| i.run_time().as_nanos() as f64 / n as f64)
        });
        Self {
            class_packets: c.class_packets[..classes].to_vec(),
            class_bytes: c.class_bytes[..classes].to_vec(),
            packets: c.class_packets.iter().sum::<u64>()
                + c.non_ip
                + c.unparsed
                + c.truncated
                + c.no_model
                + c.swap_failures,
            pps,
            dropped: c.dropped,
            non_ip: c.non_ip,
            unparsed: c.unparsed,
            truncated: c.truncated,
            no_model: c.no_model,
            inferences: c.inferences,
            swap_retries: c.swap_retries,
            swap_failures: c.swap_failures,
            samples_lost: c.samples_lost,
            avg_ns_per_packet: avg,
        }
    }
}

fn print_snapshot(s: &Snapshot, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(s)?);
        return Ok(());
    }
    let per_class: Vec<String> = s
        .class_packets
        .iter()
        .enumerate()
        .map(|(c, n)| format!("c{c}={n}"))
        .collect();
    println!(
        "packets {} [{}] dropped {} | pps {} | unparsed {} truncated {} non-ip {} | {}",
        s.packets,
        per_class.join(" "),
        s.dropped,
        s.pps.map_or("-".into(), |p| format!("{p:.0}")),
        s.unparsed,
        s.truncated,
        s.non_ip,
        s.avg_ns_per_packet
            .map_or("ns/packet -".into(), |n| format!("{n:.0} ns/packet")),
    );
    Ok(())
}

/// Prints a snapshot every second until SIGINT/SIGTERM.
fn watch(
    iface: &str,
    json: bool,
    classes: usize,
    mut counters: impl FnMut() -> Result<Counters>,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last: Option<(Instant, u64)> = None;
        loop {
            tokio::select! {
                _ = term.recv() => return Ok(()),
                _ = int.recv() => return Ok(()),
                _ = tick.tick() => {
                    let c = counters()?;
                    let total: u64 = c.class_packets.iter().sum();
                    let now = Instant::now();
                    let pps = last.map(|(t, n)| (total - n) as f64 / (now - t).as_secs_f64());
                    last = Some((now, total));
                    print_snapshot(&Snapshot::take(iface, c, classes, pps), json)?;
                }
            }
        }
    })
}
