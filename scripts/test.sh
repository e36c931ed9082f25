#!/usr/bin/env bash
# The test command: everything CI checks. Runs the setup first (quick when all is there).
# Kernel tests need root: they load programs, create veth pairs and network namespaces.
# Then the kernel matrix: the kernel checks inside Debian's kernels 5.10 to 7.x in qemu
# (scripts/vm/run.sh; downloads cached in target/vm-cache; about 5 minutes on 2 shared CPUs, see
# docs/kernels.md). NPK_VM=0 leaves the matrix out (CI always runs it: .ci/run).
# Prints how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/as-root.sh
steps=()
step() { # NAME COMMAND...
    local name=$1 start=$SECONDS rc=0
    shift
    "$@" || rc=$?
    local note=
    [ "$rc" = 0 ] || note="FAILED (exit $rc)"
    steps+=("$(printf '%-14s %5d s %s' "$name" $((SECONDS - start)) "$note")")
    [ "$rc" = 0 ] || exit "$rc"
}
report() {
    [ ${#steps[@]} -gt 0 ] || return 0
    printf '\033[1mtest:\033[0m times\n' >&2
    printf '  %s\n' "${steps[@]}" >&2
}
trap report EXIT
step setup bash scripts/setup.sh
# Where setup installs rustup when the machine had none.
export PATH="$HOME/.cargo/bin:$PATH"
step fmt cargo fmt --all -- --check
step clippy cargo clippy --all-targets --release -- -D warnings
step test cargo test --release
# The .deb: built, installed into a scratch dpkg root, its npk run (scripts/package-deb.sh).
step package bash scripts/package-deb.sh --check
# npk import/export against scikit-learn, skl2onnx and onnxruntime (a venv from PyPI under
# target/); NPK_ONNX=0 leaves it out.
if [ "${NPK_ONNX:-1}" != 0 ]; then
    step onnx bash scripts/onnx_roundtrip.sh
fi
if [ "${NPK_VM:-1}" != 0 ]; then
    step kernel-matrix bash scripts/vm/run.sh
fi
