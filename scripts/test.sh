#!/usr/bin/env bash
# The test command: everything CI checks. Runs the setup first (quick when all is there).
# Kernel tests need root: they load programs, create veth pairs and network namespaces.
# NPK_VM=1 adds the kernel matrix: the same checks inside Debian's kernels 5.10 to 7.x in qemu
# (scripts/vm/run.sh; downloads cached in target/vm-cache). Not on by default: at one verifier
# walk per program load (1-3 minutes each in TCG) it takes longer than CI leaves (README,
# "Kernels"), and 5.10 does not load the classifier yet.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ "$(id -u)" = 0 ] || { echo "test: the kernel tests need root (sudo bash scripts/test.sh)" >&2; exit 1; }
cargo fmt --all -- --check
cargo clippy --all-targets --release -- -D warnings
cargo test --release
if [ "${NPK_VM:-0}" = 1 ]; then
    bash scripts/vm/run.sh
fi
