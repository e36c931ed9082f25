#!/usr/bin/env bash
# The test command: everything CI checks. Runs the setup first (quick when all is there).
# Kernel tests need root: they load programs, create veth pairs and network namespaces.
# NPK_VM=1 adds the kernel matrix: the same checks inside Debian's kernels 5.10 to 7.x in qemu
# (scripts/vm/run.sh; downloads cached in target/vm-cache). Not yet on by default: the harness
# has not been proven on every kernel (see README, "Kernels").
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
