//! `npk::onnx` on the committed fixtures (tests/fixtures/onnx, made by
//! scripts/onnx_fixtures.py): every supported graph shape predicts what onnxruntime predicted
//! for the same rows, float and int8; edited copies of them are refused by node, op and reason;
//! `export` writes a graph of the model's shape.

use std::path::{Path, PathBuf};

use npk::dataset::Dataset;
use npk::model_file::Origin;
use npk::onnx::proto::{self, ModelProto, tensor_shape_proto::dimension};
use npk::onnx::{ImportError, OnnxMlp, export, import};
use npk::train::argmax;
use prost::Message;
use serde::Deserialize;

const FIXTURES: [&str; 6] = [
    "sklearn_iris",
    "sklearn_iris_zipmap",
    "sklearn_binary",
    "torch_gemm",
    "torch_matmul",
    "keras_tf2onnx",
];

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(format!("{name}.onnx"))).unwrap()
}

#[derive(Deserialize)]
struct Expected {
    rows: Vec<Vec<f32>>,
    /// onnxruntime's predicted class per row.
    labels: Vec<u32>,
}

fn expected(name: &str) -> Expected {
    let text = std::fs::read_to_string(fixture_dir().join("expected.json")).unwrap();
    let mut all: std::collections::HashMap<String, Expected> = serde_json::from_str(&text).unwrap();
    all.remove(name).unwrap()
}

/// The fixture's rows, labelled with onnxruntime's predictions.
fn rows(e: &Expected, classes: usize) -> Dataset {
    let width = e.rows[0].len();
    Dataset {
        feature_names: (0..width).map(|j| format!("f{j}")).collect(),
        features: e.rows.concat(),
        labels: e.labels.clone(),
        num_features: width,
        num_classes: classes,
    }
}

#[test]
fn every_supported_graph_predicts_what_onnxruntime_predicts() {
    for name in FIXTURES {
        let onnx = OnnxMlp::parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let e = expected(name);
        let data = rows(&e, onnx.mlp.num_classes());
        let imported = import(&onnx, &data, &format!("{name}.onnx")).unwrap();
        let file = &imported.file;
        // Float: the file's standardizer and MLP, row by row, against onnxruntime.
        let standardized = file.standardizer.apply(&data);
        for (i, &label) in e.labels.iter().enumerate() {
            let logits = file.mlp.forward(standardized.row(i), 1);
            assert_eq!(
                argmax(&logits),
                label as usize,
                "{name} row {i}: {logits:?}"
            );
        }
        assert_eq!(imported.scores.float_accuracy, 1.0, "{name}");
        assert!(
            imported.scores.quantized_accuracy >= 0.95,
            "{name}: int8 agrees with onnxruntime on {}",
            imported.scores.quantized_accuracy
        );
        // A graph's standardisation is kept; Keras' model reads raw features.
        assert_eq!(
            imported.graph_standardizer,
            name != "keras_tf2onnx",
            "{name}"
        );
        let Origin::ImportedOnnx { file, producer, .. } = &imported.file.provenance.origin else {
            panic!("{name}: not imported");
        };
        assert_eq!(file, &format!("{name}.onnx"));
        let want = match &name[..5] {
            "sklea" => "skl2onnx",
            "torch" => "pytorch",
            _ => "tf2onnx",
        };
        assert_eq!(producer, want);
    }
}

#[test]
fn a_two_class_graph_with_one_output_widens_to_two_classes() {
    let onnx = OnnxMlp::parse(&fixture("sklearn_binary")).unwrap();
    let last = onnx.mlp.layers.last().unwrap();
    assert_eq!(last.out_dim, 2);
    // Class 0 scores 0: class 1 wins exactly when skl2onnx's logit is positive.
    assert!(last.weights[..last.in_dim].iter().all(|&w| w == 0.0));
    assert_eq!(last.bias[0], 0.0);
}

/// The fixture `name` decoded, edited by `edit`, parsed again: the error's message.
fn refused(name: &str, edit: impl FnOnce(&mut ModelProto)) -> String {
    let mut model = ModelProto::decode(&fixture(name)[..]).unwrap();
    edit(&mut model);
    let err = OnnxMlp::parse(&model.encode_to_vec()).unwrap_err();
    err.to_string()
}

fn graph(m: &mut ModelProto) -> &mut proto::GraphProto {
    m.graph.as_mut().unwrap()
}

fn node<'a>(m: &'a mut ModelProto, name: &str) -> &'a mut proto::NodeProto {
    graph(m).node.iter_mut().find(|n| n.name() == name).unwrap()
}

#[test]
fn unsupported_graphs_are_refused_naming_the_node_and_the_reason() {
    let cases: Vec<(String, &str)> = vec![
        (
            refused("torch_gemm", |m| {
                node(m, "/net.1/Relu").op_type = Some("Tanh".into());
            }),
            "node '/net.1/Relu' (Tanh): Tanh between dense layers: the kernel's only \
             activation is ReLU",
        ),
        (
            refused("keras_tf2onnx", |m| {
                node(m, "sequential/dense/Relu").op_type = Some("LeakyRelu".into());
            }),
            "node 'sequential/dense/Relu' (LeakyRelu): LeakyRelu between dense layers",
        ),
        (
            refused("torch_gemm", |m| {
                node(m, "/net.0/Gemm").op_type = Some("Conv".into());
            }),
            "node '/net.0/Gemm' (Conv): before the first dense layer",
        ),
        (
            refused("torch_gemm", |m| {
                let input = &mut graph(m).input[0];
                let proto::type_proto::Value::TensorType(t) =
                    input.r#type.as_mut().unwrap().value.as_mut().unwrap()
                else {
                    unreachable!()
                };
                t.shape.as_mut().unwrap().dim[1].value =
                    Some(dimension::Value::DimParam("features".into()));
            }),
            "input 'input': dynamic feature dimension 'features'",
        ),
        (
            refused("torch_gemm", |m| {
                graph(m).initializer.retain(|t| t.name() != "net.2.weight");
            }),
            "node '/net.2/Gemm' (Gemm): weight 'net.2.weight' is not a constant",
        ),
        (
            refused("keras_tf2onnx", |m| {
                let softmax = node(m, "sequential/dense_1/Softmax");
                softmax.attribute[0].i = Some(0);
            }),
            "node 'sequential/dense_1/Softmax' (Softmax): axis 0: npk picks the class along axis 1",
        ),
        (
            refused("torch_gemm", |m| {
                // 129 hidden units: the first layer's weight [129, 4], the second's [3, 129].
                for t in &mut graph(m).initializer {
                    match t.name() {
                        "net.0.weight" => (t.dims, t.raw_data) = (vec![129, 4], None),
                        "net.0.bias" => (t.dims, t.raw_data) = (vec![129], None),
                        "net.2.weight" => (t.dims, t.raw_data) = (vec![3, 129], None),
                        _ => continue,
                    }
                    let n = t.dims.iter().product::<i64>() as usize;
                    t.float_data = vec![0.5; n];
                }
            }),
            "node '/net.0/Gemm' (Gemm): hidden layer 1 has width 129: must be 1..=128",
        ),
    ];
    for (message, want) in cases {
        assert!(message.starts_with(want), "{message}\n  expected: {want}");
    }
    assert!(matches!(
        OnnxMlp::parse(b"not a protobuf"),
        Err(ImportError::Decode(_))
    ));
}

#[test]
fn calibration_rows_must_have_the_model_width() {
    let onnx = OnnxMlp::parse(&fixture("torch_gemm")).unwrap();
    let mut data = rows(&expected("sklearn_binary"), 3);
    data.labels.iter_mut().for_each(|l| *l %= 3);
    assert_eq!(
        import(&onnx, &data, "m.onnx").unwrap_err().to_string(),
        "the calibration set has 8 feature columns, the model takes 4"
    );
}

#[test]
fn export_writes_the_int8_model_as_a_float_graph() {
    let onnx = OnnxMlp::parse(&fixture("torch_gemm")).unwrap();
    let e = expected("torch_gemm");
    let imported = import(&onnx, &rows(&e, 3), "torch_gemm.onnx").unwrap();
    let bytes = export(&imported.file);
    let model = ModelProto::decode(&bytes[..]).unwrap();
    assert_eq!(model.producer_name(), "npk");
    let g = model.graph.unwrap();
    let names = |v: &[proto::ValueInfoProto]| -> Vec<String> {
        v.iter().map(|i| i.name().to_string()).collect()
    };
    assert_eq!(names(&g.input), ["features"]);
    assert_eq!(names(&g.output), ["label", "probabilities"]);
    let ops: Vec<&str> = g.node.iter().map(|n| n.op_type()).collect();
    assert_eq!(
        ops,
        [
            "Sub", "Div", "Max", "Min", "MatMul", "Add", "Relu", "Min", "MatMul", "Add", "Softmax",
            "ArgMax"
        ]
    );
    let dims = |name: &str| {
        g.initializer
            .iter()
            .find(|t| t.name() == name)
            .map(|t| t.dims.clone())
    };
    assert_eq!(dims("layer0_weight"), Some(vec![4, 8]));
    assert_eq!(dims("layer1_weight"), Some(vec![8, 3]));
}
