//! Reading an ONNX graph as the MLP the kernel runs: an optional per-feature affine prelude
//! (standardisation), dense layers with ReLU between them, and a head that only turns the last
//! layer's outputs into probabilities and a label (argmax-preserving, so npk drops it).
//!
//! The graph is walked from its one input along the only consumer of each tensor; every node
//! met is either understood or refused by name, op and reason. Nodes that the input never
//! reaches (constants, shapes) matter only as the constants they give.

use std::collections::{HashMap, HashSet, VecDeque};

use npk_common::model::{LimitError, MAX_LAYERS, check_limits};
use prost::Message;

use super::ImportError;
use super::proto::{
    AttributeProto, ModelProto, NodeProto, TensorProto,
    tensor_proto::{DataLocation, DataType},
    tensor_shape_proto::dimension,
    type_proto,
};
use crate::train::{Dense, Mlp};

/// The domain of the classical ML operators (`Scaler`, `ZipMap`, ...).
const ML_DOMAIN: &str = "ai.onnx.ml";

/// Ops that pass a tensor through unchanged (Cast: to a float type, checked where met).
const PASS_THROUGH: &[&str] = &["Identity", "Cast", "Dropout"];

/// Ops after the output layer that keep its argmax: probabilities, the label and its encoding.
const HEAD_OPS: &[&str] = &[
    "Softmax",
    "LogSoftmax",
    "Sigmoid",
    "ArgMax",
    "Identity",
    "Cast",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "ArrayFeatureExtractor",
    "ZipMap",
    // Checked where met: only `scalar - p` and the two-class `[1 - p, p]`.
    "Sub",
    "Concat",
];

/// A per-feature affine map `y = x * scale + shift`: a graph's standardisation.
#[derive(Clone, Debug, PartialEq)]
pub struct Affine {
    pub scale: Vec<f64>,
    pub shift: Vec<f64>,
}

/// An ONNX classifier read as an MLP.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxMlp {
    /// ReLU after every layer but the last; the last layer's argmax is the class (index into
    /// the model's classes, in their order). A one-output (two-class) model is widened to two
    /// outputs.
    pub mlp: Mlp,
    /// The standardisation before the first layer, when the graph has one.
    pub prelude: Option<Affine>,
    /// `producer_name` and `producer_version` of the file (empty when unset).
    pub producer: String,
    pub producer_version: String,
}

impl OnnxMlp {
    /// Decodes and reads an ONNX model. Never panics, whatever the bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImportError> {
        let model = ModelProto::decode(bytes).map_err(ImportError::Decode)?;
        let graph = model.graph.as_ref().ok_or(ImportError::NoGraph)?;
        let walk = Graph::new(&graph.node, &graph.initializer);
        let (input, features) = feature_input(graph, &walk)?;
        let (prelude, mlp) = walk.read(input, features)?;
        Ok(Self {
            mlp,
            prelude,
            producer: model.producer_name().to_string(),
            producer_version: model.producer_version().to_string(),
        })
    }
}

/// The graph's one non-constant input and its width: a float tensor `[N, F]`, F fixed.
fn feature_input<'a>(
    graph: &'a super::proto::GraphProto,
    walk: &Graph,
) -> Result<(&'a str, usize), ImportError> {
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !walk.initializers.contains_key(i.name()))
        .collect();
    let [input] = inputs[..] else {
        return Err(ImportError::Inputs(
            inputs.iter().map(|i| i.name().to_string()).collect(),
        ));
    };
    let name = input.name();
    let bad = |reason: String| ImportError::Input {
        name: name.to_string(),
        reason,
    };
    let Some(type_proto::Value::TensorType(tensor)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(bad("not a tensor".into()));
    };
    let elem = tensor.elem_type();
    if elem != DataType::Float as i32 && elem != DataType::Double as i32 {
        return Err(bad(format!(
            "element type {}: npk reads float features",
            data_type_name(elem)
        )));
    }
    let dims = tensor.shape.as_ref().map(|s| &s.dim[..]).unwrap_or(&[]);
    let [_, width] = dims else {
        return Err(bad(format!(
            "{} dimensions: npk reads a batch of feature vectors, shape [N, F]",
            dims.len()
        )));
    };
    match &width.value {
        Some(dimension::Value::DimValue(f)) if *f > 0 => Ok((name, *f as usize)),
        Some(dimension::Value::DimParam(p)) => Err(bad(format!(
            "dynamic feature dimension '{p}': npk needs a fixed number of features"
        ))),
        _ => Err(bad(
            "no fixed feature dimension: npk needs a fixed number of features".into(),
        )),
    }
}

/// A constant tensor's shape and values (any numeric type, as f64).
#[derive(Clone, Debug)]
struct Tensor {
    dims: Vec<usize>,
    values: Vec<f64>,
}

impl Tensor {
    /// One value per feature of `width` (a scalar is repeated), or `None` for another shape:
    /// `[]`, `[1]`, `[width]`, `[1, width]`, `[1, 1]`.
    fn per_feature(&self, width: usize) -> Option<Vec<f64>> {
        let real: Vec<usize> = self.dims.iter().copied().filter(|&d| d != 1).collect();
        match (real.as_slice(), self.dims.len()) {
            ([], _) => Some(vec![self.values[0]; width]),
            ([w], 1 | 2) if *w == width && self.dims.last() == Some(&width) => {
                Some(self.values.clone())
            }
            _ => None,
        }
    }
}

/// The graph's nodes indexed by the tensors they read and write.
struct Graph<'a> {
    nodes: &'a [NodeProto],
    initializers: HashMap<&'a str, &'a TensorProto>,
    producers: HashMap<&'a str, usize>,
    consumers: HashMap<&'a str, Vec<usize>>,
}

impl<'a> Graph<'a> {
    fn new(nodes: &'a [NodeProto], initializers: &'a [TensorProto]) -> Self {
        let mut producers = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            for out in &node.output {
                producers.insert(out.as_str(), i);
            }
            // A node reading one tensor twice consumes it once.
            let reads: HashSet<&str> = node
                .input
                .iter()
                .map(String::as_str)
                .filter(|s| !s.is_empty())
                .collect();
            for input in reads {
                consumers.entry(input).or_default().push(i);
            }
        }
        Self {
            nodes,
            initializers: initializers.iter().map(|t| (t.name(), t)).collect(),
            producers,
            consumers,
        }
    }

    fn consumers(&self, tensor: &str) -> &[usize] {
        self.consumers.get(tensor).map_or(&[], Vec::as_slice)
    }

    /// The error for node `i`.
    fn error(&self, i: usize, reason: impl Into<String>) -> ImportError {
        let node = &self.nodes[i];
        ImportError::Node {
            node: match node.name() {
                "" => format!("#{i}"),
                name => format!("'{name}'"),
            },
            op: node.op_type().to_string(),
            reason: reason.into(),
        }
    }

    /// Node `i`'s op, when its domain is one npk reads (the default one or `ai.onnx.ml`).
    fn op(&self, i: usize) -> Result<&'a str, ImportError> {
        let node = &self.nodes[i];
        match node.domain() {
            "" | "ai.onnx" | ML_DOMAIN => Ok(node.op_type()),
            domain => Err(self.error(i, format!("operator domain '{domain}' is not supported"))),
        }
    }

    /// The one node reading `tensor`, which is inside the chain npk imports; `None` when
    /// nothing reads it.
    fn next(&self, tensor: &str) -> Result<Option<usize>, ImportError> {
        match self.consumers(tensor) {
            [] => Ok(None),
            [i] => Ok(Some(*i)),
            [_, i, ..] => Err(self.error(
                *i,
                format!(
                    "reads '{tensor}' beside another node: npk imports a chain of layers, \
                     without branches"
                ),
            )),
        }
    }

    /// Past the pass-through nodes (Identity, Cast to a float, Dropout) that are `tensor`'s
    /// only reader, and theirs: the tensor that carries the same values.
    fn skip_pass_through(&self, mut tensor: &'a str) -> Result<&'a str, ImportError> {
        loop {
            let &[i] = self.consumers(tensor) else {
                return Ok(tensor);
            };
            let op = self.op(i)?;
            if !PASS_THROUGH.contains(&op) {
                return Ok(tensor);
            }
            if op == "Cast" {
                let to = self.int_attr(i, "to")?.unwrap_or(0);
                if to != DataType::Float as i64 && to != DataType::Double as i64 {
                    return Err(self.error(
                        i,
                        format!(
                            "casts to {}: npk computes in float",
                            data_type_name(to as i32)
                        ),
                    ));
                }
            }
            tensor = self.output(i)?;
        }
    }

    /// Node `i`'s first output.
    fn output(&self, i: usize) -> Result<&'a str, ImportError> {
        match self.nodes[i].output.first() {
            Some(out) if !out.is_empty() => Ok(out),
            _ => Err(self.error(i, "has no output")),
        }
    }

    fn attr(&self, i: usize, name: &str) -> Option<&'a AttributeProto> {
        self.nodes[i].attribute.iter().find(|a| a.name() == name)
    }

    fn int_attr(&self, i: usize, name: &str) -> Result<Option<i64>, ImportError> {
        match self.attr(i, name) {
            None => Ok(None),
            Some(a) => {
                a.i.map(Some)
                    .ok_or_else(|| self.error(i, format!("attribute '{name}' is not an integer")))
            }
        }
    }

    fn float_attr(&self, i: usize, name: &str) -> Result<Option<f64>, ImportError> {
        match self.attr(i, name) {
            None => Ok(None),
            Some(a) => {
                a.f.map(|f| Some(f64::from(f)))
                    .ok_or_else(|| self.error(i, format!("attribute '{name}' is not a float")))
            }
        }
    }

    /// The value of constant tensor `name`: an initializer, a `Constant` node's value, or a
    /// 2-D transpose of one (as newer PyTorch exporters write a Linear weight). `None` when
    /// it is computed from the features.
    fn constant(&self, name: &str) -> Result<Option<Tensor>, ImportError> {
        match self.producers.get(name) {
            Some(&i) if self.op(i)? == "Transpose" => {
                let source = self.nodes[i].input.first().map_or("", String::as_str);
                // One level: a chain of transposes is not worth a recursion.
                let Some(t) = self.stored_constant(source)? else {
                    return Ok(None);
                };
                let perm = self.attr(i, "perm").map_or(&[][..], |a| &a.ints[..]);
                match (&t.dims[..], perm) {
                    (&[rows, cols], [] | [1, 0]) => Ok(Some(Tensor {
                        dims: vec![cols, rows],
                        values: (0..cols * rows)
                            .map(|k| t.values[(k % rows) * cols + k / rows])
                            .collect(),
                    })),
                    _ => Err(self.error(i, "transposes a constant that is not a matrix")),
                }
            }
            _ => self.stored_constant(name),
        }
    }

    /// An initializer or a `Constant` node's value.
    fn stored_constant(&self, name: &str) -> Result<Option<Tensor>, ImportError> {
        if let Some(t) = self.initializers.get(name) {
            return decode(t).map(Some);
        }
        let Some(&i) = self.producers.get(name) else {
            return Ok(None);
        };
        match self.op(i)? {
            "Constant" => {
                if let Some(t) = self.attr(i, "value").and_then(|a| a.t.as_ref()) {
                    return decode(t).map(Some);
                }
                if let Some(f) = self.attr(i, "value_float").and_then(|a| a.f) {
                    return Ok(Some(Tensor {
                        dims: vec![],
                        values: vec![f64::from(f)],
                    }));
                }
                if let Some(a) = self.attr(i, "value_floats") {
                    return Ok(Some(Tensor {
                        dims: vec![a.floats.len()],
                        values: a.floats.iter().map(|&f| f64::from(f)).collect(),
                    }));
                }
                Err(self.error(i, "a constant npk cannot read: expected a float value"))
            }
            _ => Ok(None),
        }
    }

    /// The constant operand of binary node `i`, which also reads `tensor`: its value and
    /// whether `tensor` comes first.
    fn constant_operand(&self, i: usize, tensor: &str) -> Result<(Tensor, bool), ImportError> {
        let inputs = &self.nodes[i].input;
        let [a, b] = &inputs[..] else {
            return Err(self.error(i, format!("{} inputs, expected 2", inputs.len())));
        };
        let (other, tensor_first) = if a == tensor { (b, true) } else { (a, false) };
        if other == tensor {
            return Err(self.error(i, "combines the features with themselves"));
        }
        match self.constant(other)? {
            Some(t) => Ok((t, tensor_first)),
            None => Err(self.error(
                i,
                format!("operand '{other}' is not a constant: npk imports constant weights"),
            )),
        }
    }

    /// Walks from the input `tensor` of `features` values: the prelude, then the layers.
    fn read(&self, input: &'a str, features: usize) -> Result<(Option<Affine>, Mlp), ImportError> {
        let mut tensor = self.skip_pass_through(input)?;
        let mut prelude: Option<Affine> = None;
        // The prelude: per-feature affine ops, up to the first dense layer.
        let first = loop {
            let Some(i) = self.next(tensor)? else {
                return Err(ImportError::NoDenseLayer);
            };
            let op = self.op(i)?;
            if op == "MatMul" || op == "Gemm" {
                break i;
            }
            let affine = prelude.get_or_insert_with(|| Affine {
                scale: vec![1.0; features],
                shift: vec![0.0; features],
            });
            self.apply_prelude_op(i, op, tensor, affine)?;
            tensor = self.skip_pass_through(self.output(i)?)?;
        };
        if let Some(affine) = &prelude
            && affine
                .scale
                .iter()
                .chain(&affine.shift)
                .any(|v| !v.is_finite())
        {
            return Err(ImportError::Input {
                name: input.to_string(),
                reason: "its standardisation overflows (a value is not finite)".into(),
            });
        }

        let mut layers: Vec<Dense> = Vec::new();
        let mut layer_nodes: Vec<usize> = Vec::new();
        let mut dense = first;
        let logits = loop {
            if layers.len() == MAX_LAYERS {
                return Err(self.error(
                    dense,
                    format!(
                        "dense layer {}: the kernel runs at most {MAX_LAYERS} (MAX_LAYERS)",
                        MAX_LAYERS + 1
                    ),
                ));
            }
            let width = layers.last().map_or(features, |l| l.out_dim);
            let (layer, out) = self.dense(dense, tensor, width)?;
            layers.push(layer);
            layer_nodes.push(dense);
            // Anything but one ReLU makes this the output layer, checked with its head.
            let out = self.skip_pass_through(out)?;
            let &[relu] = self.consumers(out) else {
                break out;
            };
            if self.op(relu)? != "Relu" {
                break out;
            }
            tensor = self.skip_pass_through(self.output(relu)?)?;
            match self.next(tensor)? {
                Some(i) if matches!(self.op(i)?, "MatMul" | "Gemm") => dense = i,
                Some(i) => {
                    return Err(self.error(
                        i,
                        "after a ReLU: npk imports dense layers (MatMul + Add, Gemm) with ReLU \
                         between them",
                    ));
                }
                None => {
                    return Err(self.error(
                        relu,
                        "ends the model: the last dense layer must give the class scores",
                    ));
                }
            }
        };
        let positive = self.check_head(logits, layers.last().map_or(0, |l| l.out_dim))?;
        let last = layers
            .last_mut()
            .expect("the loop reads at least one layer");
        if last.out_dim == 1 {
            widen_binary(last, positive);
        }
        let hidden: Vec<usize> = layers[..layers.len() - 1]
            .iter()
            .map(|l| l.out_dim)
            .collect();
        check_limits(features, &hidden, last_out(&layers)).map_err(|e| match e {
            LimitError::Inputs(_) => ImportError::Input {
                name: input.to_string(),
                reason: e.to_string(),
            },
            LimitError::Width { layer, .. } => self.error(layer_nodes[layer - 1], e.to_string()),
            LimitError::HiddenLayers(_) | LimitError::Classes(_) => {
                self.error(layer_nodes[layer_nodes.len() - 1], e.to_string())
            }
        })?;
        Ok((prelude, Mlp { layers }))
    }

    /// Folds prelude node `i` (`op`, reading `tensor`) into `affine`.
    fn apply_prelude_op(
        &self,
        i: usize,
        op: &str,
        tensor: &str,
        affine: &mut Affine,
    ) -> Result<(), ImportError> {
        let width = affine.scale.len();
        if op == "Scaler" && self.nodes[i].domain() == ML_DOMAIN {
            // y = (x - offset) * scale; one value stands for all features.
            let list = |name: &str, default: f64| -> Result<Vec<f64>, ImportError> {
                let values = self.attr(i, name).map_or(&[][..], |a| &a.floats[..]);
                match values.len() {
                    0 => Ok(vec![default; width]),
                    1 => Ok(vec![f64::from(values[0]); width]),
                    n if n == width => Ok(values.iter().map(|&v| f64::from(v)).collect()),
                    n => Err(self.error(i, format!("{n} values of '{name}' for {width} features"))),
                }
            };
            let (offset, scale) = (list("offset", 0.0)?, list("scale", 1.0)?);
            for j in 0..width {
                affine.scale[j] *= scale[j];
                affine.shift[j] = (affine.shift[j] - offset[j]) * scale[j];
            }
            return Ok(());
        }
        if !matches!(op, "Add" | "Sub" | "Mul" | "Div") {
            return Err(self.error(
                i,
                "before the first dense layer: npk imports a standardisation (Scaler, or Sub, \
                 Add, Mul, Div by constants) and dense layers (MatMul + Add, Gemm)",
            ));
        }
        let (constant, tensor_first) = self.constant_operand(i, tensor)?;
        let c = constant.per_feature(width).ok_or_else(|| {
            self.error(
                i,
                format!(
                    "constant of shape {:?}: expected a scalar or one value per feature ({width})",
                    constant.dims
                ),
            )
        })?;
        let terms = affine.scale.iter_mut().zip(&mut affine.shift).zip(c);
        for (j, ((k, s), c)) in terms.enumerate() {
            match (op, tensor_first) {
                ("Add", _) => *s += c,
                ("Sub", true) => *s -= c,
                ("Sub", false) => (*k, *s) = (-*k, c - *s),
                ("Mul", _) => (*k, *s) = (*k * c, *s * c),
                ("Div", true) if c != 0.0 => (*k, *s) = (*k / c, *s / c),
                ("Div", true) => {
                    return Err(self.error(i, format!("divides feature {j} by zero")));
                }
                _ => {
                    return Err(self.error(
                        i,
                        "divides a constant by the features: not a standardisation",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Dense node `i` (MatMul or Gemm) reading `tensor` of `width` values, and the Add of a
    /// constant bias after it if there is one: the layer and the tensor it gives.
    fn dense(&self, i: usize, tensor: &str, width: usize) -> Result<(Dense, &'a str), ImportError> {
        let node = &self.nodes[i];
        if node.input.first().map(String::as_str) != Some(tensor) {
            return Err(self.error(i, "the features are not its first operand"));
        }
        let weight_name = node.input.get(1).map_or("", String::as_str);
        let Some(w) = self.constant(weight_name)? else {
            return Err(self.error(
                i,
                format!("weight '{weight_name}' is not a constant: npk imports constant weights"),
            ));
        };
        let &[rows, cols] = &w.dims[..] else {
            return Err(self.error(
                i,
                format!(
                    "weight '{weight_name}' of shape {:?} is not a matrix",
                    w.dims
                ),
            ));
        };
        let gemm = node.op_type() == "Gemm";
        let (alpha, beta, trans_b) = if gemm {
            if self.int_attr(i, "transA")?.unwrap_or(0) != 0 {
                return Err(self.error(i, "transA=1: the features must not be transposed"));
            }
            (
                self.float_attr(i, "alpha")?.unwrap_or(1.0),
                self.float_attr(i, "beta")?.unwrap_or(1.0),
                self.int_attr(i, "transB")?.unwrap_or(0) != 0,
            )
        } else {
            if node.input.len() != 2 {
                return Err(self.error(i, format!("{} inputs, expected 2", node.input.len())));
            }
            (1.0, 1.0, false)
        };
        // `[out][in]` row-major, like the kernel: transB=1 stores it so already.
        let (in_dim, out_dim) = if trans_b { (cols, rows) } else { (rows, cols) };
        if in_dim != width {
            return Err(self.error(
                i,
                format!("weight '{weight_name}' takes {in_dim} inputs, but {width} reach it"),
            ));
        }
        let weights: Vec<f32> = (0..out_dim * in_dim)
            .map(|k| {
                let (o, j) = (k / in_dim, k % in_dim);
                let v = if trans_b {
                    w.values[k]
                } else {
                    w.values[j * out_dim + o]
                };
                (alpha * v) as f32
            })
            .collect();
        let mut bias = vec![0f64; out_dim];
        if gemm && let Some(c_name) = node.input.get(2).filter(|c| !c.is_empty()) {
            let c = self
                .constant(c_name)?
                .ok_or_else(|| self.error(i, format!("bias '{c_name}' is not a constant")))?;
            let c = c.per_feature(out_dim).ok_or_else(|| {
                self.error(
                    i,
                    format!(
                        "bias '{c_name}' of shape {:?} is not one value per output ({out_dim})",
                        c.dims
                    ),
                )
            })?;
            bias.iter_mut().zip(c).for_each(|(b, c)| *b += beta * c);
        }
        let mut out = self.output(i)?;
        // MatMul + Add, or a Gemm without C followed by Add.
        let after = self.skip_pass_through(out)?;
        if let &[add] = self.consumers(after)
            && self.op(add)? == "Add"
        {
            let (c, _) = self.constant_operand(add, after)?;
            let c = c.per_feature(out_dim).ok_or_else(|| {
                self.error(
                    add,
                    format!(
                        "bias of shape {:?} is not one value per output ({out_dim})",
                        c.dims
                    ),
                )
            })?;
            bias.iter_mut().zip(c).for_each(|(b, c)| *b += c);
            out = self.output(add)?;
        }
        let layer = Dense {
            in_dim,
            out_dim,
            weights,
            bias: bias.iter().map(|&b| b as f32).collect(),
        };
        if layer
            .weights
            .iter()
            .chain(&layer.bias)
            .any(|v| !v.is_finite())
        {
            return Err(self.error(i, "a weight or bias is not finite (in f32)"));
        }
        Ok((layer, out))
    }

    /// Checks every node downstream of the output layer's `logits` (`classes` wide) keeps
    /// their argmax. Returns the position of the positive class of a one-output model (1
    /// unless the graph concatenates `[p, 1 - p]`).
    fn check_head(&self, logits: &str, classes: usize) -> Result<usize, ImportError> {
        let mut positive = 1;
        let mut seen = HashSet::new();
        let mut queue: VecDeque<&str> = VecDeque::from([logits]);
        while let Some(tensor) = queue.pop_front() {
            for &i in self.consumers(tensor) {
                if !seen.insert(i) {
                    continue;
                }
                let op = self.op(i)?;
                if matches!(op, "MatMul" | "Gemm") {
                    return Err(self.between_layers(logits, i));
                }
                if !HEAD_OPS.contains(&op) {
                    return Err(match self.reaches_dense(i) {
                        true => self.between_layers(logits, i),
                        false => self.error(
                            i,
                            "after the output layer: npk takes the class as the argmax of the \
                             last dense layer, and knows only Softmax, Sigmoid, ArgMax and the \
                             label ops of scikit-learn's classifiers after it",
                        ),
                    });
                }
                match op {
                    "Softmax" | "LogSoftmax" | "ArgMax" => {
                        let axis = self.int_attr(i, "axis")?;
                        // ArgMax's default axis is 0; Softmax's is the last (or 1) either way.
                        let axis = axis.unwrap_or(if op == "ArgMax" { 0 } else { 1 });
                        if axis != 1 && axis != -1 {
                            return Err(self.error(
                                i,
                                format!("axis {axis}: npk picks the class along axis 1"),
                            ));
                        }
                    }
                    "Sub" => {
                        let (c, _) = self.constant_operand(i, tensor)?;
                        if c.values.len() != 1 {
                            return Err(self.error(
                                i,
                                "subtracts a non-scalar after the output layer: it may change \
                                 the class",
                            ));
                        }
                    }
                    "Concat" => positive = self.binary_concat(i, classes)?,
                    _ => {}
                }
                queue.extend(self.nodes[i].output.iter().map(String::as_str));
            }
        }
        Ok(positive)
    }

    /// The two-class `Concat([1 - p, p])` (scikit-learn's binary classifier): where `p`, the
    /// positive class, is.
    fn binary_concat(&self, i: usize, classes: usize) -> Result<usize, ImportError> {
        let inputs = &self.nodes[i].input;
        let from_sub = |name: &String| {
            self.producers
                .get(name.as_str())
                .is_some_and(|&p| self.nodes[p].op_type() == "Sub")
        };
        match &inputs[..] {
            [a, b] if classes == 1 && from_sub(a) != from_sub(b) => Ok(usize::from(from_sub(a))),
            _ => Err(self.error(
                i,
                "concatenates outputs: npk knows only the two-class [1 - p, p] after a \
                 one-output layer",
            )),
        }
    }

    /// Whether a dense node is downstream of node `i`.
    fn reaches_dense(&self, i: usize) -> bool {
        let mut seen = HashSet::from([i]);
        let mut stack = vec![i];
        while let Some(n) = stack.pop() {
            if matches!(self.nodes[n].op_type(), "MatMul" | "Gemm") {
                return true;
            }
            for out in &self.nodes[n].output {
                stack.extend(self.consumers(out).iter().filter(|&&c| seen.insert(c)));
            }
        }
        false
    }

    /// The error for an activation other than ReLU between dense layers: names the node right
    /// after the layer whose output is `tensor`.
    fn between_layers(&self, tensor: &str, fallback: usize) -> ImportError {
        let i = self.consumers(tensor).first().copied().unwrap_or(fallback);
        match self.nodes[i].op_type() {
            "MatMul" | "Gemm" => self.error(
                i,
                "follows a dense layer with no activation: npk's hidden layers end in ReLU",
            ),
            op => self.error(
                i,
                format!("{op} between dense layers: the kernel's only activation is ReLU"),
            ),
        }
    }
}

fn last_out(layers: &[Dense]) -> usize {
    layers.last().map_or(0, |l| l.out_dim)
}

/// A one-output layer whose positive score `z` means class `positive` as two outputs: `0` for
/// the other class, `z` for `positive`, whose argmax is the same class (ties: class 0, as
/// ArgMax over `[1 - p, p]` with `p = 0.5`).
fn widen_binary(layer: &mut Dense, positive: usize) {
    let zeros = vec![0.0; layer.in_dim];
    let (w, b) = (std::mem::take(&mut layer.weights), layer.bias[0]);
    (layer.weights, layer.bias) = if positive == 1 {
        ([zeros, w].concat(), vec![0.0, b])
    } else {
        ([w, zeros].concat(), vec![b, 0.0])
    };
    layer.out_dim = 2;
}

/// A tensor's values as f64: float, double and integer types, inline or raw little-endian.
fn decode(t: &TensorProto) -> Result<Tensor, ImportError> {
    let bad = |reason: String| ImportError::Tensor {
        name: t.name().to_string(),
        reason,
    };
    if t.data_location == Some(DataLocation::External as i32) {
        return Err(bad(
            "stored in an external file: npk reads self-contained models".into(),
        ));
    }
    let mut count: usize = 1;
    let mut dims = Vec::with_capacity(t.dims.len().min(8));
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}")))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| bad(format!("shape {:?} is too large", t.dims)))?;
        dims.push(d);
    }
    let raw = t.raw_data.as_deref();
    let partial = || {
        bad(format!(
            "raw data of {} bytes: not whole values",
            raw.map_or(0, <[u8]>::len)
        ))
    };
    let values: Vec<f64> = match DataType::try_from(t.data_type()) {
        Ok(DataType::Float) => match raw {
            Some(r) => {
                le_values::<4>(r, |b| f64::from(f32::from_le_bytes(b))).ok_or_else(partial)?
            }
            None => t.float_data.iter().map(|&v| f64::from(v)).collect(),
        },
        Ok(DataType::Double) => match raw {
            Some(r) => le_values::<8>(r, f64::from_le_bytes).ok_or_else(partial)?,
            None => t.double_data.clone(),
        },
        Ok(DataType::Int64) => match raw {
            Some(r) => le_values::<8>(r, |b| i64::from_le_bytes(b) as f64).ok_or_else(partial)?,
            None => t.int64_data.iter().map(|&v| v as f64).collect(),
        },
        Ok(DataType::Int32) => match raw {
            Some(r) => {
                le_values::<4>(r, |b| f64::from(i32::from_le_bytes(b))).ok_or_else(partial)?
            }
            None => t.int32_data.iter().map(|&v| f64::from(v)).collect(),
        },
        _ => {
            return Err(bad(format!(
                "element type {}: npk reads float, double and integer tensors",
                data_type_name(t.data_type())
            )));
        }
    };
    if values.len() != count {
        return Err(bad(format!(
            "holds {} values for shape {:?}",
            values.len(),
            t.dims
        )));
    }
    if count == 0 {
        return Err(bad("is empty".into()));
    }
    Ok(Tensor { dims, values })
}

/// The little-endian `N`-byte values of `raw`; `None` when it ends in a partial one.
fn le_values<const N: usize>(raw: &[u8], value: impl Fn([u8; N]) -> f64) -> Option<Vec<f64>> {
    let chunks = raw.chunks_exact(N);
    chunks.remainder().is_empty().then(|| {
        chunks
            .map(|c| value(c.try_into().expect("chunks of N")))
            .collect()
    })
}

/// An ONNX element type's name, for messages.
fn data_type_name(code: i32) -> String {
    DataType::try_from(code).map_or_else(|_| format!("#{code}"), |t| t.as_str_name().to_string())
}
