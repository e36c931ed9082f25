#!/usr/bin/env bash
# Runs the fuzz targets (npk-user/tests/fuzz_*.rs) with more cases than the test suite's 10^5:
#   bash scripts/fuzz.sh            # 10^6 cases per target
#   bash scripts/fuzz.sh 10000000   # any number
# Targets: the model file decoder, the ONNX importer, the pcap/pcapng reader, the CSV loader, the wire-format
# request parser and reply decoder. A failure prints the minimal mutation list that panics or
# breaks a property. Needs no root.
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-1000000}
[[ $cases =~ ^[0-9]+$ ]] || { echo "fuzz: '$cases' is not a number of cases" >&2; exit 2; }
for target in fuzz_model_file fuzz_onnx fuzz_pcap fuzz_csv fuzz_idx fuzz_wire; do
    echo "fuzz: $target, $cases cases per property" >&2
    start=$SECONDS
    NPK_FUZZ_CASES=$cases cargo test --release -p npk-user --test "$target" -q
    echo "fuzz: $target passed in $((SECONDS - start)) s" >&2
done
