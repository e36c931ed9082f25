#!/usr/bin/env bash
# The README's first command on a Debian that has nothing but apt: debootstraps a minimal
# SUITE (default bookworm) from the package mirror into a directory, puts this tree's HEAD in
# it and runs `bash scripts/demo.sh` there: first as a user who has sudo, on the bare system
# (the demo re-runs itself through sudo; setup installs everything), then as root in the same
# clone (setup finds everything and says so). Prints how long each step took. The
# chroot shares this machine's kernel and network namespace (the demo makes its own
# namespaces and veths) and gets its own bpffs, /run and /tmp.
#
#   sudo bash scripts/fresh-debian.sh [--suite bookworm|trixie] [--dir DIR] [--keep]
#                                     [-- DEMO-ARGS...]
#
# Needs root, debootstrap (installed if missing), about 4 GB in DIR and, on 2 CPUs, about half
# an hour (the toolchains, bpf-linker and npk are built from nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/as-root.sh

suite=bookworm dir= keep=0 demo_args=()
while [ $# -gt 0 ]; do
    case "$1" in
    --suite) suite=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --) shift; demo_args=("$@"); break ;;
    *) echo "fresh-debian: unknown option $1 (see the head of $0)" >&2; exit 2 ;;
    esac
done

say() { printf '\033[1mfresh-debian:\033[0m %s\n' "$*"; }
times=()
step() { # NAME COMMAND...
    local name=$1 start=$SECONDS
    shift
    say "$name"
    "$@"
    times+=("$(printf '%-34s %5d s' "$name" $((SECONDS - start)))")
}

command -v debootstrap >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
dir=${dir:-$(mktemp -d /var/tmp/npk-fresh-$suite.XXXXXX)}
mounts=()
cleanup() {
    local m
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        m=${mounts[i]}
        umount -l "$m" 2>/dev/null || true
    done
    if [ "$keep" = 0 ]; then rm -rf --one-file-system "$dir"; else say "kept $dir"; fi
    [ ${#times[@]} -eq 0 ] || { say "times ($suite):"; printf '  %s\n' "${times[@]}"; }
}
trap cleanup EXIT

step "debootstrap $suite (minbase)" \
    debootstrap --variant=minbase "$suite" "$dir" http://deb.debian.org/debian >/dev/null
mount_in() { # TYPE SOURCE PATH [OPTIONS]
    mkdir -p "$dir$3"
    mount -t "$1" ${4:+-o "$4"} "$2" "$dir$3"
    mounts+=("$dir$3")
}
# The chroot's / a mount point of its own: `ip netns exec` and `ip -n` make / a slave mount,
# which fails (EINVAL) on a directory that is not one.
mount --bind "$dir" "$dir"
mounts+=("$dir")
mount_in proc proc /proc
mount_in sysfs sysfs /sys
mount_in bpf bpf /sys/fs/bpf
mount_in devtmpfs udev /dev
mount_in devpts devpts /dev/pts newinstance,ptmxmode=0666
mount_in tmpfs tmpfs /run mode=755
mount_in tmpfs tmpfs /tmp mode=1777
# What belongs to the machine rather than to Debian: name resolution, and the certificates it
# trusts beyond Debian's (a TLS-inspecting proxy's CA, as on our build machines), which the
# chroot's ca-certificates takes in when setup installs it.
cp /etc/resolv.conf /etc/hosts "$dir/etc/"
mkdir -p "$dir/usr/local/share/ca-certificates"
cp /etc/ssl/certs/ca-certificates.crt "$dir/usr/local/share/ca-certificates/this-machine.crt"

# A user with sudo (the package and a sudoers line: what a Debian installer gives its first
# user) and a clone of this tree's HEAD of its own.
step "add a sudo user" chroot "$dir" /bin/sh -c "apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo >/dev/null &&
    useradd -m -s /bin/bash npkdev && echo 'npkdev ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/npkdev"
mkdir -p "$dir/home/npkdev/npk"
git archive HEAD | tar -x -C "$dir/home/npkdev/npk"
chroot "$dir" chown -R npkdev:npkdev /home/npkdev/npk
in_chroot() { # USER COMMAND: a login shell of USER in the chroot, with a clean environment
    chroot "$dir" /usr/bin/env -i TERM=dumb LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        su - "$1" -c "$2"
}
args=
[ ${#demo_args[@]} -eq 0 ] || args=$(printf ' %q' "${demo_args[@]}")
# From nothing, as the user: the demo re-runs itself through sudo, setup installs everything.
step "demo as a sudo user (setup from nothing)" \
    in_chroot npkdev "cd ~/npk && bash scripts/demo.sh$args"
# As root, in the same clone: setup finds everything there and says so; the demo runs again.
step "demo as root (setup: all there)" in_chroot root "cd ~npkdev/npk && bash scripts/demo.sh$args"
# The .deb, built in that clone and installed by apt as a package of this Debian.
step "the .deb: build, apt install, npk --version" in_chroot root "cd ~npkdev/npk &&
    PATH=/root/.cargo/bin:\$PATH bash scripts/package-deb.sh &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ./target/debian/npk_*.deb >/dev/null &&
    npk --version && ls /lib/systemd/system/npk@.service /usr/share/man/man1/npk-events.1.gz"
