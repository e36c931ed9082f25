# What the VM runs (sourced by guest.sh; `check NAME COMMAND...`). Correctness only: TCG is
# 10-100x slower than the host, so the packet counts are small and timing tests are skipped.
for h in 16,16 32,32 64,64 128,128; do
    check "verify-$h" npk verify --hidden "$h" --packets 2000 --json
done
check verify-tc-32 npk verify --hidden 32 --packets 2000 --tc --json
check insns npk bench infer --hidden 16,16 --rounds 1 --repeat 10 --json
# The integration tests, one at a time (the VM has two CPUs and little memory).
for t in /tests/*; do
    check "$(basename "$t")" "$t" --test-threads=1 --skip keeps_its_rate --skip searches_capacity \
        --skip under_strace
done
