//! `npk train`: load a CSV file, split it, train the float MLP, quantize it, save both and report
//! their accuracy on the test split.

use std::{
    io::{self, IsTerminal},
    path::PathBuf,
};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use npk_common::model::FeatureSchema;
use serde::Serialize;

use super::eval::score;
use crate::{
    dataset::{Dataset, Standardizer},
    model_file::ModelFile,
    quantize::quantize,
    train::{self, EpochStats, TrainConfig, parse_hidden},
};

/// Train an MLP on a CSV file, quantize it for the kernel and save both; reports accuracy on a
/// held-out test split.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// CSV file: a header row, numeric feature columns, an integer label 0..K-1 last.
    #[arg(long, value_name = "FILE.csv")]
    pub data: PathBuf,
    /// Hidden layer widths, input side first: at most 3 layers of 1..=128 units.
    #[arg(long, default_value = "16,16", value_name = "W1,W2,...")]
    pub hidden: String,
    /// Passes over the training split.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub epochs: usize,
    /// Rows per mini-batch.
    #[arg(long, default_value_t = 16, value_name = "B")]
    pub batch: usize,
    /// adam, or sgd (with momentum 0.9).
    #[arg(long, default_value = "adam")]
    pub optimizer: String,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01, value_name = "X")]
    pub lr: f32,
    /// Seeds the split, the initial weights and the shuffles: same seed, same model.
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
    /// Fraction of each class held out for testing, in (0, 1).
    #[arg(long, default_value_t = 0.2, value_name = "F")]
    pub test_split: f64,
    /// Model file to write: float model, standardization and the quantized kernel model.
    #[arg(long, value_name = "MODEL")]
    pub out: PathBuf,
    /// Print one JSON object as the last line of stdout (epoch lines go to stderr).
    #[arg(long)]
    pub json: bool,
}

impl TrainArgs {
    fn config(&self) -> anyhow::Result<TrainConfig> {
        Ok(TrainConfig {
            hidden: parse_hidden(&self.hidden).context("--hidden")?,
            epochs: self.epochs,
            batch: self.batch,
            optimizer: self.optimizer.parse().context("--optimizer")?,
            lr: self.lr,
            seed: self.seed,
        })
    }
}

/// The `--json` line; field names are relied upon by scripts and bench/mlp_numpy.py.
#[derive(Serialize)]
struct Report {
    float_accuracy: f64,
    quantized_accuracy: f64,
    train_seconds: f64,
    test_samples: usize,
    epochs: usize,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let data = Dataset::load_csv(&args.data)?;
    config.validate(data.num_features, data.num_classes)?;
    let (train_raw, test_raw) = data.split(args.test_split, args.seed)?;
    let standardizer = Standardizer::fit(&train_raw);
    let train_set = standardizer.apply(&train_raw);

    let bar = epoch_bar(config.epochs as u64, args.json);
    let mut train_seconds = 0.0;
    let mlp = train::train(&train_set, &config, |e: &EpochStats| {
        let line = format!(
            "epoch {:>w$}/{}  loss {:.4}  train acc {:.4}  {:.2}s",
            e.epoch,
            config.epochs,
            e.loss,
            e.train_accuracy,
            e.elapsed.as_secs_f64(),
            w = config.epochs.to_string().len()
        );
        if !bar.is_hidden() {
            bar.println(line);
        } else if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
        bar.inc(1);
        train_seconds = e.elapsed.as_secs_f64();
    })?;
    bar.finish_and_clear();

    // Calibrated on the raw training rows: the quantized model folds standardization in.
    let quantized = quantize(&mlp, &standardizer, &train_raw, FeatureSchema::Tabular)
        .context("quantizing the trained model")?;
    let scores = score(&mlp, &standardizer, &quantized, &test_raw);
    let widths: Vec<String> = mlp
        .layers
        .iter()
        .map(|l| l.in_dim.to_string())
        .chain([mlp.num_classes().to_string()])
        .collect();
    ModelFile::new(mlp, standardizer, quantized, data.feature_names).save(&args.out)?;

    if args.json {
        let report = Report {
            float_accuracy: scores.float_accuracy,
            quantized_accuracy: scores.quantized_accuracy,
            train_seconds,
            test_samples: scores.samples,
            epochs: config.epochs,
        };
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "trained {} ({}, lr {}) on {} rows for {} epochs in {train_seconds:.3} s",
            widths.join("-"),
            config.optimizer,
            config.lr,
            train_set.len(),
            config.epochs
        );
        println!(
            "float test accuracy:     {:.4} ({} rows)",
            scores.float_accuracy, scores.samples
        );
        println!("quantized test accuracy: {:.4}", scores.quantized_accuracy);
        println!("model written to {}", args.out.display());
    }
    Ok(())
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
