//! `npk eval`: score a saved model, float and quantized, on a labelled CSV file.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use npk_common::model::FeatureSchema;
use npk_common::model::MAX_DROP_MARGIN;
use serde::Serialize;

use crate::{
    dataset::Dataset,
    metrics::{ClassMetrics, Confusion},
    model_file::ModelFile,
    noteln, outln,
    pipeline::score,
    quantize::{MIN_AGREEMENT, agreement_warning, margin::ClassDrops},
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
    /// (0..K-1 for a model of K classes); or an IDX image file with its labels beside it, as
    /// `npk train --data` reads them (`--test-data` names the same: MNIST's t10k images).
    #[arg(long, visible_alias = "test-data", value_name = "FILE")]
    pub data: PathBuf,
    /// Score drops at this margin instead of the model's own drop margin (as `npk attach
    /// --drop-margin` would run it), 0..=65534.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=MAX_DROP_MARGIN as i64))]
    pub drop_margin: Option<u32>,
    /// Print one JSON object as the last line of stdout: samples, float_accuracy,
    /// quantized_accuracy, agreement, min_agreement, drop_margin, benign_drop_rate,
    /// attack_drop_rate, and for "float" and "quantized" each accuracy, per_class (class,
    /// support, predicted, precision, recall, f1; null where undefined) and confusion
    /// ([true][predicted]); "quantized" also dropped and unsure, per true class: rows the
    /// kernel would drop (called an attack class, class 0 being benign, with a margin at or
    /// above the drop margin) and rows it would pass as unsure (below it).
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
    /// The integer model's only: per true class, rows dropped and rows passed as unsure.
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped: Option<Vec<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unsure: Option<Vec<u64>>,
}

impl From<&Confusion> for ModelReport {
    fn from(c: &Confusion) -> Self {
        Self {
            accuracy: c.accuracy(),
            per_class: c.per_class(),
            confusion: c.rows(),
            dropped: None,
            unsure: None,
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
    drop_margin: u32,
    benign_drop_rate: f64,
    attack_drop_rate: f64,
    float: ModelReport,
    quantized: ModelReport,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let mut model = ModelFile::load(&args.model)?;
    if let Some(margin) = args.drop_margin {
        model.quantized.model.drop_margin = margin;
    }
    let mut data = Dataset::load_for_model(&args.data, model.mlp.num_classes())?;
    // A model of the ingress features (v5) reads the first columns of packet data with replies.
    if crate::pipeline::schema_of(&model.feature_names) == FeatureSchema::PacketV5 {
        data.keep_features(model.feature_names.len());
    }
    // Its labels were checked against the model's classes as it loaded.
    check_columns(&args.data, &data, &model.feature_names, &args.model)?;
    let scores = score(&model.mlp, &model.standardizer, &model.quantized, &data);
    if let Some(warning) = agreement_warning(scores.agreement, scores.samples) {
        noteln!("{warning}");
    }
    if args.json {
        let drops = &scores.drops;
        let per_class = |f: fn(&ClassDrops) -> u64| Some(drops.per_class.iter().map(f).collect());
        let report = Report {
            samples: scores.samples,
            float_accuracy: scores.float_accuracy,
            quantized_accuracy: scores.quantized_accuracy,
            agreement: scores.agreement,
            min_agreement: MIN_AGREEMENT,
            drop_margin: drops.drop_margin,
            benign_drop_rate: drops.benign_drop_rate(),
            attack_drop_rate: drops.attack_drop_rate(),
            float: (&scores.float).into(),
            quantized: ModelReport {
                dropped: per_class(|c| c.dropped),
                unsure: per_class(|c| c.unsure),
                ..(&scores.quantized).into()
            },
        };
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        outln!("{} rows of {}", scores.samples, args.data.display())?;
        outln!("float accuracy:     {:.4}", scores.float_accuracy)?;
        outln!("quantized accuracy: {:.4}", scores.quantized_accuracy)?;
        outln!("agreement:          {:.4}", scores.agreement)?;
        let drops = &scores.drops;
        outln!(
            "drop margin {}: benign dropped {:.3}%, attacks dropped {:.2}% (class 0 benign, every \
             other class dropped); passed as unsure: {} rows",
            drops.drop_margin,
            drops.benign_drop_rate() * 100.0,
            drops.attack_drop_rate() * 100.0,
            drops.per_class.iter().map(|c| c.unsure).sum::<u64>()
        )?;
        outln!("\nfloat model:\n{}", scores.float.table(None))?;
        outln!(
            "\nquantized model (the kernel's arithmetic):\n{}",
            scores.quantized.table(None)
        )?;
    }
    Ok(())
}

/// `data` (read from `file`) must have the feature columns `expected` (those of `origin`), by
/// name and in order: otherwise scores would silently mean nothing.
pub(crate) fn check_columns(
    file: &Path,
    data: &Dataset,
    expected: &[String],
    origin: &Path,
) -> anyhow::Result<()> {
    let (file, model_path) = (file.display(), origin.display());
    if data.feature_names != expected {
        let expected_len = expected.len();
        if data.num_features != expected_len {
            bail!(
                "{file}: {} feature columns, but {model_path} has {expected_len}",
                data.num_features
            );
        }
        let (j, (found, want)) = data
            .feature_names
            .iter()
            .zip(expected)
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
