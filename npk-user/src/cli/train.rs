//! `npk train`: load a CSV file, split it, train the float MLP on the CPU or the GPU; with
//! `--out`, quantize it, save both and report their accuracy on the test split.

use std::{
    io::{self, IsTerminal},
    path::PathBuf,
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use npk_common::model::FeatureSchema;
use serde::Serialize;

use crate::{
    cli::eval::check_columns,
    dataset::{Dataset, check_test_fraction},
    noteln,
    output::{Console, ConsoleError, OutputPath},
    pipeline::{self, Device, FitConfig},
    quantize::{
        agreement_warning,
        margin::{DEFAULT_MAX_BENIGN_DROP, DropCounts, MarginChoice, check_max_benign_drop},
    },
    train::{self, EpochStats, Mlp, OptimizerKind, TrainConfig},
};

/// Train an MLP on a CSV file and, with --out, quantize it for the kernel and save both; reports
/// accuracy on a held-out test split.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// CSV file: a header row, numeric feature columns, an integer label 0..K-1 last. A header
    /// of the packet feature names (`npk features` output) makes a model for `npk attach`. Or
    /// an IDX image file (MNIST's format, `*-images-idx3-ubyte`, gzip-compressed `.gz` or not)
    /// with its labels beside it (`*-labels-idx1-ubyte`, the same way compressed).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Rows to test on, a file of their own (the columns of --data; CSV or IDX, such as
    /// MNIST's t10k images): then all of --data trains and --test-split is not used.
    #[arg(long, value_name = "FILE")]
    pub test_data: Option<PathBuf>,
    /// Hidden layer widths, input side first. With --out (a quantized model): at most 3 layers
    /// of 1..=4096 units (the kernel holds layers of up to 128, with at most 128 inputs; a wider
    /// model trains, quantizes and evaluates in userspace); without it any number and width
    /// trains. `none`: no hidden
    /// layer, one dense layer from the inputs to the classes (multinomial logistic regression,
    /// a linear baseline).
    #[arg(long, default_value = "16,16", value_name = "W1,W2,...")]
    pub hidden: super::Widths,
    /// Passes over the training split, at least 1.
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = parse_epochs,
          allow_negative_numbers = true)]
    pub epochs: usize,
    /// Rows per mini-batch, at least 1.
    #[arg(long, default_value_t = 16, value_name = "B", value_parser = parse_batch,
          allow_negative_numbers = true)]
    pub batch: usize,
    /// adam, or sgd (with momentum 0.9).
    #[arg(long, default_value = "adam")]
    pub optimizer: OptimizerKind,
    /// Learning rate, a finite number > 0.
    #[arg(long, default_value_t = 0.01, value_name = "X", value_parser = parse_lr,
          allow_negative_numbers = true)]
    pub lr: f32,
    /// Seeds the split, the initial weights and the shuffles: same seed, same model.
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
    /// Fraction of each class held out for testing, in (0, 1); not used with --test-data.
    #[arg(long, default_value_t = 0.2, value_name = "F", value_parser = parse_test_split,
          allow_negative_numbers = true)]
    pub test_split: f64,
    /// Model file to write: float model, standardization and the quantized kernel model; the
    /// summary then gives the int8/float agreement on the test split, with a warning on stderr
    /// below 0.98. Without it the float model is trained and scored only.
    #[arg(long, value_name = "MODEL")]
    pub out: Option<PathBuf>,
    /// The drop margin: the smallest int8 logit lead at which at most this fraction of the
    /// benign rows (class 0) of the validation rows would be dropped, stored in the model (a
    /// drop class then drops a packet only with at least that margin; below it the packet
    /// passes, counted as unsure). Default 0.001 for packet models; tabular models get no
    /// margin unless this is given. In [0, 1).
    #[arg(long, value_name = "RATE", value_parser = parse_max_benign_drop,
          allow_negative_numbers = true)]
    pub max_benign_drop: Option<f64>,
    /// Rows to choose the drop margin on (the columns of --data), such as recordings held out
    /// of --data; default: the test split.
    #[arg(long, value_name = "FILE.csv", requires = "out")]
    pub validation: Option<PathBuf>,
    /// Packet data: train on the features of received packets alone (packet features v5,
    /// leaving out the replies this machine sends), for kernels without TCX (< 6.6), where npk
    /// cannot count replies.
    #[arg(long)]
    pub ingress_only: bool,
    /// Where to train: cpu, or gpu (device 0, through CUDA; fails when there is none).
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// Print one JSON object as the last line of stdout (epoch lines go to stderr).
    #[arg(long)]
    pub json: bool,
}

/// `--epochs`: the library's check ([`TrainConfig::validate`]) and wording, at parse time.
fn parse_epochs(s: &str) -> Result<usize, String> {
    at_least_one(s, |n| format!("{n} epochs: must be at least 1"))
}

/// `--batch`, as [`parse_epochs`].
fn parse_batch(s: &str) -> Result<usize, String> {
    at_least_one(s, |n| format!("batch size {n}: must be at least 1"))
}

/// A whole number >= 1; `below` words the refusal of a smaller one (negative included).
fn at_least_one(s: &str, below: impl Fn(i128) -> String) -> Result<usize, String> {
    match s.parse::<i128>() {
        Ok(n) if n < 1 => Err(below(n)),
        Ok(n) => usize::try_from(n).map_err(|_| format!("{n} is too large")),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

fn parse_lr(s: &str) -> Result<f32, String> {
    let lr: f32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if lr.is_finite() && lr > 0.0 {
        Ok(lr)
    } else {
        Err(train::TrainError::LearningRate(lr).to_string())
    }
}

fn parse_max_benign_drop(s: &str) -> Result<f64, String> {
    let rate: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    check_max_benign_drop(rate)
}

fn parse_test_split(s: &str) -> Result<f64, String> {
    let fraction: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    check_test_fraction(fraction).map_err(|e| e.to_string())
}

impl TrainArgs {
    /// The arguments as the pipeline's typed configuration, converted once.
    fn config(&self) -> anyhow::Result<FitConfig> {
        Ok(FitConfig {
            train: TrainConfig {
                hidden: self.hidden.0.clone(),
                epochs: self.epochs,
                batch: self.batch,
                optimizer: self.optimizer,
                lr: self.lr,
                seed: self.seed,
            },
            test_fraction: self.test_split,
            device: self.device,
            max_benign_drop: self.max_benign_drop,
        })
    }
}

/// The `--json` line; field names are relied upon by scripts and bench/mlp_numpy.py.
#[derive(Serialize)]
struct Report {
    float_accuracy: f64,
    /// `null` without --out (nothing was quantized).
    quantized_accuracy: Option<f64>,
    /// Fraction of test rows where the int8 and the float model pick the same class; `null`
    /// without --out. Below `quantize::MIN_AGREEMENT` (0.98) train warns on stderr.
    quantized_agreement: Option<f64>,
    train_seconds: f64,
    test_samples: usize,
    epochs: usize,
    /// The model's drop margin and how it was chosen; `null` without one.
    margin: Option<MarginChoice>,
    /// On the test split at that margin (class 0 benign, every other class dropped); `null`
    /// without --out.
    test_drops: Option<DropCounts>,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let mut config = args.config()?;
    // Checked before any work: a model that cannot be written is not worth training.
    let out = args
        .out
        .as_deref()
        .map(|path| {
            let inputs: Vec<&std::path::Path> =
                [Some(args.data.as_path()), args.test_data.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect();
            OutputPath::check(path, &inputs)
        })
        .transpose()?;
    // With the model on stdout, everything else goes to stderr.
    let console = out
        .as_ref()
        .map_or(Console::Stdout, OutputPath::report_console);
    let mut data = Dataset::load(&args.data)?;
    let mut test = match &args.test_data {
        Some(path) => {
            let rows = Dataset::load_for_model(path, data.num_classes)?;
            check_columns(path, &rows, &data.feature_names, &args.data)?;
            Some(rows)
        }
        None => None,
    };
    // Packet models get a drop margin unless told otherwise; tabular ones only when asked.
    if pipeline::schema_of(&data.feature_names) != FeatureSchema::Tabular {
        config
            .max_benign_drop
            .get_or_insert(DEFAULT_MAX_BENIGN_DROP);
    }
    let mut validation = match &args.validation {
        Some(path) => {
            let rows = Dataset::load_for_model(path, data.num_classes)?;
            check_columns(path, &rows, &data.feature_names, &args.data)?;
            Some(rows)
        }
        None => None,
    };
    if args.ingress_only {
        anyhow::ensure!(
            pipeline::schema_of(&data.feature_names) == npk_common::packet::SCHEMA,
            "--ingress-only: {} holds no packet features with replies (the header of `npk \
             features`/`npk capture`/`npk gen` output)",
            args.data.display()
        );
        for rows in [Some(&mut data), test.as_mut(), validation.as_mut()]
            .into_iter()
            .flatten()
        {
            rows.keep_features(npk_common::packet::INGRESS_FEATURES);
        }
    }

    let epochs = config.train.epochs;
    let bar = epoch_bar(epochs as u64, args.json);
    let mut train_seconds = 0.0;
    // An epoch line that cannot be printed (`| head -1` has gone) does not stop training: the
    // first such error is reported once the model is written.
    let mut epoch_line_error: Option<ConsoleError> = None;
    let on_epoch = |e: &EpochStats| {
        let accuracy = e
            .train_accuracy
            .map_or(String::new(), |a| format!("  train acc {a:.4}"));
        let line = format!(
            "epoch {:>w$}/{epochs}  loss {:.4}{accuracy}  {:.2}s",
            e.epoch,
            e.loss,
            e.elapsed.as_secs_f64(),
            w = epochs.to_string().len()
        );
        if !bar.is_hidden() {
            bar.println(line);
        } else if epoch_line_error.is_none() {
            let to = if args.json { Console::Stderr } else { console };
            epoch_line_error = to.line(format_args!("{line}")).err();
        }
        bar.inc(1);
        train_seconds = e.elapsed.as_secs_f64();
    };
    let mut margin = None;
    let (shape, train_rows, test_rows, float_accuracy, quantized) = match &out {
        Some(out) => {
            let fitted =
                pipeline::fit(&data, test.as_ref(), validation.as_ref(), &config, on_epoch)?;
            bar.finish_and_clear();
            let (shape, train_rows, scores) =
                (shape(&fitted.mlp), fitted.train_rows, fitted.scores.clone());
            margin = fitted.margin.clone();
            fitted.into_model_file().save_to(out)?;
            if let Some(warning) = agreement_warning(scores.agreement, scores.samples) {
                noteln!("{warning}");
            }
            let quantized = Some((scores.quantized_accuracy, scores.agreement, scores.drops));
            (
                shape,
                train_rows,
                scores.samples,
                scores.float_accuracy,
                quantized,
            )
        }
        None => {
            let fitted = pipeline::fit_float(&data, test.as_ref(), &config, on_epoch)?;
            bar.finish_and_clear();
            let accuracy = fitted.float_accuracy;
            (
                shape(&fitted.mlp),
                fitted.train_rows,
                fitted.test_rows,
                accuracy,
                None,
            )
        }
    };

    if args.json {
        let report = Report {
            float_accuracy,
            quantized_accuracy: quantized.as_ref().map(|q| q.0),
            quantized_agreement: quantized.as_ref().map(|q| q.1),
            train_seconds,
            test_samples: test_rows,
            epochs,
            margin,
            test_drops: quantized.map(|q| q.2),
        };
        console.line(format_args!("{}", serde_json::to_string(&report)?))?;
    } else {
        console.line(format_args!(
            "trained {shape} ({}, lr {}) on {train_rows} rows for {epochs} epochs in \
             {train_seconds:.3} s on the {}",
            config.train.optimizer,
            config.train.lr,
            config.device.label(),
        ))?;
        console.line(format_args!(
            "float test accuracy:     {float_accuracy:.4} ({test_rows} rows)"
        ))?;
        if let Some((accuracy, agreement, drops)) = quantized {
            console.line(format_args!("quantized test accuracy: {accuracy:.4}"))?;
            console.line(format_args!("int8/float agreement:    {agreement:.4}"))?;
            if let Some(m) = &margin {
                let on = match &args.validation {
                    Some(path) => path.display().to_string(),
                    None => "the test split".to_string(),
                };
                console.line(format_args!(
                    "drop margin:             {} (for at most {:.2}% of benign rows dropped on \
                     {on}: {:.3}% there, {:.3}% without a margin; attacks dropped {:.2}%, \
                     {:.2}% without)",
                    m.drop_margin,
                    m.max_benign_drop * 100.0,
                    m.benign_drop_rate * 100.0,
                    m.benign_drop_rate_without * 100.0,
                    m.attack_drop_rate * 100.0,
                    m.attack_drop_rate_without * 100.0,
                ))?;
                console.line(format_args!(
                    "test split at the margin: benign dropped {:.3}%, attacks dropped {:.2}%",
                    drops.benign_drop_rate() * 100.0,
                    drops.attack_drop_rate() * 100.0
                ))?;
            }
        }
        match &out {
            Some(out) => console.line(format_args!("model written to {}", out.path().display()))?,
            None => console.line(format_args!("no --out: nothing quantized or saved"))?,
        }
    }
    match epoch_line_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// The layer widths, input first: `4-16-16-3`.
fn shape(mlp: &Mlp) -> String {
    let widths: Vec<String> = mlp
        .layers
        .iter()
        .map(|l| l.in_dim.to_string())
        .chain([mlp.num_classes().to_string()])
        .collect();
    widths.join("-")
}

/// One tick per epoch, drawn on stdout only when it is a terminal and no JSON is wanted.
fn epoch_bar(epochs: u64, json: bool) -> ProgressBar {
    if json || !io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(epochs), ProgressDrawTarget::stdout());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} epochs  {elapsed_precise}  eta {eta}")
            .expect("the template is valid"),
    );
    bar
}
