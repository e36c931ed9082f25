#!/usr/bin/env bash
# The main job: set up (toolchains, bpf-linker, the lab's tools), build, and run `npk demo`:
# real tools (nginx, dnsmasq, iperf3, curl, dig, ping, hping3, nmap) between two namespaces,
# runs of settings family A recorded through the kernel, training, quantization, the model
# attached at the server's ingress while a family-B run (settings never seen in training)
# sends, with a live table and held-out scores per class and per scenario.
# `--lab synthetic` runs npk's own generator instead; `--help` lists the options.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/as-root.sh
bash scripts/setup.sh
# Where setup installs rustup when the machine had none.
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release
exec target/release/npk demo "$@"
