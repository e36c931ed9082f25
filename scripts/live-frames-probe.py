#!/usr/bin/env python3
"""Minimal reproduction: does this kernel take BPF_PROG_TEST_RUN in XDP live-frames mode?

Loads the smallest XDP programs (r0 = XDP_DROP / XDP_PASS / XDP_TX; exit) and runs each once
with BPF_PROG_TEST_RUN, without and with BPF_F_TEST_XDP_LIVE_FRAMES (repeat 1, a 64-byte
frame), and prints what the kernel answered. Needs root (CAP_BPF + CAP_NET_ADMIN); no
dependencies beyond Python 3. `npk bench serve --generator auto` makes the same probe.
See docs/serve-benchmark.md.
"""
import ctypes
import ctypes.util
import os
import struct
import sys

SYS_BPF = 321  # x86_64
BPF_PROG_LOAD, BPF_PROG_TEST_RUN = 5, 10
BPF_PROG_TYPE_XDP = 6
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    r = libc.syscall(SYS_BPF, cmd, buf, len(attr))
    return r, ctypes.get_errno(), buf.raw


def load_xdp(action):
    # mov64 r0, action; exit
    insns = struct.pack("<BBhi", 0xB7, 0, 0, action) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    code = ctypes.create_string_buffer(insns, len(insns))
    license = ctypes.create_string_buffer(b"GPL")
    attr = bytearray(128)
    struct.pack_into("<IIQQ", attr, 0, BPF_PROG_TYPE_XDP, 2, ctypes.addressof(code),
                     ctypes.addressof(license))
    fd, err, _ = bpf(BPF_PROG_LOAD, attr)
    if fd < 0:
        sys.exit(f"BPF_PROG_LOAD of an XDP program: {os.strerror(err)}")
    return fd


def test_run(fd, flags):
    size = 64
    frame = ctypes.create_string_buffer(b"\xff" * 12 + b"\x08\x00" + bytes(size - 14), size)
    attr = bytearray(80)
    # prog_fd, retval, data_size_in, data_size_out, data_in, data_out, repeat, duration
    struct.pack_into("<IIIIQQII", attr, 0, fd, 0, size, 0, ctypes.addressof(frame), 0, 1, 0)
    # ctx_size_in, ctx_size_out, ctx_in, ctx_out, flags, cpu; then batch_size
    struct.pack_into("<IIQQII", attr, 40, 0, 0, 0, 0, flags, 0)
    r, err, out = bpf(BPF_PROG_TEST_RUN, attr)
    if r == 0:
        return f"ok (retval {struct.unpack_from('<I', out, 4)[0]})"
    return f"refused: {os.strerror(err)} (errno {err})"


live_ok = True
for action, name in ((1, "XDP_DROP"), (2, "XDP_PASS"), (3, "XDP_TX")):
    fd = load_xdp(action)
    plain, live = test_run(fd, 0), test_run(fd, BPF_F_TEST_XDP_LIVE_FRAMES)
    live_ok &= live.startswith("ok")
    print(f"{name:8}  test run: {plain:16}  live frames: {live}")
    os.close(fd)
print("live frames:", "allowed" if live_ok else "refused")
