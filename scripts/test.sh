#!/usr/bin/env bash
# The test command: everything CI checks. Runs the setup first (quick when all is there).
# Kernel tests need root: they load programs, create veth pairs and network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ "$(id -u)" = 0 ] || { echo "test: the kernel tests need root (sudo bash scripts/test.sh)" >&2; exit 1; }
cargo fmt --all -- --check
cargo clippy --all-targets --release -- -D warnings
cargo test --release
