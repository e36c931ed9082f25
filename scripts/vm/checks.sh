# What the VM runs (sourced by guest.sh; `check NAME COMMAND...`). Correctness only: TCG is
# 10-100x slower than the host, so the packet counts are small and timing tests are skipped.
# Every program load costs the verifier's walk (about a minute in TCG), so the kernel tests
# load each classifier once and check it for everything: TEST_RUN bit for bit at 16,16,
# 64,64 and 128,128,128 (XDP) and 32 (TC), veth in native and skb mode, a dropping class,
# hot swap under traffic, npk's pinned attach and detach, TC through TCX (>= 6.6; before,
# its refusal). They print what was loaded (`npk-loaded: PROGRAM cpu V insns N`).
release=$(uname -r)
major=${release%%.*} minor=${release#*.}
minor=${minor%%.*}
at_least() { [ "$major" -gt "$1" ] || { [ "$major" = "$1" ] && [ "$minor" -ge "$2" ]; }; }

# Without bpf_loop (< 5.17) the classifier is the bounded one. Today the 5.10 verifier stops
# npk_bounded_32 at its 1,000,000-instruction limit: one load shows whether that still holds,
# and the full checks run as soon as it loads (no edit needed here).
expected_refusal="BPF program is too large. Processed 1000001 insn"
# Passes when the bounded classifier loads (the full checks follow) or is refused with
# $expected_refusal (they are skipped: nothing else would load); fails on any other error.
bounded_load() {
    npk verify --hidden 16,16 --packets 200 --json > /tmp/bounded.log 2>&1
    rc=$?
    cat /tmp/bounded.log
    [ "$rc" = 0 ] && return 0
    full=
    grep -qF "$expected_refusal" /tmp/bounded.log || return "$rc"
    echo "npk-vm: refused as expected"
}
full=1
at_least 5 17 || check bounded-load bounded_load
[ -z "$full" ] || check kernel /tests/kernel --test-threads=1 --nocapture
# The server and generator need bpf_xdp_load_bytes (5.18); below it their tests are not run.
if at_least 5 18; then
    check serve /tests/serve --test-threads=1 xdp_replies_match_the_reference_bit_for_bit \
        xdp_bad_requests kernel_server_over_veth xdp_push_swaps hot_swap_under_traffic \
        kernel_generator_counts
fi
