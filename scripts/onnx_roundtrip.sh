#!/usr/bin/env bash
# Trains scikit-learn MLPs on its bundled datasets, exports them to ONNX (skl2onnx, and
# PyTorch-style graphs), imports them with `npk import`, and compares npk's float and int8
# accuracy with onnxruntime's on held-out rows; then `npk export` back to ONNX
# (scripts/onnx_roundtrip.py says what it checks). Python packages go into a venv under target/.
#   bash scripts/onnx_roundtrip.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/onnx-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check \
    numpy==2.4.6 scikit-learn==1.9.1 skl2onnx==1.20.0 onnx==1.23.2 onnxruntime==1.32.0
cargo build --release -p npk-user -q
"$venv/bin/python" scripts/onnx_roundtrip.py target/release/npk target/onnx-roundtrip
