//! ONNX in and out: [`import`] turns an ONNX MLP classifier (scikit-learn's through skl2onnx,
//! PyTorch's `nn.Sequential` of Linear and ReLU, Keras dense stacks through tf2onnx) into an
//! npk model file, quantized as `npk train` quantizes; [`export`] writes a model file's
//! integer model back as a float ONNX graph.
//!
//! The ONNX messages are prost types generated from the ONNX schema (`onnx-ml.proto`, beside
//! this file) by `scripts/onnx-proto.sh` and committed, so a build needs no protobuf compiler.

mod export;
mod graph;
/// The ONNX messages (generated: see the module doc), for callers that build or edit graphs.
#[allow(clippy::all, clippy::pedantic)]
pub mod proto;

use std::path::Path;

pub use export::export;
pub use graph::{Affine, OnnxMlp};

use crate::{
    dataset::{Dataset, Standardizer},
    model_file::{MAX_NAME_LEN, ModelFile, ModelFileErrorKind, Origin, Provenance, read_capped},
    pipeline::{Scores, schema_of, score, standardizer_for},
    quantize::{QuantizeError, quantize},
    train::Mlp,
};

/// Why an ONNX file cannot be imported: the node (its name, or `#index` in the graph when it
/// has none), tensor or input at fault and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Read(ModelFileErrorKind),
    #[error("not an ONNX model: {0}")]
    Decode(prost::DecodeError),
    #[error("the ONNX model has no graph")]
    NoGraph,
    #[error("the graph has {} inputs besides its weights ({}): npk reads one feature vector", .0.len(), .0.join(", "))]
    Inputs(Vec<String>),
    #[error("input '{name}': {reason}")]
    Input { name: String, reason: String },
    #[error("no dense layer (MatMul or Gemm) reads the features")]
    NoDenseLayer,
    #[error("node {node} ({op}): {reason}")]
    Node {
        node: String,
        op: String,
        reason: String,
    },
    #[error("tensor '{name}': {reason}")]
    Tensor { name: String, reason: String },
    #[error("the calibration set has {found} feature columns, the model takes {expected}")]
    CalibrationWidth { expected: usize, found: usize },
    #[error("quantizing the imported model")]
    Quantize(#[source] QuantizeError),
}

/// An imported model and its scores on the calibration rows.
#[derive(Clone, Debug)]
pub struct Imported {
    pub file: ModelFile,
    /// Float and int8 on the calibration rows, against their labels.
    pub scores: Scores,
    /// Whether the graph's standardisation became the file's standardizer (else the
    /// standardizer was fitted on the calibration rows; see [`import`]).
    pub graph_standardizer: bool,
}

impl OnnxMlp {
    /// Reads and parses the ONNX file at `path` (a regular file, at most
    /// [`crate::model_file::MAX_FILE_LEN`] bytes).
    pub fn load(path: &Path) -> Result<Self, ImportError> {
        Self::parse(&read_capped(path).map_err(ImportError::Read)?)
    }
}

/// The model file for `onnx`: standardized and quantized as `npk train` does, calibrated on
/// `calibration` (raw rows in the model's input order, labelled by class index), and scored on
/// it. `source` names the ONNX file in the provenance.
///
/// A graph's standardisation becomes the file's standardizer when it is one (every scale
/// positive); without one (or with a sign flip) the standardizer is fitted on the calibration
/// rows as `npk train` fits it, and the graph's affine prelude is folded into the first layer:
/// either way the file's float model computes what the graph computes, and the int8 input
/// codes are centred on the data.
pub fn import(
    onnx: &OnnxMlp,
    calibration: &Dataset,
    source: &str,
) -> Result<Imported, ImportError> {
    let expected = onnx.mlp.num_inputs();
    if calibration.num_features != expected {
        return Err(ImportError::CalibrationWidth {
            expected,
            found: calibration.num_features,
        });
    }
    let schema = schema_of(&calibration.feature_names);
    let graph_standardizer = onnx.prelude.as_ref().and_then(as_standardizer);
    let graph_standardizer_kept = graph_standardizer.is_some();
    let (standardizer, mlp) = match graph_standardizer {
        Some(s) => (s, onnx.mlp.clone()),
        None => {
            let s = standardizer_for(schema, calibration);
            let mlp = fold_prelude(&onnx.mlp, onnx.prelude.as_ref(), &s);
            (s, mlp)
        }
    };
    let quantized =
        quantize(&mlp, &standardizer, calibration, schema).map_err(ImportError::Quantize)?;
    let scores = score(&mlp, &standardizer, &quantized, calibration);
    let mut file = ModelFile::new(
        mlp,
        standardizer,
        quantized,
        calibration.feature_names.clone(),
    );
    file.provenance = Provenance::now_from(Origin::ImportedOnnx {
        file: cut(source),
        producer: cut(&onnx.producer),
        producer_version: cut(&onnx.producer_version),
    });
    Ok(Imported {
        file,
        scores,
        graph_standardizer: graph_standardizer_kept,
    })
}

/// `y = x * scale + shift` as `(x - mean) / std`, when every scale is positive and both fit f32.
fn as_standardizer(a: &Affine) -> Option<Standardizer> {
    let std: Vec<f32> = a.scale.iter().map(|&k| (1.0 / k) as f32).collect();
    let mean: Vec<f32> = a
        .scale
        .iter()
        .zip(&a.shift)
        .map(|(&k, &s)| (-s / k) as f32)
        .collect();
    let ok = a.scale.iter().all(|&k| k > 0.0)
        && std.iter().all(|&s| s.is_finite() && s > 0.0)
        && mean.iter().all(|m| m.is_finite());
    ok.then_some(Standardizer { mean, std })
}

/// `mlp` reading `(x - mean) / std` instead of `prelude(x)` (or `x` without one): the first
/// layer takes `prelude(std * z + mean)`, an affine map of `z`, folded into its weights and
/// biases (in f64).
fn fold_prelude(mlp: &Mlp, prelude: Option<&Affine>, s: &Standardizer) -> Mlp {
    let mut out = mlp.clone();
    let first = &mut out.layers[0];
    let n = first.in_dim;
    let (scale, shift) = match prelude {
        Some(a) => (a.scale.clone(), a.shift.clone()),
        None => (vec![1.0; n], vec![0.0; n]),
    };
    for o in 0..first.out_dim {
        let row = &mut first.weights[o * n..(o + 1) * n];
        let mut bias = f64::from(first.bias[o]);
        for (j, w) in row.iter_mut().enumerate() {
            let w64 = f64::from(*w);
            bias += w64 * (scale[j] * f64::from(s.mean[j]) + shift[j]);
            *w = (w64 * scale[j] * f64::from(s.std[j])) as f32;
        }
        first.bias[o] = bias as f32;
    }
    out
}

/// `s` cut to the model file's longest name, at a character boundary.
fn cut(s: &str) -> String {
    let mut end = s.len().min(MAX_NAME_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
