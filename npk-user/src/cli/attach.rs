//! `npk attach`, `npk detach`, `npk push`, `npk stats`: the classifier on a live interface.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use npk_common::{
    maps::{Action, Config, Counters, FLAG_FAIL_CLOSED},
    model::{FeatureSchema, MAX_CLASSES, Model},
};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::{
    kernel::{
        ControlMaps,
        attach::{self, AttachMode, IfaceName, pin_dir},
    },
    model_file::ModelFile,
    noteln, outln,
    output::ConsoleError,
    stats::{self, Snapshot},
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
    /// The interface to classify the ingress traffic of (see `ip link`).
    #[arg(long)]
    iface: IfaceName,
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
    /// The interface npk is attached to; stale pins of a killed attach are removed too.
    #[arg(long)]
    iface: IfaceName,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The interface npk is attached to.
    #[arg(long)]
    iface: IfaceName,
    /// The new model: same features as the attached one, and no class the attachment's
    /// actions do not cover (see --allow-unmapped-classes).
    #[arg(long)]
    model: PathBuf,
    /// Accept a model with more classes than the one the attachment was configured for
    /// (`npk attach --action`): the extra classes pass.
    #[arg(long)]
    allow_unmapped_classes: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The interface npk is attached to.
    #[arg(long)]
    iface: IfaceName,
    /// Print every second until Ctrl-C.
    #[arg(long)]
    watch: bool,
    /// One JSON object per snapshot.
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
    // Caught before anything is attached: every stop signal from here on cleans up.
    let stop = StopSignals::install()?;
    let attachment = attach::attach(&args.iface, args.mode, &model, &config, args.pin)?;
    if let Some(stale) = &attachment.replaced_stale {
        noteln!(
            "removed the stale pins of an earlier attach on {}: {stale}",
            args.iface
        );
    }
    if args.pin {
        outln!(
            "attached to {} ({:?}), pinned in {}; `npk detach --iface {}` removes it",
            args.iface,
            args.mode,
            pin_dir(&args.iface).display(),
            args.iface
        )?;
        return Ok(());
    }
    noteln!(
        "attached to {} ({:?}); Ctrl-C detaches",
        args.iface,
        args.mode
    );
    let classes = model.header.num_classes as usize;
    let result = stop.watch(
        &args.iface,
        false,
        classes,
        || attachment.classifier.counters(),
        || Ok(attachment.lost()?),
    );
    drop(attachment);
    match &result {
        Ok(()) => noteln!("detached from {}", args.iface),
        // `npk attach ... | head`: the reader went away, the watch ended like at Ctrl-C.
        Err(e)
            if e.downcast_ref::<ConsoleError>()
                .is_some_and(ConsoleError::is_broken_pipe) =>
        {
            noteln!("detached from {}: standard output was closed", args.iface)
        }
        Err(_) => noteln!("pins of {} removed", args.iface),
    }
    result
}

pub fn run_detach(args: DetachArgs) -> Result<()> {
    let detached = attach::detach(&args.iface)?;
    let printed = match &detached.stale {
        None => outln!("detached from {}", args.iface),
        Some(stale) => outln!(
            "nothing was attached to {} any more ({stale}); removed its stale pins",
            args.iface
        ),
    };
    if !detached.leftovers.unknown.is_empty() {
        noteln!(
            "kept {}: it also holds files npk did not create: {}",
            pin_dir(&args.iface).display(),
            detached.leftovers.unknown.join(", ")
        );
    }
    Ok(printed?)
}

pub fn run_push(args: PushArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    let dir = attach::live_pins(&args.iface)?;
    let kind = attach::pinned_kind(&dir)?;
    let mut maps = ControlMaps::from_pins(&dir)?;
    if let Some(active) = maps.active_model()? {
        check_compatible(&active, &model, &args)?;
    }
    let version = maps.push(&model, kind.schema())?;
    outln!("model version {version} active on {}", args.iface)?;
    Ok(())
}

/// A pushed model must compute from the same features as the active one, and every class it
/// can output must have the action `npk attach --action` chose: the attachment's actions
/// cover the classes of the model it was configured with (later pushes keep that count unless
/// --allow-unmapped-classes raised it).
fn check_compatible(active: &Model, new: &Model, args: &PushArgs) -> Result<()> {
    let (a, n) = (&active.header, &new.header);
    let schema = |h: &npk_common::model::ModelHeader| {
        format!(
            "{:?} with {} inputs",
            FeatureSchema::from_u32(h.feature_schema),
            h.num_inputs
        )
    };
    if (a.feature_schema, a.num_inputs) != (n.feature_schema, n.num_inputs) {
        bail!(
            "{} computes from {} but the program on {} from {}: push a model trained on the \
             same features",
            args.model.display(),
            schema(n),
            args.iface,
            schema(a)
        );
    }
    if n.num_classes > a.num_classes && !args.allow_unmapped_classes {
        let unmapped: Vec<String> = (a.num_classes..n.num_classes)
            .map(|c| c.to_string())
            .collect();
        bail!(
            "{} has {} classes, the attachment on {} has actions for {} (classes 0..={}): \
             class{} {} would have no action. Attach again with --action for them \
             (`npk detach --iface {}`, `npk attach ... --action {}=...`), or push with \
             --allow-unmapped-classes to let them pass",
            args.model.display(),
            n.num_classes,
            args.iface,
            a.num_classes,
            a.num_classes - 1,
            if unmapped.len() == 1 { "" } else { "es" },
            unmapped.join(", "),
            args.iface,
            unmapped[0],
        );
    }
    Ok(())
}

pub fn run_stats(args: StatsArgs) -> Result<()> {
    let dir = attach::live_pins(&args.iface)?;
    let maps = ControlMaps::from_pins(&dir)?;
    let classes = maps
        .active_model()?
        .map_or(MAX_CLASSES as u32, |m| m.header.num_classes);
    if !args.watch {
        let s = snapshot(&args.iface, maps.counters()?, classes as usize, None);
        print_snapshot(&s, args.json)?;
        return Ok(());
    }
    StopSignals::install()?.watch(
        &args.iface,
        args.json,
        classes as usize,
        || maps.counters(),
        || match attach::pin_state(&args.iface)? {
            Some(attach::PinState::Stale(stale)) => Ok(Some(stale)),
            // Detached meanwhile.
            None => Ok(Some(attach::Stale::NotAttached { owner: None })),
            _ => Ok(None),
        },
    )
}

/// The counters of `iface` now, with the kernel's mean run time when it keeps one.
fn snapshot(iface: &IfaceName, counters: Counters, classes: usize, pps: Option<f64>) -> Snapshot {
    let avg_ns_per_packet = attach::program_info(iface).ok().and_then(|i| {
        let n = i.run_count();
        (n > 0).then(|| i.run_time().as_nanos() as f64 / n as f64)
    });
    Snapshot {
        counters,
        classes,
        pps,
        avg_ns_per_packet,
    }
}

fn print_snapshot(s: &Snapshot, json: bool) -> Result<()> {
    if json {
        outln!("{}", s.to_json())?;
    } else {
        outln!("{}", s.line())?;
    }
    Ok(())
}

/// SIGINT, SIGTERM and SIGHUP (a closed terminal), caught from before an attachment exists
/// until it is gone, so that each of them ends the watch and the attachment is cleaned up.
struct StopSignals {
    rt: tokio::runtime::Runtime,
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl StopSignals {
    fn install() -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let _context = rt.enter();
        let install = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("installing a {name} handler"))
        };
        Ok(Self {
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
            hup: install(SignalKind::hangup(), "SIGHUP")?,
            rt,
        })
    }

    /// Prints a snapshot every second until a stop signal (Ok) or until `lost` says the
    /// attachment is gone (an error that says why).
    fn watch(
        mut self,
        iface: &IfaceName,
        json: bool,
        classes: usize,
        mut counters: impl FnMut() -> Result<Counters>,
        mut lost: impl FnMut() -> Result<Option<attach::Stale>>,
    ) -> Result<()> {
        self.rt.block_on(async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut last: Option<(Instant, u64)> = None;
            loop {
                tokio::select! {
                    _ = self.term.recv() => return Ok(()),
                    _ = self.int.recv() => return Ok(()),
                    _ = self.hup.recv() => return Ok(()),
                    _ = tick.tick() => {
                        if let Some(why) = lost()? {
                            bail!("the classifier on {iface} is gone: {why}");
                        }
                        let c = counters()?;
                        let total = stats::packets(&c);
                        let now = Instant::now();
                        let pps = last.map(|(t, n)| (total - n) as f64 / (now - t).as_secs_f64());
                        last = Some((now, total));
                        print_snapshot(&snapshot(iface, c, classes, pps), json)?;
                    }
                }
            }
        })
    }
}
