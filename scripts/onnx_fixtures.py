"""Writes the ONNX fixtures of npk's tests (npk-user/tests/fixtures/onnx/): one small graph per
supported shape, as its tool writes it, and expected.json with rows and what onnxruntime
predicts for them, so that the Rust tests check npk against values computed independently
without needing Python.

Graphs: scikit-learn Pipeline(StandardScaler, MLPClassifier(relu)) through skl2onnx (three
classes, with and without ZipMap; two classes, whose single output skl2onnx turns into
[1 - p, p]); PyTorch's nn.Sequential as torch.onnx.export writes it (Sub/Div standardisation,
Gemm transB=1; and MatMul + Add with Mul by 1/std as Constant nodes); a Keras dense stack as
tf2onnx writes it (no standardisation, MatMul + Add, Identity, Softmax).

Usage: bash scripts/onnx_roundtrip.sh sets up the venv; then
    target/onnx-venv/bin/python scripts/onnx_fixtures.py
"""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

OUT = Path(__file__).resolve().parent.parent / "npk-user/tests/fixtures/onnx"
ROWS = 40


def sklearn_pipeline(x, y, hidden):
    return Pipeline([("scale", StandardScaler()),
                     ("mlp", MLPClassifier(hidden, activation="relu", max_iter=2000,
                                           random_state=0))]).fit(x, y)


def model(nodes, inputs, outputs, init, producer, opset=17):
    m = helper.make_model(helper.make_graph(nodes, "main_graph", inputs, outputs, init),
                          producer_name=producer[0], producer_version=producer[1],
                          opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def torch_gemm(pipe):
    scaler, mlp = pipe.named_steps["scale"], pipe.named_steps["mlp"]
    (w0, w1), (b0, b1) = mlp.coefs_, mlp.intercepts_
    f32 = lambda a, n: numpy_helper.from_array(np.asarray(a, np.float32), n)
    init = [f32(scaler.mean_, "mean"), f32(scaler.scale_, "std"), f32(w0.T, "net.0.weight"),
            f32(b0, "net.0.bias"), f32(w1.T, "net.2.weight"), f32(b1, "net.2.bias")]
    nodes = [
        helper.make_node("Sub", ["input", "mean"], ["/Sub_output_0"], name="/Sub"),
        helper.make_node("Div", ["/Sub_output_0", "std"], ["/Div_output_0"], name="/Div"),
        helper.make_node("Gemm", ["/Div_output_0", "net.0.weight", "net.0.bias"],
                         ["/net.0/Gemm_output_0"], name="/net.0/Gemm", alpha=1.0, beta=1.0,
                         transB=1),
        helper.make_node("Relu", ["/net.0/Gemm_output_0"], ["/net.1/Relu_output_0"],
                         name="/net.1/Relu"),
        helper.make_node("Gemm", ["/net.1/Relu_output_0", "net.2.weight", "net.2.bias"],
                         ["logits"], name="/net.2/Gemm", alpha=1.0, beta=1.0, transB=1),
    ]
    n_in, n_out = w0.shape[0], w1.shape[1]
    return model(nodes,
                 [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
                 [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_out])],
                 init, ("pytorch", "2.5.0"))


def torch_matmul(pipe):
    """MatMul + Add layers; the standardisation as Sub and Mul by 1/std from Constant nodes."""
    scaler, mlp = pipe.named_steps["scale"], pipe.named_steps["mlp"]
    (w0, w1), (b0, b1) = mlp.coefs_, mlp.intercepts_
    f32 = lambda a, n: numpy_helper.from_array(np.asarray(a, np.float32), n)
    const = lambda a, n: helper.make_node("Constant", [], [n], name=n, value=f32(a, n))
    nodes = [
        const(scaler.mean_, "/Constant_output_0"),
        const(1.0 / scaler.scale_, "/Constant_1_output_0"),
        helper.make_node("Sub", ["input", "/Constant_output_0"], ["/Sub_output_0"], name="/Sub"),
        helper.make_node("Mul", ["/Sub_output_0", "/Constant_1_output_0"], ["/Mul_output_0"],
                         name="/Mul"),
        helper.make_node("MatMul", ["/Mul_output_0", "onnx::MatMul_20"],
                         ["/net.0/MatMul_output_0"], name="/net.0/MatMul"),
        helper.make_node("Add", ["net.0.bias", "/net.0/MatMul_output_0"],
                         ["/net.0/Add_output_0"], name="/net.0/Add"),
        helper.make_node("Relu", ["/net.0/Add_output_0"], ["/net.1/Relu_output_0"],
                         name="/net.1/Relu"),
        helper.make_node("MatMul", ["/net.1/Relu_output_0", "onnx::MatMul_21"],
                         ["/net.2/MatMul_output_0"], name="/net.2/MatMul"),
        helper.make_node("Add", ["/net.2/MatMul_output_0", "net.2.bias"], ["logits"],
                         name="/net.2/Add"),
    ]
    init = [f32(w0, "onnx::MatMul_20"), f32(b0, "net.0.bias"), f32(w1, "onnx::MatMul_21"),
            f32(b1, "net.2.bias")]
    n_in, n_out = w0.shape[0], w1.shape[1]
    return model(nodes,
                 [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
                 [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_out])],
                 init, ("pytorch", "2.5.0"))


def keras_tf2onnx(pipe):
    """Dense(relu), Dense(softmax) on raw features (the scaler folded into the first layer), as
    tf2onnx names and wires them."""
    scaler, mlp = pipe.named_steps["scale"], pipe.named_steps["mlp"]
    (w0, w1), (b0, b1) = mlp.coefs_, mlp.intercepts_
    w0 = w0 / scaler.scale_[:, None]
    b0 = b0 - (scaler.mean_ / scaler.scale_) @ mlp.coefs_[0]
    f32 = lambda a, n: numpy_helper.from_array(np.asarray(a, np.float32), n)
    init = [f32(w0, "sequential/dense/MatMul/ReadVariableOp:0"),
            f32(b0, "sequential/dense/BiasAdd/ReadVariableOp:0"),
            f32(w1, "sequential/dense_1/MatMul/ReadVariableOp:0"),
            f32(b1, "sequential/dense_1/BiasAdd/ReadVariableOp:0")]
    nodes = [
        helper.make_node("MatMul", ["dense_input", "sequential/dense/MatMul/ReadVariableOp:0"],
                         ["sequential/dense/MatMul:0"], name="sequential/dense/MatMul"),
        helper.make_node("Add", ["sequential/dense/MatMul:0",
                                 "sequential/dense/BiasAdd/ReadVariableOp:0"],
                         ["sequential/dense/BiasAdd:0"], name="sequential/dense/BiasAdd"),
        helper.make_node("Relu", ["sequential/dense/BiasAdd:0"], ["sequential/dense/Relu:0"],
                         name="sequential/dense/Relu"),
        helper.make_node("MatMul", ["sequential/dense/Relu:0",
                                    "sequential/dense_1/MatMul/ReadVariableOp:0"],
                         ["sequential/dense_1/MatMul:0"], name="sequential/dense_1/MatMul"),
        helper.make_node("Add", ["sequential/dense_1/MatMul:0",
                                 "sequential/dense_1/BiasAdd/ReadVariableOp:0"],
                         ["sequential/dense_1/BiasAdd:0"], name="sequential/dense_1/BiasAdd"),
        helper.make_node("Softmax", ["sequential/dense_1/BiasAdd:0"],
                         ["sequential/dense_1/Softmax:0"], name="sequential/dense_1/Softmax",
                         axis=-1),
        helper.make_node("Identity", ["sequential/dense_1/Softmax:0"], ["dense_1"],
                         name="Identity"),
    ]
    n_in, n_out = w0.shape[0], w1.shape[1]
    return model(nodes,
                 [helper.make_tensor_value_info("dense_input", TensorProto.FLOAT,
                                                ["unk__6", n_in])],
                 [helper.make_tensor_value_info("dense_1", TensorProto.FLOAT, ["unk__7", n_out])],
                 init, ("tf2onnx", "1.16.1 15c810"), opset=15)


def predicted(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = sess.run(None, {sess.get_inputs()[0].name: x})
    names = [o.name for o in sess.get_outputs()]
    for label in ("label", "output_label"):
        if label in names:
            return np.asarray(outputs[names.index(label)]).reshape(-1)
    return outputs[0].argmax(1)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    x3, y3 = load_iris(return_X_y=True)
    x2, y2 = load_breast_cancer(return_X_y=True)
    x2 = x2[:, :8]  # small: eight features are enough for a two-class model
    x3, x2 = x3.astype(np.float32), x2.astype(np.float32)
    iris = sklearn_pipeline(x3, y3, (8,))
    cancer = sklearn_pipeline(x2, y2, (6,))
    rng = np.random.default_rng(0)
    rows3 = x3[rng.choice(len(x3), ROWS, replace=False)]
    rows2 = x2[rng.choice(len(x2), ROWS, replace=False)]
    fixtures = {
        "sklearn_iris": (to_onnx(iris, x3[:1], options={id(iris): {"zipmap": False}}), rows3),
        "sklearn_iris_zipmap": (to_onnx(iris, x3[:1]), rows3),
        "sklearn_binary": (to_onnx(cancer, x2[:1], options={id(cancer): {"zipmap": False}}),
                           rows2),
        "torch_gemm": (torch_gemm(iris), rows3),
        "torch_matmul": (torch_matmul(iris), rows3),
        "keras_tf2onnx": (keras_tf2onnx(iris), rows3),
    }
    expected = {}
    for name, (m, rows) in fixtures.items():
        path = OUT / f"{name}.onnx"
        onnx.save(m, path)
        expected[name] = {"rows": rows.tolist(),
                          "labels": [int(v) for v in predicted(path, rows)]}
    (OUT / "expected.json").write_text(json.dumps(expected) + "\n")


if __name__ == "__main__":
    main()
