//! `npk export`: a model file's integer model as a float ONNX graph, so that other tools see
//! what the kernel computes. Every weight and bias is its int8 or int32 code times its scale,
//! and the int8 ranges are kept: inputs are clipped where the quantizer clipped them and each
//! hidden neuron at its largest code. What is left between the graph and the kernel is the
//! rounding of activations to codes.

use prost::Message;

use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
    attribute_proto::AttributeType,
    tensor_proto::DataType,
    tensor_shape_proto::{Dimension, dimension},
    type_proto,
};
use crate::model_file::ModelFile;
use npk_common::model::{HIDDEN_MAX, HIDDEN_ZERO_POINT, INPUT_MAX};

/// The standard operator set the graph uses (Softmax over one axis, Min/Max broadcasting).
const OPSET: i64 = 13;
/// ONNX IR version 8 (ONNX 1.10): what opset 13 needs, read by every current runtime.
const IR_VERSION: i64 = 8;

/// The graph of `file`'s integer model, encoded: input `features` (float, `[N, F]`, the
/// model's columns unstandardized), outputs `label` (int64, `[N]`, the class index) and
/// `probabilities` (float, `[N, K]`, softmax of the dequantized logits).
pub fn export(file: &ModelFile) -> Vec<u8> {
    let q = &file.quantized;
    let model = &q.model;
    let n_in = file.feature_names.len();
    let mut init = Vec::new();
    let mut nodes = Vec::new();

    // The kernel subtracts the mean rounded to the raw encoding's resolution.
    let mean: Vec<f32> = (0..n_in)
        .map(|j| {
            let pow = f64::from(q.encoding.frac_bits[j]).exp2();
            (f64::from(model.input.offset[j]) / pow) as f32
        })
        .collect();
    let clip: Vec<f32> = q
        .scales
        .input
        .iter()
        .map(|&s| (s * f64::from(INPUT_MAX)) as f32)
        .collect();
    init.push(tensor("mean", &[n_in], mean));
    init.push(tensor("std", &[n_in], file.standardizer.std.clone()));
    init.push(tensor(
        "input_min",
        &[n_in],
        clip.iter().map(|c| -c).collect(),
    ));
    init.push(tensor("input_max", &[n_in], clip));
    nodes.push(node("Sub", &["features", "mean"], "centred", vec![]));
    nodes.push(node("Div", &["centred", "std"], "standardized", vec![]));
    nodes.push(node(
        "Max",
        &["standardized", "input_min"],
        "floored",
        vec![],
    ));
    nodes.push(node("Min", &["floored", "input_max"], "layer0_in", vec![]));

    let layers = &model.layers;
    let mut input = "layer0_in".to_string();
    for (l, p) in layers.iter().enumerate() {
        let scales = &q.scales.layers[l];
        let in_scales = q.scales.layer_input(l);
        let (n, m) = (p.in_dim, p.out_dim);
        // The quantizer folded the input zero point (hidden layers' -128) into the bias.
        let zp_in = if l == 0 { 0 } else { HIDDEN_ZERO_POINT };
        let mut weights = vec![0f32; n * m];
        let mut bias = Vec::with_capacity(m);
        for o in 0..m {
            let mut sum_w = 0i64;
            for (i, &s_in) in in_scales.iter().enumerate().take(n) {
                let w = p.weight(o, i);
                sum_w += i64::from(w);
                // MatMul reads `[in][out]`.
                weights[i * m + o] = (f64::from(w) * scales.acc[o] / s_in) as f32;
            }
            let b = i64::from(p.bias[o]) + i64::from(zp_in) * sum_w;
            bias.push((b as f64 * scales.acc[o]) as f32);
        }
        let (w_name, b_name) = (format!("layer{l}_weight"), format!("layer{l}_bias"));
        init.push(tensor(&w_name, &[n, m], weights));
        init.push(tensor(&b_name, &[m], bias));
        let product = format!("layer{l}_matmul");
        nodes.push(node("MatMul", &[&input, &w_name], &product, vec![]));
        if l + 1 == layers.len() {
            nodes.push(node("Add", &[&product, &b_name], "logits", vec![]));
            break;
        }
        let (sum, relu, next) = (
            format!("layer{l}_add"),
            format!("layer{l}_relu"),
            format!("layer{}_in", l + 1),
        );
        nodes.push(node("Add", &[&product, &b_name], &sum, vec![]));
        nodes.push(node("Relu", &[&sum], &relu, vec![]));
        // The largest hidden code, HIDDEN_MAX, stands for (HIDDEN_MAX - zero point) steps.
        let top = f64::from(HIDDEN_MAX - HIDDEN_ZERO_POINT);
        let max_name = format!("layer{l}_max");
        let max: Vec<f32> = scales.output.iter().map(|&s| (s * top) as f32).collect();
        init.push(tensor(&max_name, &[m], max));
        nodes.push(node("Min", &[&relu, &max_name], &next, vec![]));
        input = next;
    }
    nodes.push(node(
        "Softmax",
        &["logits"],
        "probabilities",
        vec![int_attr("axis", 1)],
    ));
    nodes.push(node(
        "ArgMax",
        &["logits"],
        "label",
        vec![int_attr("axis", 1), int_attr("keepdims", 0)],
    ));

    let classes = layers.last().map_or(0, |p| p.out_dim);
    let graph = GraphProto {
        name: Some("npk".into()),
        node: nodes,
        initializer: init,
        input: vec![value_info("features", DataType::Float, &[None, Some(n_in)])],
        output: vec![
            value_info("label", DataType::Int64, &[None]),
            value_info("probabilities", DataType::Float, &[None, Some(classes)]),
        ],
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("npk".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(
            "npk's int8 model dequantized: weights and biases are codes times scales, inputs \
             and hidden neurons clipped to their int8 ranges"
                .into(),
        ),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A float tensor.
pub(super) fn tensor(name: &str, dims: &[usize], values: Vec<f32>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Float as i32),
        float_data: values,
        ..Default::default()
    }
}

/// A node of the standard domain, named after its one output.
pub(super) fn node(
    op: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        name: Some(output.into()),
        op_type: Some(op.into()),
        input: inputs.iter().map(|&i| i.into()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

pub(super) fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

/// A tensor's name, element type and shape; `None` is a batch dimension, named `N`.
pub(super) fn value_info(name: &str, elem: DataType, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(n) => dimension::Value::DimValue(*n as i64),
                None => dimension::Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
