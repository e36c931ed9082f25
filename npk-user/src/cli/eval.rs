//! `npk eval`: score a saved model, float and quantized, on a labelled CSV file.

use std::path::PathBuf;

use anyhow::{Context, bail};
use npk_common::infer::Scratch;
use serde::Serialize;

use crate::{
    dataset::{Dataset, Standardizer},
    model_file::ModelFile,
    quantize::Quantized,
    train::{Mlp, argmax},
};

/// Score a model file on a labelled CSV file: float accuracy, quantized accuracy and how often
/// the two models agree.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// A model written by `npk train --out`.
    #[arg(long, value_name = "MODEL")]
    pub model: PathBuf,
    /// CSV file with the model's feature columns, in the same order, and the label last.
    #[arg(long, value_name = "FILE.csv")]
    pub data: PathBuf,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// Accuracy of both models on one labelled set. The `--json` line of `npk eval`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Scores {
    pub samples: usize,
    /// The float model on standardized rows.
    pub float_accuracy: f64,
    /// The integer model (the kernel's arithmetic) on raw rows.
    pub quantized_accuracy: f64,
    /// Fraction of rows where both models predict the same class.
    pub agreement: f64,
}

/// Scores `mlp` (after `standardizer`) and `quantized` on the unstandardized rows of `raw`.
pub fn score(
    mlp: &Mlp,
    standardizer: &Standardizer,
    quantized: &Quantized,
    raw: &Dataset,
) -> Scores {
    let standardized = standardizer.apply(raw);
    let logits = mlp.forward(&standardized.features, raw.len());
    let mut scratch = Scratch::new();
    let (mut float_hits, mut quant_hits, mut agree) = (0, 0, 0);
    for (i, row_logits) in logits.chunks_exact(mlp.num_classes()).enumerate() {
        let label = raw.labels[i] as usize;
        let f = argmax(row_logits);
        let q = quantized.infer(raw.row(i), &mut scratch);
        float_hits += usize::from(f == label);
        quant_hits += usize::from(q == label);
        agree += usize::from(f == q);
    }
    let n = raw.len().max(1) as f64;
    Scores {
        samples: raw.len(),
        float_accuracy: float_hits as f64 / n,
        quantized_accuracy: quant_hits as f64 / n,
        agreement: agree as f64 / n,
    }
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let model = ModelFile::load(&args.model)?;
    let data = Dataset::load_csv(&args.data)?;
    check_columns(&model, &data, &args)?;
    let scores = score(&model.mlp, &model.standardizer, &model.quantized, &data);
    if args.json {
        println!("{}", serde_json::to_string(&scores)?);
    } else {
        println!("{} rows of {}", scores.samples, args.data.display());
        println!("float accuracy:     {:.4}", scores.float_accuracy);
        println!("quantized accuracy: {:.4}", scores.quantized_accuracy);
        println!("agreement:          {:.4}", scores.agreement);
    }
    Ok(())
}

/// The file must have the model's feature columns, by name and in order, and no label the
/// model cannot predict: otherwise the scores would silently mean nothing.
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
    if data.num_classes > model.mlp.num_classes() {
        bail!(
            "{file}: labels go up to {}, but {model_path} predicts only {} classes",
            data.num_classes - 1,
            model.mlp.num_classes()
        );
    }
    Ok(())
}
