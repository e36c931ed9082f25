#!/usr/bin/env bash
# Regenerates npk-user/src/onnx/proto.rs (the ONNX message types, for prost) from
# npk-user/src/onnx/onnx-ml.proto. To update the schema: copy onnx-ml.proto from the `onnx`
# Python package (site-packages/onnx/onnx-ml.proto) over the one there, then run this script.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_TARGET_DIR=target/onnx-proto cargo run --release --locked --manifest-path scripts/onnx-proto/Cargo.toml
rustfmt --edition 2024 npk-user/src/onnx/proto.rs
