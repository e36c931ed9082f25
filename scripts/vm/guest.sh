#!/bin/sh
# /init of the VM's initramfs (see run.sh): mounts what npk needs, loads the modules, runs the
# checks and writes their output to the second serial port, then powers off.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# No tmpfs over /tmp: the initramfs root is writable already, and a checkout under /tmp (the
# npk binary and the tests sit at their host paths) would be hidden by it.
mount -t tmpfs run /run
mount -t bpf bpf /sys/fs/bpf
mkdir -p /dev/shm /var/run /tmp/home && mount -t tmpfs shm /dev/shm
for m in $(cat /modules.order); do insmod "$m" 2>/dev/null; done
ip link set lo up
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/tmp/home
exec > /dev/ttyS1 2>&1
echo "npk-vm: kernel $(uname -r)"
# One check: its name, then its output, then `npk-vm: rc NAME CODE SECONDS`.
check() {
    name=$1
    shift
    echo "npk-vm: run $name"
    started=$(date +%s)
    "$@"
    echo "npk-vm: rc $name $? $(( $(date +%s) - started ))"
}
. /checks.sh
echo "npk-vm: done"
sync
poweroff -f
