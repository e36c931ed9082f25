//! `npk demo`: traffic, kernel capture, training, quantization, attach, live verdicts, report.

use std::{path::PathBuf, time::Duration};

use anyhow::Result;

use super::r#gen::LabKind;
use crate::{
    demo::{self, DemoConfig, Traffic},
    kernel::attach::AttachMode,
    outln,
    output::{Console, ConsoleError},
    sys::stop_flag,
};

/// Run the whole pipeline in throwaway network namespaces: labelled benign and attack traffic
/// (by default real tools: nginx, dnsmasq, iperf3, curl, dig, ping, hping3, nmap), its
/// features captured through the kernel, train, quantize, attach the model with attacks
/// dropped, classify fresh traffic (real tools: settings never seen in training) with a live
/// table, per-class and per-scenario scores, and save a confusion matrix and the training
/// curve as SVG. Needs root; removes everything it made on exit (Ctrl-C too).
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The traffic: real tools (settings family A recorded for training, two family-B runs
    /// classified live: every class passed, then attacks dropped) or npk's own generator.
    #[arg(long, value_enum, default_value = "tools")]
    pub lab: LabKind,
    /// --lab tools: lab runs recorded for training (seeds 100 * seed + 1, + 2, ...).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub train_runs: u32,
    /// Seconds of traffic captured for training (--lab tools: per run).
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub capture: u64,
    /// Seconds of fresh traffic classified by the attached model (--lab tools: each of the
    /// two family-B runs, every class passed and attacks dropped).
    #[arg(long, default_value_t = 15, value_name = "S")]
    pub replay: u64,
    /// --lab synthetic: multiplies every traffic scenario's rate.
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    pub rate_scale: f64,
    /// Hidden layer widths.
    #[arg(long, default_value = "32,32", value_name = "W1,W2,...")]
    pub hidden: super::Widths,
    /// Training epochs.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub epochs: usize,
    /// Training rows per traffic scenario (resampled, so rare benign traffic counts as much
    /// as a flood).
    #[arg(long, default_value_t = 8000, value_name = "N")]
    pub rows_per_scenario: usize,
    /// Seeds the capture traffic, training and the live traffic (--lab synthetic: seed + 1;
    /// tools: family B's seed 200 + seed).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How the classifier attaches to the lab's veth (--lab tools: the server's end).
    #[arg(long, value_enum, default_value = "native")]
    pub mode: AttachMode,
    /// Where to write capture.csv, model.npk, training.svg and confusion.svg.
    #[arg(long, default_value = "npk-demo", value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Progress on stderr; stdout's last line is
    /// {"accuracy","packets","attack_drop_rate","benign_drop_rate"}, for --lab tools with
    /// "train_seeds", "live_seed", "per_class" and "per_scenario" of the live run.
    #[arg(long)]
    pub json: bool,
}

const MAX_SECONDS: u64 = 600;
const MAX_TRAIN_RUNS: u32 = 20;

pub fn run(args: DemoArgs) -> Result<()> {
    // A lab run lasts at least 2 s (crate::packets::lab::LabConfig::validate).
    let min_seconds = match args.lab {
        LabKind::Tools => 2,
        LabKind::Synthetic => 1,
    };
    for (name, s) in [("--capture", args.capture), ("--replay", args.replay)] {
        anyhow::ensure!(
            (min_seconds..=MAX_SECONDS).contains(&s),
            "{name} {s}: must be {min_seconds}..={MAX_SECONDS} seconds"
        );
    }
    anyhow::ensure!(
        (1..=MAX_TRAIN_RUNS).contains(&args.train_runs),
        "--train-runs {}: must be 1..={MAX_TRAIN_RUNS}",
        args.train_runs
    );
    let config = DemoConfig {
        traffic: match args.lab {
            LabKind::Tools => Traffic::Tools {
                train_runs: args.train_runs,
            },
            LabKind::Synthetic => Traffic::Synthetic,
        },
        capture: Duration::from_secs(args.capture),
        replay: Duration::from_secs(args.replay),
        rate_scale: args.rate_scale,
        hidden: args.hidden.0.clone(),
        epochs: args.epochs,
        rows_per_scenario: args.rows_per_scenario,
        seed: args.seed,
        mode: args.mode,
        out_dir: args.out_dir,
    };
    let console = if args.json {
        Console::Stderr
    } else {
        Console::Stdout
    };
    // A line that cannot be printed does not stop the demo (it cleans up as it goes): the first
    // such error is reported at the end.
    let mut say_error: Option<ConsoleError> = None;
    let mut say = |line: &str| {
        if say_error.is_none() {
            say_error = console.line(format_args!("{line}")).err();
        }
    };
    let report = demo::run(&config, stop_flag(), &mut say)?;
    let files: Vec<String> = report
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    say(&format!("wrote {}", files.join(", ")));
    if args.json {
        outln!("{}", serde_json::to_string(&report.summary())?)?;
    }
    match say_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
