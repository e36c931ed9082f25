//! `npk export`: a model file's int8 model as a float ONNX graph, for other tools.

use std::path::PathBuf;

use crate::{model_file::ModelFile, onnx, outln, output::OutputPath};

/// Write a model file's int8 model as a float ONNX graph (weights dequantized, int8 ranges
/// kept as clips): input `features` [N, F] (raw columns), outputs `label` and `probabilities`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The .npk model file.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// ONNX file to write.
    #[arg(long, value_name = "FILE.onnx")]
    pub onnx: PathBuf,
    /// Print the result as one JSON object (onnx, bytes, inputs, classes).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let out = OutputPath::check(&args.onnx, &[&args.model])?;
    let model = ModelFile::load(&args.model)?;
    let graph = onnx::export(&model);
    out.write_all(&graph)?;
    if args.json {
        let (inputs, classes) = (model.mlp.num_inputs(), model.mlp.num_classes());
        outln!(
            "{}",
            serde_json::json!({
                "onnx": (!out.is_stdout()).then(|| out.path().display().to_string()),
                "bytes": graph.len(),
                "inputs": inputs,
                "classes": classes,
            })
        )?;
    } else if !out.is_stdout() {
        outln!("ONNX graph written to {}", out.path().display())?;
    }
    Ok(())
}
