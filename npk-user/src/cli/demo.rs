//! `npk demo`: traffic, kernel capture, training, quantization, attach, live verdicts, report.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};

use crate::{
    demo::{self, DemoConfig},
    kernel::attach::AttachMode,
    outln,
    output::{Console, ConsoleError},
    sys::stop_flag,
    train::parse_hidden,
};

/// Run the whole pipeline in a throwaway network namespace: generate labelled benign and
/// attack traffic, capture its features through the kernel, train, quantize, attach the model
/// with attacks dropped, replay fresh traffic with a live table, and save a confusion matrix
/// and the training curve as SVG. Needs root; removes everything it made on exit (Ctrl-C too).
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Seconds of traffic captured for training.
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub capture: u64,
    /// Seconds of fresh traffic classified by the attached model.
    #[arg(long, default_value_t = 15, value_name = "S")]
    pub replay: u64,
    /// Multiplies every traffic scenario's rate.
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    pub rate_scale: f64,
    /// Hidden layer widths.
    #[arg(long, default_value = "32,32", value_name = "W1,W2,...")]
    pub hidden: String,
    /// Training epochs.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub epochs: usize,
    /// Training rows per traffic scenario (resampled, so rare benign traffic counts as much
    /// as a flood).
    #[arg(long, default_value_t = 8000, value_name = "N")]
    pub rows_per_scenario: usize,
    /// Seeds the capture traffic, training and (plus one) the replayed traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How the classifier attaches to the lab's veth.
    #[arg(long, value_enum, default_value = "native")]
    pub mode: AttachMode,
    /// Where to write capture.csv, model.npk, training.svg and confusion.svg.
    #[arg(long, default_value = "npk-demo", value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Progress on stderr; stdout's last line is
    /// {"accuracy","packets","attack_drop_rate","benign_drop_rate"}.
    #[arg(long)]
    pub json: bool,
}

const MAX_SECONDS: u64 = 600;

pub fn run(args: DemoArgs) -> Result<()> {
    for (name, s) in [("--capture", args.capture), ("--replay", args.replay)] {
        anyhow::ensure!(
            (1..=MAX_SECONDS).contains(&s),
            "{name} {s}: must be 1..={MAX_SECONDS} seconds"
        );
    }
    let config = DemoConfig {
        capture: Duration::from_secs(args.capture),
        replay: Duration::from_secs(args.replay),
        rate_scale: args.rate_scale,
        hidden: parse_hidden(&args.hidden).context("--hidden")?,
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
        outln!("{}", serde_json::to_string(&report.rates)?)?;
    }
    match say_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
