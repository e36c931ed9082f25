"""Trains MLPs elsewhere, imports them into npk and compares: for each of scikit-learn's bundled
datasets, a Pipeline(StandardScaler, MLPClassifier(relu)) is exported by skl2onnx, and the same
weights as PyTorch's exporter writes nn.Sequential(Linear, ReLU, ..., Linear) (Sub/Div
standardisation, then Gemm with transB=1, or MatMul + Add) with onnx.helper. Each graph is run by
onnxruntime, imported with `npk import` (calibrated on the training rows) and scored with
`npk eval` on the held-out rows; `npk export` writes the int8 model back as ONNX, which
onnxruntime runs again. Fails (exit 1) when npk's float accuracy is off onnxruntime's by more than
0.005, its int8 accuracy by more than 0.02, or the exported graph's predictions agree with npk's
int8 ones on fewer than 98% of the rows (compared through npk eval's confusion matrix; 98% is
npk train's agreement warning level).

Usage: python scripts/onnx_roundtrip.py NPK_BINARY WORK_DIR   (scripts/onnx_roundtrip.sh runs it)
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

DATASETS = {
    "iris": (load_iris, (16, 16)),
    "wine": (load_wine, (32,)),
    "breast_cancer": (load_breast_cancer, (32, 16)),
    "digits": (load_digits, (64, 32)),
}
FLOAT_TOLERANCE = 0.005
INT8_TOLERANCE = 0.02
MIN_EXPORT_AGREEMENT = 0.98


def write_csv(path, x, y):
    header = ",".join(f"f{j}" for j in range(x.shape[1])) + ",label"
    rows = np.column_stack([x, y]).astype(object)
    rows[:, -1] = y.astype(int)
    np.savetxt(path, rows, delimiter=",", header=header, comments="", fmt="%s")


def torch_style(pipe, gemm):
    """The pipeline's weights as torch.onnx.export writes an nn.Sequential after a (x - mean) /
    std step: Sub, Div, then Gemm(transB=1) or MatMul + Add per Linear, Relu between."""
    scaler, mlp = pipe.named_steps["scale"], pipe.named_steps["mlp"]
    n_in = mlp.coefs_[0].shape[0]
    init = [
        numpy_helper.from_array(scaler.mean_.astype(np.float32), "mean"),
        numpy_helper.from_array(scaler.scale_.astype(np.float32), "std"),
    ]
    nodes = [
        helper.make_node("Sub", ["input", "mean"], ["/Sub_output_0"], name="/Sub"),
        helper.make_node("Div", ["/Sub_output_0", "std"], ["/Div_output_0"], name="/Div"),
    ]
    x = "/Div_output_0"
    last = len(mlp.coefs_) - 1
    for l, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        idx = 2 * l
        out = "logits" if l == last else f"/net.{idx}/Gemm_output_0"
        wn, bn = f"net.{idx}.weight", f"net.{idx}.bias"
        init.append(numpy_helper.from_array(b.astype(np.float32), bn))
        if gemm:
            init.append(numpy_helper.from_array(w.T.astype(np.float32), wn))
            nodes.append(helper.make_node("Gemm", [x, wn, bn], [out], name=f"/net.{idx}/Gemm",
                                          alpha=1.0, beta=1.0, transB=1))
        else:
            init.append(numpy_helper.from_array(w.astype(np.float32), wn))
            mm = f"/net.{idx}/MatMul_output_0"
            nodes.append(helper.make_node("MatMul", [x, wn], [mm], name=f"/net.{idx}/MatMul"))
            nodes.append(helper.make_node("Add", [mm, bn], [out], name=f"/net.{idx}/Add"))
        if l < last:
            relu = f"/net.{idx + 1}/Relu_output_0"
            nodes.append(helper.make_node("Relu", [out], [relu], name=f"/net.{idx + 1}/Relu"))
            x = relu
    n_out = mlp.coefs_[-1].shape[1]
    graph = helper.make_graph(
        nodes, "main_graph",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch_size", n_in])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", n_out])],
        init)
    model = helper.make_model(graph, producer_name="pytorch", producer_version="2.5.0",
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def ort_labels(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = sess.run(None, {sess.get_inputs()[0].name: x})
    names = [o.name for o in sess.get_outputs()]
    for label in ("label", "output_label"):  # skl2onnx (zipmap or not) and npk export
        if label in names:
            return np.asarray(outputs[names.index(label)]).reshape(-1).astype(int)
    logits = outputs[0]  # PyTorch style: one logit per class, or one for two classes
    return (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(1)


def npk(binary, *args):
    out = subprocess.run([binary, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(binary, work):
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    failures, graphs_failed, graphs_run = [], set(), 0
    print(f"{'dataset':<14} {'graph':<16} {'test':>5} {'ort':>7} {'float':>7} {'int8':>7} "
          f"{'export':>7} {'agree':>7}")
    for name, (load, hidden) in DATASETS.items():
        x, y = load(return_X_y=True)
        x = x.astype(np.float32)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
        pipe = Pipeline([("scale", StandardScaler()),
                         ("mlp", MLPClassifier(hidden, activation="relu", max_iter=1000,
                                               random_state=0))]).fit(x_tr, y_tr)
        train_csv, test_csv = work / f"{name}_train.csv", work / f"{name}_test.csv"
        write_csv(train_csv, x_tr, y_tr)
        write_csv(test_csv, x_te, y_te)
        graphs = {
            "skl2onnx": to_onnx(pipe, x_tr[:1], options={id(pipe): {"zipmap": False}}),
            "skl2onnx-zipmap": to_onnx(pipe, x_tr[:1]),
            "torch-gemm": torch_style(pipe, gemm=True),
            "torch-matmul": torch_style(pipe, gemm=False),
        }
        for kind, model in graphs.items():
            path = work / f"{name}_{kind}.onnx"
            onnx.save(model, path)
            ort_acc = float((ort_labels(path, x_te) == y_te).mean())
            npk_file = work / f"{name}_{kind}.npk"
            npk(binary, "import", str(path), "--calibrate", str(train_csv), "--out", str(npk_file),
                "--json")
            ev = npk(binary, "eval", "--model", str(npk_file), "--data", str(test_csv), "--json")
            exported = work / f"{name}_{kind}_export.onnx"
            subprocess.run([binary, "export", str(npk_file), "--onnx", str(exported)], check=True,
                           capture_output=True)
            back = ort_labels(exported, x_te)
            # The exported graph against npk's int8 predictions, through eval's confusion matrix.
            confusion = np.zeros_like(np.array(ev["quantized"]["confusion"]))
            np.add.at(confusion, (y_te, back), 1)
            same = np.minimum(confusion, ev["quantized"]["confusion"]).sum() / len(y_te)
            export_acc = float((back == y_te).mean())
            f_acc, q_acc = ev["float_accuracy"], ev["quantized_accuracy"]
            graphs_run += 1
            print(f"{name:<14} {kind:<16} {len(y_te):>5} {ort_acc:>7.4f} {f_acc:>7.4f} "
                  f"{q_acc:>7.4f} {export_acc:>7.4f} {same:>7.4f}")
            if abs(f_acc - ort_acc) > FLOAT_TOLERANCE:
                failures.append(f"{name} {kind}: float {f_acc:.4f} vs onnxruntime {ort_acc:.4f}")
            if abs(q_acc - ort_acc) > INT8_TOLERANCE:
                failures.append(f"{name} {kind}: int8 {q_acc:.4f} vs onnxruntime {ort_acc:.4f}")
            if same < MIN_EXPORT_AGREEMENT:
                failures.append(f"{name} {kind}: exported graph matches npk int8 on {same:.4f}")
    for f in failures:
        print(f"onnx_roundtrip: FAILED {f}", file=sys.stderr)
        graphs_failed.add(f.split(":")[0])
    print(f"{graphs_run - len(graphs_failed)} passed, {len(graphs_failed)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
