#!/usr/bin/env bash
# The main job: set up, build, and run `npk demo` (namespace + veth, labelled traffic captured
# through the kernel, training, quantization, attach, live classification of fresh traffic).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
exec target/release/npk demo "$@"
