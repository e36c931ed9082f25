#!/usr/bin/env bash
# Installs everything npk needs to build, test and run its demo on Debian 12 (x86_64, root).
# Idempotent: a second run only checks and returns in a few seconds.
#
# Other distributions need the same pieces: rustup with the stable toolchain named in
# rust-toolchain.toml, the pinned nightly below with rust-src (it builds the eBPF object),
# bpf-linker linked against that nightly's own LLVM, iproute2, strace, and python3 with NumPy
# (for the baseline benchmark only), and Debian's dataset-fashion-mnist (the MNIST benchmark).
set -euo pipefail

# The nightly that compiles the eBPF crate. Pinned: a newer nightly brings a newer LLVM and
# breaks a bpf-linker built against the old one.
NIGHTLY=nightly-2026-05-20
BPF_LINKER_VERSION=0.13.0
STABLE=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

command -v rustup >/dev/null || die "rustup not found: install it from https://rustup.rs first"

if ! rustup run "$STABLE" rustc -V >/dev/null 2>&1; then
    say "installing Rust $STABLE"
    rustup toolchain install "$STABLE" --profile minimal -c rustfmt -c clippy
fi
rustup component list --toolchain "$STABLE" --installed | grep -q '^clippy' ||
    rustup component add --toolchain "$STABLE" clippy rustfmt

if ! rustup run "$NIGHTLY" rustc -V >/dev/null 2>&1 ||
    ! rustup component list --toolchain "$NIGHTLY" --installed | grep -q '^rust-src'; then
    say "installing $NIGHTLY with rust-src"
    rustup toolchain install "$NIGHTLY" --profile minimal -c rust-src
fi

# bpf-linker must use the nightly's libLLVM: Debian's LLVM 14 is too old. We give cargo a
# prefix of symlinks to the nightly's library instead of a system llvm-config.
llvm_major=$(rustup run "$NIGHTLY" rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
prefix="$HOME/.local/share/npk/llvm-$NIGHTLY"
stamp="$prefix/bpf-linker-$BPF_LINKER_VERSION"
if [ ! -f "$stamp" ] || ! command -v bpf-linker >/dev/null; then
    say "building bpf-linker $BPF_LINKER_VERSION against LLVM $llvm_major of $NIGHTLY (about a minute)"
    sysroot_lib="$(rustup run "$NIGHTLY" rustc --print sysroot)/lib"
    so=$(basename "$(ls "$sysroot_lib"/libLLVM.so.* | head -n1)")
    mkdir -p "$prefix/lib"
    ln -sf "$sysroot_lib/$so" "$prefix/lib/libLLVM.so"
    ln -sf "$sysroot_lib/$so" "$prefix/lib/$so"
    LLVM_PREFIX="$prefix" rustup run "$STABLE" cargo install "bpf-linker@$BPF_LINKER_VERSION" \
        --locked --force --no-default-features --features "llvm-$llvm_major"
    touch "$stamp"
fi

# Tools the integration tests, benchmarks and demo call.
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v strace >/dev/null || missing+=(strace)
command -v python3 >/dev/null || missing+=(python3 python3-pip)
# The VM matrix (scripts/vm/run.sh): it downloads kernels and qemu itself (apt-get download,
# dpkg-deb -x) and needs these to unpack them and build the initramfs.
command -v jq >/dev/null || missing+=(jq)
command -v xz >/dev/null || missing+=(xz-utils)
command -v zstd >/dev/null || missing+=(zstd)
command -v gzip >/dev/null || missing+=(gzip)
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "please install: ${missing[*]}"
    say "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The traffic lab (`npk gen --lab tools`, the held-out evaluation) drives real tools, each from
# Debian's package of the same name; the operations tests check with promtool and systemd-analyze. nginx's package starts a system service on install: a
# policy-rc.d that answers 101 forbids that for the install (one already there stays untouched).
tools=(hping3:hping3 nmap:nmap tcpdump:tcpdump nginx:nginx-light dnsmasq:dnsmasq-base
    dig:bind9-dnsutils iperf3:iperf3 ping:iputils-ping slowhttptest:slowhttptest wrk:wrk
    ethtool:ethtool curl:curl timeout:coreutils
    # The operations tests: `promtool check metrics` on the exporter's scrape and
    # `systemd-analyze verify` on deploy/npk@.service.
    promtool:prometheus systemd-analyze:systemd)
lab_missing=()
for pair in "${tools[@]}"; do
    command -v "${pair%%:*}" >/dev/null || lab_missing+=("${pair#*:}")
done
if [ ${#lab_missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "please install: ${lab_missing[*]}"
    say "installing the traffic lab's tools: ${lab_missing[*]}"
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
        trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT
    fi
    apt-get -o DPkg::Lock::Timeout=300 update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
            "${lab_missing[@]}" >/dev/null
    if [ "$own_policy" = 1 ]; then rm -f "$policy"; own_policy=0; fi
fi

# Fashion-MNIST (IDX files, gzip) for `npk bench train`'s MNIST experiment (README, "Training
# speed vs NumPy").
if [ ! -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    command -v apt-get >/dev/null || die "please install Debian's dataset-fashion-mnist"
    say "installing dataset-fashion-mnist (Fashion-MNIST under /usr/share/datasets/fashion-mnist)"
    apt-get -o DPkg::Lock::Timeout=300 update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
            dataset-fashion-mnist >/dev/null
fi

if ! python3 -c 'import numpy' 2>/dev/null; then
    say "installing NumPy (only the NumPy baseline of the training benchmarks needs it)"
    python3 -m pip install --quiet numpy 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages numpy 2>/dev/null ||
        say "warning: could not install NumPy; npk bench train will show no NumPy column"
fi

# The ONNX round trip (scripts/onnx_roundtrip.sh) makes a venv: Debian's python3 needs
# python3-venv for it.
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    command -v apt-get >/dev/null || die "please install python3-venv"
    say "installing python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq python3-venv >/dev/null
fi

mountpoint -q /sys/fs/bpf 2>/dev/null || mount -t bpf bpf /sys/fs/bpf 2>/dev/null ||
    say "warning: could not mount bpffs at /sys/fs/bpf (needed only for --pin)"

say "ready: $(rustup run "$STABLE" rustc -V), $NIGHTLY (LLVM $llvm_major), bpf-linker $BPF_LINKER_VERSION"
