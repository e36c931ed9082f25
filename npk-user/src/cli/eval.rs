//! `npk eval`: score a saved model, float and quantized, on a labelled CSV file.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::{
    dataset::Dataset,
    metrics::{ClassMetrics, Confusion},
    model_file::ModelFile,
    noteln, outln,
    pipeline::score,
    quantize::{MIN_AGREEMENT, agreement_warning},
};

/// Score a model file on a labelled CSV file: accuracy, per-class precision, recall, F1 and
/// support, and the confusion matrix of the float and the quantized model, and how often the
/// two agree (a warning on stderr below 0.98). The file may hold any subset of the model's
/// classes, one class too (`npk features --label N` output).
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// A model written by `npk train --out`.
    #[arg(long, value_name = "MODEL")]
    pub model: PathBuf,
    /// CSV file with the model's feature columns, in the same order, and the label last
    /// (0..K-1 for a model of K classes).
    #[arg(long, value_name = "FILE.csv")]
    pub data: PathBuf,
    /// Print one JSON object as the last line of stdout: samples, float_accuracy,
    /// quantized_accuracy, agreement, min_agreement, and for "float" and "quantized" each
    /// accuracy, per_class (class, support, predicted, precision, recall, f1; null where
    /// undefined) and confusion ([true][predicted]).
    #[arg(long)]
    pub json: bool,
}

/// One model's part of the `--json` line.
#[derive(Serialize)]
struct ModelReport {
    accuracy: f64,
    per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]`.
    confusion: Vec<Vec<u64>>,
}

impl From<&Confusion> for ModelReport {
    fn from(c: &Confusion) -> Self {
        Self {
            accuracy: c.accuracy(),
            per_class: c.per_class(),
            confusion: c.rows(),
        }
    }
}

/// The `--json` line of `npk eval`; the field names are stable (documented in `--help`).
#[derive(Serialize)]
struct Report {
    samples: usize,
    float_accuracy: f64,
    quantized_accuracy: f64,
    agreement: f64,
    /// The agreement below which eval warns.
    min_agreement: f64,
    float: ModelReport,
    quantized: ModelReport,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let model = ModelFile::load(&args.model)?;
    let data = Dataset::load_csv_for_model(&args.data, model.mlp.num_classes())?;
    check_columns(&model, &data, &args)?;
    let scores = score(&model.mlp, &model.standardizer, &model.quantized, &data);
    if let Some(warning) = agreement_warning(scores.agreement, scores.samples) {
        noteln!("{warning}");
    }
    if args.json {
        let report = Report {
            samples: scores.samples,
            float_accuracy: scores.float_accuracy,
            quantized_accuracy: scores.quantized_accuracy,
            agreement: scores.agreement,
            min_agreement: MIN_AGREEMENT,
            float: (&scores.float).into(),
            quantized: (&scores.quantized).into(),
        };
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        outln!("{} rows of {}", scores.samples, args.data.display())?;
        outln!("float accuracy:     {:.4}", scores.float_accuracy)?;
        outln!("quantized accuracy: {:.4}", scores.quantized_accuracy)?;
        outln!("agreement:          {:.4}", scores.agreement)?;
        outln!("\nfloat model:\n{}", scores.float.table(None))?;
        outln!(
            "\nquantized model (the kernel's arithmetic):\n{}",
            scores.quantized.table(None)
        )?;
    }
    Ok(())
}

/// The file must have the model's feature columns, by name and in order (its labels were
/// checked against the model's classes as it loaded): otherwise the scores would silently
/// mean nothing.
fn check_columns(model: &ModelFile, data: &Dataset, args: &EvalArgs) -> anyhow::Result<()> {
    let (file, model_path) = (args.data.display(), args.model.display());
    if data.feature_names != model.feature_names {
        let expected = model.feature_names.len();
        if data.num_features != expected {
            bail!(
                "{file}: {} feature columns, but {model_path} takes {expected}",
                data.num_features
            );
        }
        let (j, (found, want)) = data
            .feature_names
            .iter()
            .zip(&model.feature_names)
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .context("feature names differ")?;
        bail!(
            "{file}: line 1: column {} is '{found}', but {model_path} expects '{want}' there",
            j + 1
        );
    }
    Ok(())
}
