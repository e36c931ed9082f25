//! `npk attach`, `npk detach`, `npk push`, `npk stats`: the classifier on a live interface.

use std::{
    num::NonZeroU32,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use npk_common::{
    maps::{Action, Config, Counters, FLAG_FAIL_CLOSED, FLAG_SAMPLE_DROPS, FLAG_SAMPLE_UNSURE},
    model::{MAX_CLASSES, Model},
};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::{
    kernel::{
        ControlMaps, SwapRule,
        attach::{self, AttachMode, IfaceName, pin_dir},
        config::{AttachConfig, ClassAction, DropMargin, EventRate, check_one_action_per_class},
        log::KernelLog,
    },
    model_file::ModelFile,
    noteln, outln,
    output::ConsoleError,
    stats::{self, Snapshot},
};

/// The kernel model of the file at `path`, its drop margin replaced by `drop_margin` if given.
fn load_model(path: &std::path::Path, drop_margin: Option<DropMargin>) -> Result<Box<Model>> {
    let mut model = ModelFile::load(path)?.kernel_model()?;
    if let Some(DropMargin(margin)) = drop_margin {
        model.header.drop_margin = margin;
    }
    Ok(model)
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Read interface, model, mode, actions, reinfer, fail_closed, drop_margin, sample_unsure,
    /// drop_events and event_rate from this TOML file instead of flags (see
    /// docs/operations.md).
    #[arg(long, conflicts_with_all = ["iface", "model", "mode", "actions", "reinfer", "fail_closed",
                                      "drop_margin", "sample_unsure", "no_drop_events",
                                      "event_rate"])]
    config: Option<PathBuf>,
    /// The interface to classify the ingress traffic of (see `ip link`).
    #[arg(long, required_unless_present = "config")]
    iface: Option<IfaceName>,
    /// A packet-feature model file (from `npk train` on `npk features`/`npk capture` data).
    #[arg(long, required_unless_present = "config")]
    model: Option<PathBuf>,
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
    #[arg(long, default_value_t = NonZeroU32::MIN)]
    reinfer: NonZeroU32,
    /// Drop packets that cannot be parsed (default: pass them).
    #[arg(long)]
    fail_closed: bool,
    /// A drop needs the class's int8 logit to lead the runner-up by at least this much
    /// (0..=65534; 0 drops on every win); default: the model's own, chosen by `npk train`
    /// (`npk inspect` shows it). Below it the packet passes, counted as unsure.
    #[arg(long, value_name = "N")]
    drop_margin: Option<DropMargin>,
    /// Sample (to `npk capture`'s ring buffer) the packets of a drop class passed as unsure.
    #[arg(long)]
    sample_unsure: bool,
    /// Do not sample dropped packets (by default every drop is sampled for `npk events`,
    /// within --event-rate).
    #[arg(long)]
    no_drop_events: bool,
    /// At most N samples (events: drops, `sample` classes, unsure) per second on each CPU;
    /// the rest are counted as samples_limited. 0: no limit.
    #[arg(long, value_name = "N", default_value_t = EventRate::DEFAULT)]
    event_rate: EventRate,
    /// With --pin: print the result as one JSON object (iface, mode, pin_dir, replaced_stale).
    #[arg(long, requires = "pin")]
    json: bool,
}

impl AttachArgs {
    /// The file's settings or the flags', as one typed config.
    fn config(self) -> Result<AttachConfig> {
        if let Some(path) = &self.config {
            return Ok(AttachConfig::from_file(path)?);
        }
        let (Some(iface), Some(model)) = (self.iface, self.model) else {
            bail!("--iface and --model are needed without --config");
        };
        check_one_action_per_class(&self.actions)?;
        Ok(AttachConfig {
            iface,
            model,
            mode: self.mode,
            actions: self.actions,
            reinfer: self.reinfer,
            fail_closed: self.fail_closed,
            drop_margin: self.drop_margin,
            sample_unsure: self.sample_unsure,
            drop_events: !self.no_drop_events,
            event_rate: self.event_rate,
        })
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").args(["iface", "config"]).required(true)))]
pub struct DetachArgs {
    /// The interface npk is attached to; stale pins of a killed attach are removed too.
    #[arg(long)]
    iface: Option<IfaceName>,
    /// The interface named in this `npk attach --config` file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the result as one JSON object (iface, result: detached | stale_removed |
    /// not_attached, stale, kept).
    #[arg(long)]
    json: bool,
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
    /// Replace the new model's drop margin (see `npk attach --drop-margin`); an attach's
    /// --drop-margin applies to the model it attached, not to later pushes.
    #[arg(long, value_name = "N")]
    drop_margin: Option<DropMargin>,
    /// Print the result as one JSON object (iface, model_version).
    #[arg(long)]
    json: bool,
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
    let (pin, json) = (args.pin, args.json);
    let config = args.config()?;
    let model = load_model(&config.model, config.drop_margin)?;
    let mut class_action = [Action::Pass as u8; MAX_CLASSES];
    for a in &config.actions {
        anyhow::ensure!(
            (a.class as u32) < model.header.num_classes,
            "{}: the model has {} classes",
            a.origin,
            model.header.num_classes
        );
        class_action[a.class] = a.action as u8;
    }
    let kernel_config = Config {
        reinfer_every: config.reinfer.get(),
        flags: if config.fail_closed {
            FLAG_FAIL_CLOSED
        } else {
            0
        } | if config.sample_unsure {
            FLAG_SAMPLE_UNSURE
        } else {
            0
        } | if config.drop_events {
            FLAG_SAMPLE_DROPS
        } else {
            0
        },
        class_action,
        samples_per_cpu_s: config.event_rate.0,
        _pad: 0,
    };
    let AttachConfig { iface, mode, .. } = config;
    // Caught before anything is attached: every stop signal from here on cleans up.
    let stop = StopSignals::install()?;
    let mut attachment = attach::attach(&iface, mode, &model, &kernel_config, pin)?;
    if let Some(stale) = &attachment.replaced_stale {
        noteln!(
            "removed the stale pins of an earlier attach on {}: {stale}",
            iface
        );
    }
    if !attachment.replies {
        noteln!(
            "replies are not counted on this kernel (no TCX, Linux < 6.6): the model reads the \
             ingress features only"
        );
    }
    if pin {
        if json {
            outln!(
                "{}",
                serde_json::json!({
                    "iface": iface.as_str(),
                    "mode": mode.to_possible_value().map(|v| v.get_name().to_string()),
                    "pin_dir": pin_dir(&iface),
                    "replaced_stale": attachment.replaced_stale.as_ref().map(|s| s.to_string()),
                    "replies_counted": attachment.replies,
                })
            )?;
            return Ok(());
        }
        outln!(
            "attached to {} ({}), pinned in {}; `npk detach --iface {}` removes it",
            iface,
            mode,
            pin_dir(&iface).display(),
            iface
        )?;
        return Ok(());
    }
    // Only a foreground attach reads the programs' log: a pinned one has no reader.
    let mut kernel_log = KernelLog::take(&mut attachment.classifier.ebpf)?;
    noteln!("attached to {} ({}); Ctrl-C detaches", iface, mode);
    let classes = model.header.num_classes as usize;
    // The live line is for a person watching; a log (a unit's journal, a file) gets the
    // attach and detach lines and the kernel's events, not a line a second.
    let live = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let result = stop.watch(
        &iface,
        live.then_some(false),
        classes,
        Some(&mut kernel_log),
        || Ok(attachment.classifier.counters()?),
        || Ok(attachment.lost()?),
    );
    drop(attachment);
    match &result {
        Ok(()) => noteln!("detached from {}", iface),
        // `npk attach ... | head`: the reader went away, the watch ended like at Ctrl-C.
        Err(e)
            if e.downcast_ref::<ConsoleError>()
                .is_some_and(ConsoleError::is_broken_pipe) =>
        {
            noteln!("detached from {}: standard output was closed", iface)
        }
        Err(_) => noteln!("pins of {} removed", iface),
    }
    result
}

pub fn run_detach(args: DetachArgs) -> Result<()> {
    let iface = match (args.iface, &args.config) {
        (Some(iface), _) => iface,
        (None, Some(path)) => AttachConfig::interface_of_file(path)?,
        (None, None) => bail!("--iface or --config names the interface"),
    };
    let detached = match attach::detach(&iface) {
        // Detach is idempotent: a second one (a service stopped after a crash, or after a
        // manual detach) has nothing left to do and succeeds.
        Err(attach::AttachError::NotAttached { .. }) => None,
        detached => Some(detached?),
    };
    let kept = detached
        .as_ref()
        .map_or(&[][..], |d| d.leftovers.unknown.as_slice());
    if !kept.is_empty() {
        noteln!(
            "kept {}: it also holds files npk did not create: {}",
            pin_dir(&iface).display(),
            kept.join(", ")
        );
    }
    let stale = detached.as_ref().and_then(|d| d.stale.as_ref());
    let stats_kept_on = detached.as_ref().and_then(|d| d.stats_kept_on.as_ref());
    if let Some(why) = stats_kept_on {
        noteln!("kernel.bpf_stats_enabled left on: {why}");
    }
    if args.json {
        let result = match (&detached, stale) {
            (None, _) => "not_attached",
            (Some(_), None) => "detached",
            (Some(_), Some(_)) => "stale_removed",
        };
        outln!(
            "{}",
            serde_json::json!({
                "iface": iface.as_str(),
                "result": result,
                "stale": stale.map(|s| s.to_string()),
                "kept": kept,
                "bpf_stats_kept_on": stats_kept_on.map(|s| s.to_string()),
            })
        )?;
        return Ok(());
    }
    match (&detached, stale) {
        (None, _) => outln!("npk is not attached to {iface}: nothing to detach")?,
        (Some(_), None) => outln!("detached from {}", iface)?,
        (Some(_), Some(stale)) => outln!(
            "nothing was attached to {} any more ({stale}); removed its stale pins",
            iface
        )?,
    }
    Ok(())
}

pub fn run_push(args: PushArgs) -> Result<()> {
    let model = load_model(&args.model, args.drop_margin)?;
    // One push at a time per attachment; held until the new model is active.
    let (dir, _lock) = attach::lock_live_pins(&args.iface)?;
    let (kind, loops) = attach::pinned_classifier(&dir)?;
    loops.check_fits(&model)?;
    let mut maps = ControlMaps::from_pins(&dir)?;
    let rule = SwapRule {
        allow_unmapped_classes: args.allow_unmapped_classes,
        ..SwapRule::ATTACHMENT
    };
    let version = maps
        .push(&model, Some(kind.schema()), rule)
        .with_context(|| format!("pushing {} to {}", args.model.display(), args.iface))?;
    if args.json {
        outln!(
            "{}",
            serde_json::json!({ "iface": args.iface.as_str(), "model_version": version })
        )?;
    } else {
        outln!("model version {version} active on {}", args.iface)?;
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
        Some(args.json),
        classes as usize,
        None,
        || Ok(maps.counters()?),
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
    /// attachment is gone (an error that says why); forwards `kernel_log` at each snapshot.
    /// Until a signal or the attachment's loss: every second forwards the kernel's log and,
    /// with `print` (Some(json)), prints the counters.
    fn watch(
        mut self,
        iface: &IfaceName,
        print: Option<bool>,
        classes: usize,
        mut kernel_log: Option<&mut KernelLog>,
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
                        if let Some(log) = kernel_log.as_deref_mut() {
                            log.forward();
                        }
                        if let Some(why) = lost()? {
                            bail!("the classifier on {iface} is gone: {why}");
                        }
                        let c = counters()?;
                        let total = stats::packets(&c);
                        let now = Instant::now();
                        let pps = last.map(|(t, n)| (total - n) as f64 / (now - t).as_secs_f64());
                        last = Some((now, total));
                        if let Some(json) = print {
                            print_snapshot(&snapshot(iface, c, classes, pps), json)?;
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn attach_args(args: &[&str]) -> Result<AttachArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["npk", "attach"], args].concat())?;
        match cli.command {
            Command::Attach(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    /// Origins differ by design (a flag, a file's line): everything else must not.
    fn without_origins(c: AttachConfig) -> (AttachConfig, Vec<(usize, Action)>) {
        let actions = c.actions.iter().map(|a| (a.class, a.action)).collect();
        (
            AttachConfig {
                actions: vec![],
                ..c
            },
            actions,
        )
    }

    #[test]
    fn flags_and_a_config_file_give_the_same_config() {
        let flags = attach_args(&[
            "--iface",
            "eth0",
            "--model",
            "/etc/npk/m.npk",
            "--mode",
            "tc",
            "--action",
            "1=drop",
            "--action",
            "2=sample",
            "--reinfer",
            "8",
            "--fail-closed",
        ])
        .unwrap()
        .config()
        .unwrap();
        let file = AttachConfig::from_toml(
            Path::new("/etc/npk/eth0.toml"),
            "interface = \"eth0\"\nmodel = \"m.npk\"\nmode = \"tc\"\nreinfer = 8\n\
             fail_closed = true\n\n[actions]\n1 = \"drop\"\n2 = \"sample\"\n",
        )
        .unwrap();
        assert_eq!(without_origins(flags), without_origins(file));
    }

    #[test]
    fn a_config_file_excludes_the_flags_it_replaces() {
        for flag in [
            &["--iface", "eth0"][..],
            &["--model", "m.npk"],
            &["--mode", "skb"],
            &["--action", "1=drop"],
            &["--reinfer", "2"],
            &["--fail-closed"],
        ] {
            let err = attach_args(&[&["--config", "x.toml"], flag].concat()).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{flag:?}"
            );
        }
        assert!(attach_args(&["--config", "x.toml", "--pin"]).is_ok());
        let err = attach_args(&["--iface", "eth0"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }
}
