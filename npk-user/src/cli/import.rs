//! `npk import`: an ONNX MLP trained elsewhere as an npk model file, quantized as `npk train`
//! quantizes, calibrated on a CSV file.

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::{
    dataset::Dataset,
    noteln,
    onnx::{self, OnnxMlp},
    output::{Console, OutputPath},
    quantize::agreement_warning,
};

/// Import an ONNX MLP classifier (scikit-learn through skl2onnx, PyTorch Linear/ReLU stacks,
/// Keras dense stacks through tf2onnx), quantize it for the kernel and save a model file;
/// reports float and int8 accuracy on the calibration rows.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The ONNX model: one float input [N, F], an optional standardisation (Scaler, or Sub,
    /// Add, Mul, Div by constants), dense layers (MatMul + Add, or Gemm) with ReLU between
    /// them, and a head of Softmax/Sigmoid/ArgMax and label ops, which npk drops (it predicts
    /// the argmax of the last layer).
    #[arg(value_name = "FILE.onnx")]
    pub onnx: PathBuf,
    /// CSV file to calibrate the int8 model on, as for `npk train`: a header row, the model's
    /// inputs in its order, and the label last: the class index 0..K-1 (the position of the
    /// class in the model's outputs).
    #[arg(long, value_name = "DATA.csv")]
    pub calibrate: PathBuf,
    /// Model file to write.
    #[arg(long, value_name = "MODEL")]
    pub out: PathBuf,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// The `--json` line; the field names are stable.
#[derive(Serialize)]
struct Report<'a> {
    producer: &'a str,
    producer_version: &'a str,
    /// Layer widths, input first.
    shape: Vec<usize>,
    /// Whether the graph's standardisation became the model's (else it was folded into the
    /// first layer and the standardization fitted on the calibration rows).
    standardisation_kept: bool,
    calibration_samples: usize,
    float_accuracy: f64,
    quantized_accuracy: f64,
    /// Fraction of calibration rows where the int8 and the float model pick the same class.
    quantized_agreement: f64,
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let out = OutputPath::check(&args.out, &[&args.onnx, &args.calibrate])?;
    let console = if out.is_stdout() {
        Console::Stderr
    } else {
        Console::Stdout
    };
    let source = args.onnx.display();
    let model = OnnxMlp::load(&args.onnx).with_context(|| format!("cannot import {source}"))?;
    let data = Dataset::load_csv_for_model(&args.calibrate, model.mlp.num_classes())?;
    let file_name = args
        .onnx
        .file_name()
        .map_or_else(|| source.to_string(), |n| n.to_string_lossy().into_owned());
    let imported = onnx::import(&model, &data, &file_name)
        .with_context(|| format!("cannot import {source} with {}", args.calibrate.display()))?;
    imported.file.save_to(&out)?;
    let scores = &imported.scores;
    if let Some(warning) = agreement_warning(scores.agreement, scores.samples) {
        noteln!("{warning}");
    }
    let mut shape: Vec<usize> = imported.file.mlp.layers.iter().map(|l| l.in_dim).collect();
    shape.push(imported.file.mlp.num_classes());
    let standardisation_kept = imported.graph_standardizer;
    if args.json {
        let report = Report {
            producer: &model.producer,
            producer_version: &model.producer_version,
            shape,
            standardisation_kept,
            calibration_samples: scores.samples,
            float_accuracy: scores.float_accuracy,
            quantized_accuracy: scores.quantized_accuracy,
            quantized_agreement: scores.agreement,
        };
        console.line(format_args!("{}", serde_json::to_string(&report)?))?;
        return Ok(());
    }
    let widths: Vec<String> = shape.iter().map(usize::to_string).collect();
    console.line(format_args!(
        "imported {} ({} {}): MLP {}, standardisation {}",
        source,
        model.producer,
        model.producer_version,
        widths.join("-"),
        if standardisation_kept {
            "from the graph"
        } else {
            "fitted on the calibration rows"
        }
    ))?;
    console.line(format_args!(
        "float accuracy:          {:.4} ({} calibration rows)",
        scores.float_accuracy, scores.samples
    ))?;
    console.line(format_args!(
        "quantized accuracy:      {:.4}",
        scores.quantized_accuracy
    ))?;
    console.line(format_args!(
        "int8/float agreement:    {:.4}",
        scores.agreement
    ))?;
    console.line(format_args!("model written to {}", out.path().display()))?;
    Ok(())
}
