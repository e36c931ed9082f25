//! Fuzzing the ONNX importer ([`OnnxMlp::parse`] and [`import`], what `npk import` runs):
//! mutations of the committed fixtures (every supported graph shape) and random bytes. It must
//! return an error or an MLP within the kernel's limits that imports; never panic.

mod fuzz_common;

use std::path::Path;
use std::sync::LazyLock;

use fuzz_common::{DEFAULT_CASES, Input, config, mutations};
use npk::dataset::Dataset;
use npk::onnx::{OnnxMlp, import};
use npk_common::model::{MAX_LAYERS, MAX_WIDTH};
use proptest::prelude::*;

/// Every committed fixture (tests/fixtures/onnx/*.onnx, one per supported graph shape).
static INPUTS: LazyLock<Vec<Input>> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    files
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).unwrap();
            // Protobuf lengths are varints, mostly one byte: 4-byte windows find the floats'
            // neighbours and the odd dims; the byte edits do the rest.
            Input::binary(bytes, 1 << 16, &[])
        })
        .collect()
});

/// Tokens inserted by mutations: protobuf tags of the fields the importer reads, op names,
/// and floats it must refuse.
const TOKENS: &[&[u8]] = &[
    b"Relu",
    b"Gemm",
    b"MatMul",
    b"Softmax",
    b"Concat",
    b"Transpose",
    b"Constant",
    b"ai.onnx.ml",
    &[0x3a],             // GraphProto in ModelProto (field 7, length-delimited)
    &[0x0a],             // field 1, length-delimited (nodes, inputs)
    &[0x08, 0x80, 0x01], // a varint of 128
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &f32::NAN.to_le_bytes(),
    &f32::INFINITY.to_le_bytes(),
    &[0; 8],
];

/// Rows of `width` features for `classes` classes, to calibrate what parses.
fn calibration(width: usize, classes: usize) -> Dataset {
    let rows = 16;
    Dataset {
        feature_names: (0..width).map(|j| format!("f{j}")).collect(),
        features: (0..rows * width)
            .map(|k| ((k * 7919) % 23) as f32 - 11.0)
            .collect(),
        labels: (0..rows).map(|i| (i % classes) as u32).collect(),
        num_features: width,
        num_classes: classes,
    }
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok(onnx) = OnnxMlp::parse(bytes) else {
        return Ok(());
    };
    let layers = &onnx.mlp.layers;
    prop_assert!((1..=MAX_LAYERS).contains(&layers.len()));
    for (l, d) in layers.iter().enumerate() {
        prop_assert!(d.in_dim <= MAX_WIDTH && d.out_dim <= MAX_WIDTH);
        prop_assert_eq!(d.weights.len(), d.in_dim * d.out_dim);
        prop_assert_eq!(d.bias.len(), d.out_dim);
        prop_assert!(l == 0 || d.in_dim == layers[l - 1].out_dim);
    }
    let data = calibration(onnx.mlp.num_inputs(), onnx.mlp.num_classes());
    // Quantizing may refuse (a weight too large to requantize); it must not panic, and what it
    // makes must be a model file that saves.
    if let Ok(imported) = import(&onnx, &data, "fuzz.onnx") {
        let bytes = imported.file.to_bytes();
        prop_assert!(bytes.is_ok(), "imported but not writable: {bytes:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    #[test]
    fn mutated_onnx_files_are_refused_or_import(
        which in 0..INPUTS.len(),
        edits in mutations(TOKENS),
    ) {
        check(&INPUTS[which].mutate(&edits))?;
    }

    #[test]
    fn random_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes)?;
    }
}
