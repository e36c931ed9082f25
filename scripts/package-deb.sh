#!/usr/bin/env bash
# Builds target/debian/npk_<version>_<arch>.deb from the release build: the npk binary (the
# eBPF object is inside it), the systemd units, shell completions and man pages generated from
# the CLI's definitions, the example config and Grafana dashboard, the operations guide.
# With --check, also installs it into a throwaway dpkg root (no package database of this
# machine is touched), asks apt whether its dependencies resolve here, and runs the installed
# `npk --version`, `npk completions` and `man` files (what CI runs).
#
#   bash scripts/package-deb.sh [--check]
#
# Plain dpkg-deb rather than cargo-deb: no extra tool to build, and every file is listed here.
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
[ "${1:-}" = --check ] && check=1

say() { printf '\033[1mpackage-deb:\033[0m %s\n' "$*"; }
die() { printf 'package-deb: error: %s\n' "$*" >&2; exit 1; }
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing: this builds Debian packages on Debian"

cargo build --release --quiet
npk=target/release/npk
version=$(sed -n 's/^version = "\(.*\)"/\1/p' npk-user/Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
# The newest glibc symbol version the binary uses is the libc6 it needs.
glibc=$(objdump -T "$npk" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)
[ -n "$glibc" ] || die "could not read the glibc versions $npk needs (objdump, binutils)"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -D -m 755 "$npk" "$stage/usr/bin/npk"
strip --strip-unneeded "$stage/usr/bin/npk"
# The units as deploy/ has them, run from the package's /usr/bin/npk.
for unit in npk@.service npk-exporter.service; do
    install -D -m 644 "deploy/$unit" "$stage/lib/systemd/system/$unit"
    sed -i 's|/usr/local/bin/npk|/usr/bin/npk|g' "$stage/lib/systemd/system/$unit"
done
install -d "$stage/usr/share/bash-completion/completions" \
    "$stage/usr/share/zsh/vendor-completions" "$stage/usr/share/fish/vendor_completions.d" \
    "$stage/usr/share/man/man1"
"$npk" completions bash >"$stage/usr/share/bash-completion/completions/npk"
"$npk" completions zsh >"$stage/usr/share/zsh/vendor-completions/_npk"
"$npk" completions fish >"$stage/usr/share/fish/vendor_completions.d/npk.fish"
"$npk" man --dir "$stage/usr/share/man/man1" >/dev/null
gzip -9n "$stage"/usr/share/man/man1/*.1
doc="$stage/usr/share/doc/npk"
install -D -m 644 README.md "$doc/README.md"
install -D -m 644 docs/operations.md "$doc/operations.md"
install -D -m 644 deploy/eth0.toml "$doc/examples/eth0.toml"
install -D -m 644 deploy/grafana-npk.json "$doc/examples/grafana-npk.json"
cat >"$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: npk
License: $(sed -n 's/^license = "\(.*\)"/\1/p' Cargo.toml)
EOF
find "$stage" -type d -exec chmod 755 {} +

mkdir -p "$stage/DEBIAN"
cat >"$stage/DEBIAN/control" <<EOF
Package: npk
Version: $version
Architecture: $arch
Maintainer: npk developers <npk@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: libc6 (>= $glibc)
Recommends: iproute2
Suggests: prometheus, grafana
Section: net
Priority: optional
Homepage: https://github.com/npk/npk
Description: neural packet kernel: an int8 MLP classifying packets in XDP/TC
 npk trains a small neural network on packet features, quantizes it to int8,
 attaches it to an interface as an eBPF program (XDP or TC) and swaps its
 weights in place. It counts, samples or drops per class, with a drop margin,
 and reports through npk stats, npk events, npk status and a Prometheus
 exporter. Units: npk@IFACE (reads /etc/npk/IFACE.toml), npk-exporter.
EOF
# Units are installed, not enabled: the operator writes /etc/npk/IFACE.toml first.
cat >"$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
EOF
cp "$stage/DEBIAN/postinst" "$stage/DEBIAN/postrm"
sed -i 's/"\$1" = configure/"$1" = remove/' "$stage/DEBIAN/postrm"
chmod 755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/postrm"

mkdir -p target/debian
deb="target/debian/npk_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
say "built $deb ($(du -h "$deb" | cut -f1); needs libc6 >= $glibc)"
[ "$check" = 1 ] || exit 0

# Install into an empty dpkg root: files land under it, this machine's database is untouched.
root=$(mktemp -d)
trap 'rm -rf "$stage" "$root"' EXIT
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
# Dependencies checked against this machine's packages instead (the empty root has none).
apt-get install --simulate --quiet "./$deb" >/dev/null ||
    die "apt cannot resolve $deb's dependencies here"
dpkg --root="$root" --force-depends --force-script-chrootless --force-not-root \
    --log=/dev/null -i "$deb" >"$root.log" 2>&1 ||
    { cat "$root.log" >&2; die "dpkg could not install $deb"; }
rm -f "$root.log"
installed="$root/usr/bin/npk"
got=$("$installed" --version)
[ "$got" = "npk $version" ] || die "the installed npk says '$got', not 'npk $version'"
for f in lib/systemd/system/npk@.service usr/share/man/man1/npk.1.gz \
    usr/share/man/man1/npk-attach.1.gz usr/share/bash-completion/completions/npk; do
    [ -s "$root/$f" ] || die "$f is missing from the installed package"
done
! grep -q /usr/local/bin "$root"/lib/systemd/system/*.service ||
    die "an installed unit still runs /usr/local/bin/npk"
zcat "$root/usr/share/man/man1/npk-events.1.gz" | grep -q 'events' ||
    die "npk-events.1 does not describe npk events"
say "installed into a scratch root: $got, units, $(ls "$root/usr/share/man/man1" | wc -l) man pages, completions"
