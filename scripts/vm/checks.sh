# What the VM runs (sourced by guest.sh; `check NAME COMMAND...`). Correctness only: TCG is
# 10-100x slower than the host, so the packet counts are small and timing tests are skipped.

# Which object and classifier npk picked here, as the kernel saw it: the result of the v4
# probe (a 3-instruction socket filter) and the names of the programs loaded.
picked() {
    strace -f -e trace=bpf -s 64 npk verify --hidden 16,16 --packets 10 --json 2>&1 |
        sed -n 's/.*BPF_PROG_TYPE_SOCKET_FILTER, insn_cnt=3,.* = \(-1 [A-Z]*\|[0-9][0-9]*\).*/v4-probe \1/p
                s/.*prog_name="\(npk[a-z_0-9]*\)".*/program \1/p' | sort -u
}
check picked picked
check verify-16,16 npk verify --hidden 16,16 --packets 20000 --json
for h in 32,32 64,64 128,128; do
    check "verify-$h" npk verify --hidden "$h" --packets 2000 --json
done
check verify-tc-32 npk verify --hidden 32 --packets 2000 --tc --json
check insns npk bench infer --hidden 16,16 --rounds 1 --repeat 10 --json
# The integration tests, one at a time (the VM has two CPUs and little memory).
for t in /tests/*; do
    check "$(basename "$t")" "$t" --test-threads=1 --skip keeps_its_rate --skip searches_capacity \
        --skip under_strace
done
