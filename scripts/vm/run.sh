#!/usr/bin/env bash
# Boots Debian's kernels in qemu (TCG) and runs npk's kernel checks inside each
# (scripts/vm/checks.sh): the kernel integration tests (each classifier loaded once: TEST_RUN
# bit for bit at several widths, XDP and TC; veth attach native/skb/TCX, drops, hot swap,
# pinned attach and detach; the verifier's instruction counts) and the inference server's and
# generator's tests. Correctness only: timings under TCG mean nothing.
#
#   sudo bash scripts/vm/run.sh [SUITE...]     default: newest bullseye trixie bookworm-backports bookworm
#
# SUITE is a Debian suite whose cloud kernel is taken (bullseye 5.10, bookworm 6.1,
# bookworm-backports and trixie 6.12, ...); `newest` is the newer of trixie-backports and sid.
# Downloads are cached in $NPK_VM_CACHE (default target/vm-cache): a second run only builds
# and boots. NPK_VM_JOBS VMs run at once (default 2: the verifier's walk uses one CPU, and
# the longest kernel goes first); each has a time limit (NPK_VM_TIMEOUT seconds, default
# 600): past it the VM is stopped and the kernel fails. NPK_VM_CHECKS=FILE
# runs FILE instead of checks.sh (NPK_VM_EXTRA="FILE..." copies executables it runs, at
# their paths), NPK_VM_APPEND adds to the kernel command line, NPK_VM_NICE
# sets qemu's niceness (15). Prints a table, one row per kernel with the time it took; exits
# non-zero if any check failed. Per-kernel logs: $NPK_VM_CACHE/logs/SUITE.{out,console}.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
cache=$(realpath -m "${NPK_VM_CACHE:-target/vm-cache}")
jobs=${NPK_VM_JOBS:-2}
# Over ten times what each took in the measured run (docs/kernels.md: 23-43 s): a hung VM
# fails its kernel long before CI's limit.
timeout=${NPK_VM_TIMEOUT:-600}
# The checks the guest runs (sourced by guest.sh); another file for a quicker look.
checks=$(realpath "${NPK_VM_CHECKS:-scripts/vm/checks.sh}")
say() { printf '\033[1mvm:\033[0m %s\n' "$*" >&2; }
die() { printf 'vm: error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (the kernel lists and the image builder need it)"

suites=("$@")
# Longest first (as measured), so that the last to start is short.
[ ${#suites[@]} -gt 0 ] || suites=(newest bullseye trixie bookworm-backports bookworm)
resolved=()
for s in "${suites[@]}"; do
    if [ "$s" = newest ]; then
        bash scripts/vm/fetch.sh "$cache" trixie-backports sid
        a=$(sed 's/[+-].*//' "$cache/kernels/trixie-backports/release")
        b=$(sed 's/[+-].*//' "$cache/kernels/sid/release")
        if dpkg --compare-versions "$a" ge "$b"; then s=trixie-backports; else s=sid; fi
    fi
    resolved+=("$s")
done
bash scripts/vm/fetch.sh "$cache" "${resolved[@]}"
busybox=$cache/tools/busybox
qemu=$cache/tools/qemu

say "building npk and the kernel test binaries"
build_start=$(date +%s)
# The whole workspace's tests, as `cargo test --release` builds them (with the npk binary the
# CLI tests run): a narrower selection unifies other features and rebuilds everything.
tests=$(cargo test --release --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .executable != null and .profile.test
        and .target.kind == ["test"]
        and (.target.name | IN("kernel", "kernel_log", "lifecycle", "serve")))
        | .executable')
[ "$(echo "$tests" | wc -w)" = 4 ] ||
    die "expected the kernel, kernel_log, lifecycle and serve test executables, got: $tests"
[ -x target/release/npk ] || die "cargo test did not build target/release/npk"

# The part of the image every kernel shares: busybox, the npk binary (at the path the test
# binaries were compiled to call it by), the tests, and the tools they run with the shared
# libraries ldd names (ip, python3 with the modules the tests' sender imports).
root=$cache/image/root
rm -rf "$cache/image" && mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,tests,proc,sys,dev,tmp,run,etc,lib/modules}
cp "$busybox" "$root/bin/busybox"
copy_with_libs() { # FILE...: each file and the libraries it loads, at the same paths
    for f in "$@"; do
        mkdir -p "$root$(dirname "$f")" && cp -L "$f" "$root$f"
        for lib in $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*'); do
            [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib"; }
        done
    done
}
npk=$repo/target/release/npk
copy_with_libs "$npk" "$(command -v ip)"
# Busybox for the rest, never shadowing a real tool (its `ip` has no `netns`).
for applet in $("$busybox" --list); do
    found=
    for d in bin sbin usr/bin usr/sbin; do [ -e "$root/$d/$applet" ] && found=1; done
    [ -n "$found" ] || ln -s busybox "$root/bin/$applet"
done
ln -sf "$npk" "$root/usr/local/bin/npk"
# NPK_VM_EXTRA: more executables (e.g. npk builds of other eBPF variants) for a checks file.
for extra in ${NPK_VM_EXTRA:-}; do copy_with_libs "$extra"; done
for t in $tests; do
    copy_with_libs "$t"
    ln -sf "$t" "$root/tests/$(basename "$t" | sed 's/-[0-9a-f]*$//')"
done
python=$(python3 -c 'import sys; print(sys.executable)')
copy_with_libs "$python"
ln -sf "$python" "$root/usr/bin/python3"
python3 -c 'import socket, sys
for m in list(sys.modules.values()):
    f = getattr(m, "__file__", None)
    if f: print(f)' | while read -r f; do copy_with_libs "$f"; done
cp scripts/vm/guest.sh "$root/init" && chmod +x "$root/init"
cp "$checks" "$root/checks.sh"
echo "root:x:0:0:root:/tmp/home:/bin/sh" > "$root/etc/passwd"
(cd "$root" && find . | "$busybox" cpio -o -H newc 2>/dev/null | gzip -1) > "$cache/image/common.cpio.gz"

# Per kernel: the modules the tests need (veth; clsact and the TC classifier) with their
# dependencies, decompressed for busybox insmod, in load order.
kernel_image() { # SUITE -> the initramfs
    local suite=$1 kdir=$cache/kernels/$1 mroot=$cache/image/$1
    local release; release=$(cat "$kdir/release")
    rm -rf "$mroot" && mkdir -p "$mroot/lib/modules"
    local order=() seen=" "
    add_module() {
        local name=$1 file dep
        case $seen in *" $name "*) return ;; esac
        seen="$seen$name "
        file=$(find "$kdir/modules/kernel" -name "$name.ko*" | head -n1)
        [ -n "$file" ] || return 0 # built in
        local ko=$mroot/lib/modules/$name.ko
        case $file in
            *.xz) xz -dc "$file" > "$ko" ;;
            *.zst) zstd -qdc "$file" > "$ko" ;;
            *) cp "$file" "$ko" ;;
        esac
        # Dependencies first: the .modinfo section's depends= line.
        for dep in $(tr '\0' '\n' < "$ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
            add_module "$dep"
        done
        order+=("/lib/modules/$name.ko")
    }
    for m in veth sch_ingress cls_bpf; do add_module "$m"; done
    printf '%s\n' "${order[@]}" > "$mroot/modules.order"
    (cd "$mroot" && find . | "$busybox" cpio -o -H newc 2>/dev/null | gzip -1) > "$mroot.cpio.gz"
    cat "$cache/image/common.cpio.gz" "$mroot.cpio.gz"
}

mkdir -p "$cache/logs"
# One kernel: boot, run the checks, leave its table row in $cache/logs/SUITE.row and its
# verdict in SUITE.rc.
run_kernel() { # SUITE [again]
    local suite=$1 release out console start seconds limit=$timeout
    release=$(cat "$cache/kernels/$suite/release")
    out=$cache/logs/$suite.out.log console=$cache/logs/$suite.console.log
    : > "$out"
    say "$suite ($release): booting (time limit $limit s)"
    start=$(date +%s)
    local qemu_rc=0
    # qemu 10 from bookworm-backports: 7.2's TCG crashed 6.12 in boot 23 of ~80 times.
    # qboot (in qemu-system-data) instead of SeaBIOS, which is a separate package: it boots
    # -kernel directly. No VGA, no default devices: only the two serial ports below.
    # nice (NPK_VM_NICE, default 15): the host's CPUs may be shared. no_timer_check: on a
    # loaded host 6.1 once panicked in its boot-time timer check ("IO-APIC + timer doesn't
    # work!").
    LD_LIBRARY_PATH=$qemu/usr/lib/x86_64-linux-gnu timeout "$limit" nice -n "${NPK_VM_NICE:-15}" \
        "$qemu/usr/bin/qemu-system-x86_64" -L "$qemu/usr/share/qemu" -bios qboot.rom \
        -nodefaults -vga none -display none \
        -accel tcg,thread=multi -cpu max -smp 2 -m 2G -no-reboot -nic none \
        -kernel "$cache/kernels/$suite/vmlinuz" -initrd "$cache/image/$suite.initrd" \
        -append "console=ttyS0 quiet panic=-1 rdinit=/init no_timer_check ${NPK_VM_APPEND:-}" \
        -serial "file:$console" -serial "file:$out" -monitor none </dev/null || qemu_rc=$?
    seconds=$(( $(date +%s) - start ))
    # A kernel that died before /init ran (the guest wrote nothing) is booted once more.
    if [ ! -s "$out" ] && [ "$qemu_rc" != 124 ] && [ "${2:-}" != again ]; then
        say "$suite: the kernel died while booting (see $console): booting it again"
        cp "$console" "$console.first-boot"
        run_kernel "$suite" again
        return
    fi
    local rc=0
    if [ "$qemu_rc" = 124 ]; then
        say "$suite: TIMED OUT: stopped after $seconds s (its limit: $limit s); see $out"
        rc=1
    elif ! grep -q '^npk-vm: done' "$out"; then
        say "$suite: the VM ended before the checks did (qemu exit $qemu_rc; see $console)"
        rc=1
    else
        say "$suite: $seconds s"
    fi
    python3 scripts/vm/summary.py "$suite" "$release" "$out" "$seconds" > "$cache/logs/$suite.row" || rc=1
    echo "$rc" > "$cache/logs/$suite.rc"
}

for suite in "${resolved[@]}"; do
    kernel_image "$suite" > "$cache/image/$suite.initrd"
    rm -f "$cache/logs/$suite.row" "$cache/logs/$suite.rc"
done
say "build and images: $(( $(date +%s) - build_start )) s"
matrix_start=$(date +%s)
for suite in "${resolved[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    run_kernel "$suite" &
done
wait
say "the matrix: $(( $(date +%s) - matrix_start )) s, $jobs at a time (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
echo
python3 scripts/vm/summary.py --header
failed=0
for suite in "${resolved[@]}"; do
    cat "$cache/logs/$suite.row" 2>/dev/null || echo "| $suite | no result | | | |"
    [ "$(cat "$cache/logs/$suite.rc" 2>/dev/null)" = 0 ] || failed=1
done
exit $failed
