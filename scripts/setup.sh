#!/usr/bin/env bash
# Installs everything npk needs to build, test and run its demo on Debian 12 or 13 (x86_64 or
# aarch64, root), from a system with only apt: a C toolchain, curl, rustup (from
# static.rust-lang.org, checked against its published SHA-256), the toolchains, bpf-linker,
# Debian packages. Idempotent: a second run only checks and returns in a few seconds. Ends
# with what it installed and what was there already (scripts/fresh-debian.sh runs it on a
# debootstrapped Debian).
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
installed=() present=()
# STEP WHAT-IT-IS: record that STEP was installed now, or was there already.
did() { installed+=("$1"); }
had() { present+=("$1"); }
policy=/usr/sbin/policy-rc.d
own_policy=0
on_exit() {
    if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
    say "installed now: ${installed[*]:-nothing}"
    say "already there (skipped): ${present[*]:-nothing}"
}
trap on_exit EXIT
# install_or_had WHAT PACKAGE...: installs the packages, or records WHAT as there already.
install_or_had() {
    local what=$1
    shift
    if [ $# -gt 0 ]; then
        say "installing $*"
        apt_install "$@"
        did "$*"
    else
        had "$what"
    fi
}
apt_install() { # PACKAGE...
    command -v apt-get >/dev/null || die "please install: $*"
    apt-get -o DPkg::Lock::Timeout=300 update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
            --no-install-recommends "$@" >/dev/null
}

# What rustc and rustup need before anything else: a linker (cc), curl and certificates.
base=()
command -v cc >/dev/null || base+=(gcc libc6-dev)
command -v curl >/dev/null || base+=(curl)
[ -r /etc/ssl/certs/ca-certificates.crt ] || base+=(ca-certificates)
install_or_had "cc curl ca-certificates" "${base[@]}"

# rustup into ~/.cargo, without a toolchain (the pinned ones follow) and without touching the
# shell's profile: demo.sh and test.sh put ~/.cargo/bin on their PATH.
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v rustup >/dev/null; then
    arch=$(uname -m)
    case "$arch" in x86_64 | aarch64) ;; *) die "no rustup-init for $arch here: see https://rustup.rs" ;; esac
    url="https://static.rust-lang.org/rustup/dist/$arch-unknown-linux-gnu/rustup-init"
    say "installing rustup into $HOME/.cargo ($url)"
    tmp=$(mktemp -d)
    curl --proto '=https' --tlsv1.2 -sSf -o "$tmp/rustup-init" "$url" ||
        die "downloading $url failed"
    want=$(curl --proto '=https' --tlsv1.2 -sSf "$url.sha256" | cut -d' ' -f1)
    echo "$want  $tmp/rustup-init" | sha256sum -c --quiet - ||
        die "$url does not match its published SHA-256 ($want)"
    chmod +x "$tmp/rustup-init"
    "$tmp/rustup-init" -y --quiet --no-modify-path --profile minimal --default-toolchain none
    rm -rf "$tmp"
    did rustup
else
    had rustup
fi

if ! rustup run "$STABLE" rustc -V >/dev/null 2>&1; then
    say "installing Rust $STABLE"
    rustup toolchain install "$STABLE" --profile minimal -c rustfmt -c clippy
    did "rust-$STABLE"
else
    had "rust-$STABLE"
fi
rustup component list --toolchain "$STABLE" --installed | grep -q '^clippy' ||
    rustup component add --toolchain "$STABLE" clippy rustfmt

if ! rustup run "$NIGHTLY" rustc -V >/dev/null 2>&1 ||
    ! rustup component list --toolchain "$NIGHTLY" --installed | grep -q '^rust-src'; then
    say "installing $NIGHTLY with rust-src"
    rustup toolchain install "$NIGHTLY" --profile minimal -c rust-src
    did "$NIGHTLY"
else
    had "$NIGHTLY"
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
    did "bpf-linker"
else
    had "bpf-linker"
fi

# Tools the integration tests, benchmarks and demo call.
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v strace >/dev/null || missing+=(strace)
command -v python3 >/dev/null || missing+=(python3)
# The VM matrix (scripts/vm/run.sh): it downloads kernels and qemu itself (apt-get download,
# dpkg-deb -x) and needs these to unpack them and build the initramfs.
command -v jq >/dev/null || missing+=(jq)
command -v xz >/dev/null || missing+=(xz-utils)
command -v zstd >/dev/null || missing+=(zstd)
command -v gzip >/dev/null || missing+=(gzip)
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
install_or_had "iproute2 strace python3 jq xz zstd gzip keyring" "${missing[@]}"
# The traffic lab (`npk gen --lab tools`, the held-out evaluation) drives real tools, each from
# Debian's package of the same name; the operations tests check with promtool and
# systemd-analyze. nginx's package starts a system service on install: a policy-rc.d that
# answers 101 forbids that for the install (one already there stays untouched). Debian 13
# has no nginx-light (one nginx package).
nginx_package=nginx-light
version_id=$(. /etc/os-release 2>/dev/null && echo "${VERSION_ID:-12}")
[ "${version_id%%.*}" -ge 13 ] 2>/dev/null && nginx_package=nginx
tools=(hping3:hping3 nmap:nmap tcpdump:tcpdump "nginx:$nginx_package" dnsmasq:dnsmasq-base
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
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
    fi
    apt_install "${lab_missing[@]}"
    if [ "$own_policy" = 1 ]; then rm -f "$policy"; own_policy=0; fi
    did "${lab_missing[*]}"
else
    had "lab-tools"
fi

# Fashion-MNIST (IDX files, gzip) for `npk bench train`'s MNIST experiment (docs/benchmarks.md, "Training
# speed vs NumPy").
if [ ! -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    say "installing dataset-fashion-mnist (Fashion-MNIST under /usr/share/datasets/fashion-mnist)"
    apt_install dataset-fashion-mnist
    did dataset-fashion-mnist
else
    had dataset-fashion-mnist
fi

# NumPy: only the NumPy baseline of the training benchmarks needs it; Debian's package.
if ! python3 -c 'import numpy' 2>/dev/null; then
    say "installing NumPy (python3-numpy)"
    apt_install python3-numpy
    did python3-numpy
else
    had numpy
fi

# The ONNX round trip (scripts/onnx_roundtrip.sh) makes a venv: Debian's python3 needs
# python3-venv for it.
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    say "installing python3-venv"
    apt_install python3-venv
    did python3-venv
else
    had python3-venv
fi

mountpoint -q /sys/fs/bpf 2>/dev/null || mount -t bpf bpf /sys/fs/bpf 2>/dev/null ||
    say "warning: could not mount bpffs at /sys/fs/bpf (needed only for --pin)"

say "ready: $(rustup run "$STABLE" rustc -V), $NIGHTLY (LLVM $llvm_major), bpf-linker $BPF_LINKER_VERSION"
