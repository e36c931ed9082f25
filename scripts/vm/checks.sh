# What the VM runs (sourced by guest.sh; `check NAME COMMAND...`). Correctness only: TCG is
# 10-100x slower than the host, so the packet counts are small and timing tests are skipped.
# Every program load costs the verifier's walk (up to a minute in TCG), so each check loads
# as few as still prove it: the kernel tests cover verify at 16, 64 and 128 wide and TC.

# `npk verify` through the CLI, recording what npk picked here as the kernel saw it: the
# result of the v4 probe (a 3-instruction socket filter) and the names of the programs loaded.
verify_and_picked() {
    strace -f -e trace=bpf -s 64 -o /tmp/bpf.trace npk verify "$@"
    rc=$?
    sed -n 's/.*BPF_PROG_TYPE_SOCKET_FILTER, insn_cnt=3,.* = \(-1 [A-Z]*\|[0-9][0-9]*\).*/v4-probe \1/p
            s/.*prog_name="\(npk[a-z_0-9]*\)".*/program \1/p' /tmp/bpf.trace | sort -u
    return $rc
}
check verify-16,16 verify_and_picked --hidden 16,16 --packets 20000 --json
check verify-32,32 npk verify --hidden 32,32 --packets 2000 --json
# The server and generator need bpf_xdp_load_bytes (5.18); below it their tests are not run.
release=$(uname -r)
major=${release%%.*} minor=${release#*.}
minor=${minor%%.*}
if [ "$major" -gt 5 ] || { [ "$major" = 5 ] && [ "$minor" -ge 18 ]; }; then
    check insns npk bench infer --hidden 16,16 --rounds 1 --repeat 10 --json
    serve_tests="xdp_replies_match_the_reference_bit_for_bit xdp_bad_requests kernel_server_over_veth
        xdp_push_swaps hot_swap_under_traffic kernel_generator_counts"
else
    serve_tests=
fi
check kernel /tests/kernel --test-threads=1
[ -z "$serve_tests" ] || check serve /tests/serve --test-threads=1 $serve_tests
