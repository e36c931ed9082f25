# What the VM runs (sourced by guest.sh; `check NAME COMMAND...`). Correctness only: TCG is
# 10-100x slower than the host, so the packet counts are small and timing tests are skipped.
# Every program load costs the verifier's walk (2-10 s in TCG), so the kernel tests load each
# classifier once and check it for everything: TEST_RUN bit for bit at 16,16, 64,64 and
# 128,128,128 (XDP) and 32 (TC), veth in native and skb mode, a dropping class, hot swap under
# traffic, npk's pinned attach and detach, TC through TCX (>= 6.6; before, its refusal). They
# print what was loaded (`npk-loaded: PROGRAM cpu V insns N`).
release=$(uname -r)
major=${release%%.*} minor=${release#*.}
minor=${minor%%.*}
at_least() { [ "$major" -gt "$1" ] || { [ "$major" = "$1" ] && [ "$minor" -ge "$2" ]; }; }

# Without bpf_loop (< 5.17) each width is a program of its own (npk_bounded_32/64/128, XDP and
# TC): the kernel tests load the narrowest, `npk verify` checks the wider ones bit for bit.
if ! at_least 5 17; then
    for hidden in 64,64 128,128; do
        check "verify-xdp-$hidden" npk verify --hidden "$hidden" --packets 500 --json
        check "verify-tc-$hidden" npk verify --tc --hidden "$hidden" --packets 500 --json
    done
fi
check kernel /tests/kernel --test-threads=1 --nocapture
# The kernel's log (aya-log) through a foreground attach, and `npk push` to a pinned bounded-loop
# classifier (what < 5.17 loads; NPK_LOOPS=bounded picks it above): fits its width or is refused.
check kernel-log /tests/kernel_log --test-threads=1
check push-bounded /tests/lifecycle --exact push_to_a_bounded_classifier_takes_models_up_to_its_width
# The server and generator need bpf_xdp_load_bytes (5.18); below it, their refusal says so.
serve_refused() {
    ! npk serve --kernel lo --seconds 1 > /tmp/serve.log 2>&1 || return 1
    cat /tmp/serve.log
    grep -qF "needs the bpf_xdp_load_bytes and bpf_loop helpers (Linux 5.18 and later)" /tmp/serve.log
}
if ! at_least 5 18; then
    check serve-refused serve_refused
else
    check serve env NPK_EXPECT_LIVE_FRAMES=1 /tests/serve --test-threads=1 xdp_replies_match_the_reference_bit_for_bit \
        xdp_bad_requests kernel_server_over_veth xdp_push_swaps hot_swap_under_traffic \
        kernel_generator_counts packet_generator_counts
fi
