#!/usr/bin/env bash
# Downloads what the VM matrix needs into a cache directory, through a private apt
# configuration (the system's apt state is never touched) and `dpkg-deb -x` (nothing is
# installed): Debian's cloud kernels, qemu 10 from bookworm-backports, static busybox.
#
#   scripts/vm/fetch.sh CACHE KERNEL...      KERNEL: a suite (bullseye, bookworm, ...)
#
# Leaves CACHE/kernels/SUITE/{vmlinuz,modules/,release} and CACHE/tools/{qemu,busybox}.
# A kernel or tool already unpacked is not fetched again; the package lists are refreshed
# at most once a day.
set -euo pipefail
cache=$(realpath -m "$1"); shift
say() { printf '\033[1mvm:\033[0m %s\n' "$*" >&2; }
die() { printf 'vm: error: %s\n' "$*" >&2; exit 1; }

mirror=http://deb.debian.org/debian
security=http://deb.debian.org/debian-security
lab=$cache/apt
mkdir -p "$lab/lists/partial" "$lab/cache/archives/partial" "$lab/debs"
cat > "$lab/sources.list" <<SOURCES
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bullseye main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $security bullseye-security main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $security bookworm-security main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm-backports main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $security trixie-security main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie-backports main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main
SOURCES
# The binary caches are named explicitly: container images often set them to "" (docker-clean),
# and without them every apt-cache call parses all nine suites' lists again (~9 s each).
apt_lab=(-o Dir::Etc::SourceList="$lab/sources.list" -o Dir::Etc::SourceParts=-
    -o Dir::State::Lists="$lab/lists" -o Dir::Cache="$lab/cache"
    -o Dir::Cache::pkgcache=pkgcache.bin -o Dir::Cache::srcpkgcache=srcpkgcache.bin
    -o Dir::State::Status=/dev/null -o APT::Architecture=amd64 -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
if [ -z "$(find "$lab/lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n1)" ]; then
    say "refreshing the package lists (private apt state in $lab)"
    apt-get "${apt_lab[@]}" -qq update || die "apt-get update failed (is $mirror reachable?)"
fi

# The newest version of PKG in SUITE (PKG/SUITE), or nothing.
field() { # PKG/SUITE FIELD
    apt-cache "${apt_lab[@]}" show "$1" 2>/dev/null | sed -n "s/^$2: //p" | head -n1
}
download() { # PKG[/SUITE]... -> the .deb paths
    (cd "$lab/debs" && apt-get "${apt_lab[@]}" -qq download "$@" >/dev/null) ||
        die "apt-get download $* failed"
    for p in "$@"; do
        local name=${p%%/*} version
        version=$(field "$p" Version)
        ls "$lab/debs/${name}_${version//:/%3a}_"*.deb
    done
}

# The cloud kernel a suite's metapackage points at; bullseye and bookworm get their
# security updates first.
kernel_package() { # SUITE
    local suite=$1 dep
    for s in "$suite-security" "$suite"; do
        dep=$(field "linux-image-cloud-amd64/$s" Depends | tr ',' '\n' | sed 's/^ *//; s/[ (].*//' |
            grep -m1 '^linux-image-') || continue
        [ -n "$dep" ] && { echo "$dep/$s"; return; }
    done
    die "no linux-image-cloud-amd64 in $suite"
}

for suite in "$@"; do
    out=$cache/kernels/$suite
    [ -f "$out/release" ] && continue
    package=$(kernel_package "$suite")
    release=${package%%/*}; release=${release#linux-image-}
    say "$suite: kernel $release"
    rm -rf "$out.tmp" && mkdir -p "$out.tmp/root"
    # From 7.x on, linux-image-X is empty: the kernel is in linux-binary-X, the modules
    # in linux-modules-X.
    pkgs=("$package")
    for extra in linux-binary linux-modules; do
        [ -n "$(field "$extra-$release/${package#*/}" Version)" ] && pkgs+=("$extra-$release/${package#*/}")
    done
    for deb in $(download "${pkgs[@]}"); do dpkg-deb -x "$deb" "$out.tmp/root"; done
    modules=$(ls -d "$out.tmp/root/lib/modules/$release" "$out.tmp/root/usr/lib/modules/$release" 2>/dev/null | head -n1 || true)
    # /boot/vmlinuz-X up to 6.x, /usr/lib/modules/X/vmlinuz from 7.x on.
    vmlinuz=$(ls "$out.tmp/root/boot/vmlinuz-$release" "$modules/vmlinuz" 2>/dev/null | head -n1 || true)
    [ -n "$vmlinuz" ] && [ -n "$modules" ] || die "$suite: no kernel or modules in ${pkgs[*]}"
    mv "$vmlinuz" "$out.tmp/vmlinuz"
    mv "$modules" "$out.tmp/modules"
    rm -rf "$out.tmp/root"
    echo "$release" > "$out.tmp/release"
    rm -rf "$out" && mv "$out.tmp" "$out"
    rm -f "$lab/debs/"linux-*.deb
done

tools=$cache/tools
if [ ! -f "$tools/qemu/.complete" ]; then
    # qemu 7.2 (bookworm) crashed the 6.12 kernel in TCG in 23 of ~80 boots; 10.0: 0 of 32.
    say "qemu from bookworm-backports"
    rm -rf "$tools/qemu" && mkdir -p "$tools/qemu"
    for deb in $(download qemu-system-x86/bookworm-backports qemu-system-common/bookworm-backports \
        qemu-system-data/bookworm-backports); do
        dpkg-deb -x "$deb" "$tools/qemu"
    done
    # Shared libraries this host lacks come from bookworm(-backports), unpacked beside it:
    # qemu's library dependencies and theirs, skipping what the host has installed.
    lib_dir=$tools/qemu/usr/lib/x86_64-linux-gnu
    lib_deps() { tr ',' '\n' | sed 's/^ *//; s/ *|.*//; s/[ (].*//' | grep '^lib' || true; }
    queue=$(dpkg-deb -f "$(ls "$lab/debs/"qemu-system-x86_*.deb)" Depends | lib_deps)
    done_pkgs=" "
    while [ -n "$queue" ]; do
        set -- $queue
        p=$1; shift; queue="$*"
        case $done_pkgs in *" $p "*) continue ;; esac
        done_pkgs="$done_pkgs$p "
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' && continue
        for s in bookworm-backports bookworm; do
            [ -n "$(field "$p/$s" Version)" ] || continue
            deb=$(download "$p/$s")
            dpkg-deb -x "$deb" "$tools/qemu"
            # bookworm's libnl (and others) still ship in /lib: merge it into /usr/lib.
            if [ -d "$tools/qemu/lib" ]; then
                cp -a "$tools/qemu/lib/." "$tools/qemu/usr/lib/" && rm -rf "$tools/qemu/lib"
            fi
            queue="$queue $(dpkg-deb -f "$deb" Depends | lib_deps | tr '\n' ' ')"
            break
        done
    done
    LD_LIBRARY_PATH=$lib_dir "$tools/qemu/usr/bin/qemu-system-x86_64" --version >/dev/null ||
        die "the unpacked qemu does not run: $(LD_LIBRARY_PATH=$lib_dir ldd "$tools/qemu/usr/bin/qemu-system-x86_64" | grep 'not found' | tr '\n' ' ')"
    touch "$tools/qemu/.complete"
fi
if [ ! -x "$tools/busybox" ]; then
    say "busybox-static from bookworm"
    rm -rf "$tools/busybox.tmp" && mkdir -p "$tools/busybox.tmp"
    dpkg-deb -x "$(download busybox-static/bookworm)" "$tools/busybox.tmp"
    mv "$tools/busybox.tmp/bin/busybox" "$tools/busybox" && rm -rf "$tools/busybox.tmp"
fi
rm -f "$lab/debs/"*.deb
