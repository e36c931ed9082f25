#!/usr/bin/env bash
# Held-out evaluation on real tools: train on lab runs whose settings come from family A, test
# on runs of family B (no window, TTL, payload size, port pattern, rate or source-port choice
# of an attack in B was ever in A). Every run is `npk gen --lab tools` (pcap of the server's
# ingress + manifest); features come from `npk features --manifest` on the pcaps, then
# `npk train` and `npk eval`. Prints a table and ends with one JSON line.
#
#   sudo bash scripts/heldout.sh [--train-runs N] [--test-runs N] [--seconds S] [--hidden H]
#                                [--epochs E] [--dir DIR] [--npk PATH] [--reuse]
# --reuse keeps the pcaps and manifests already in DIR (same runs, features recomputed).
set -euo pipefail

train_runs=3 test_runs=2 seconds=20 hidden=32,32 epochs=20 reuse=0
dir=${TMPDIR:-/tmp}/npk-heldout
npk=$(dirname "$0")/../target/release/npk
while [ $# -gt 0 ]; do
    case $1 in
    --train-runs) train_runs=$2 ;;
    --test-runs) test_runs=$2 ;;
    --seconds) seconds=$2 ;;
    --hidden) hidden=$2 ;;
    --epochs) epochs=$2 ;;
    --dir) dir=$2 ;;
    --npk) npk=$2 ;;
    --reuse) reuse=1; shift; continue ;;
    *) echo "heldout: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
[ -x "$npk" ] || { echo "heldout: $npk not found: cargo build --release first" >&2; exit 1; }
mkdir -p "$dir"
scenarios=(web-small web-keepalive web-large slow-client dns bulk-tcp bulk-udp ping
    syn-flood udp-flood icmp-flood scan-syn scan-connect scan-stealth scan-udp)

# One lab run, then its labelled features from the pcap.
run() { # family seed
    local name="$dir/$1-$2"
    [ "$reuse" = 1 ] && [ -f "$name.pcap" ] && [ -f "$name.json" ] ||
        nice -n 10 "$npk" gen --lab tools --family "$1" --seed "$2" --seconds "$seconds" \
        --pcap "$name.pcap" --out "$name.kernel.csv" --manifest "$name.json" --json >/dev/null
    "$npk" features --pcap "$name.pcap" --manifest "$name.json" --out "$name.csv" --json >/dev/null
}
# Concatenates CSVs with one header.
concat() { # out in...
    local out=$1; shift
    head -n1 "$1" >"$out"
    for f in "$@"; do tail -n +2 "$f" >>"$out"; done
}

train=() test=()
for i in $(seq 1 "$train_runs"); do run a $((100 + i)); train+=("$dir/a-$((100 + i)).csv"); done
for i in $(seq 1 "$test_runs"); do run b $((200 + i)); test+=("$dir/b-$((200 + i)).csv"); done
concat "$dir/train.csv" "${train[@]}"
concat "$dir/test.csv" "${test[@]}"

"$npk" train --data "$dir/train.csv" --hidden "$hidden" --epochs "$epochs" --batch 64 \
    --optimizer adam --lr 0.005 --seed 1 --test-split 0.1 --out "$dir/model.npk" --json \
    >"$dir/train.json"
overall=$("$npk" eval --model "$dir/model.npk" --data "$dir/test.csv" --json | tail -n1)

# Per scenario: its rows of every test run (features computed over the whole capture).
per=()
for s in "${scenarios[@]}"; do
    files=()
    for i in $(seq 1 "$test_runs"); do
        name="$dir/b-$((200 + i))"
        "$npk" features --pcap "$name.pcap" --manifest "$name.json" --only "$s" \
            --out "$name.$s.csv" --json >/dev/null
        files+=("$name.$s.csv")
    done
    concat "$dir/test.$s.csv" "${files[@]}"
    # npk eval needs two classes in a file: score the scenario's rows beside the whole test
    # set, whose hits are known; the difference is the scenario's (rows are scored one by one).
    if [ "$(wc -l <"$dir/test.$s.csv")" -gt 1 ]; then
        concat "$dir/with.$s.csv" "$dir/test.csv" "$dir/test.$s.csv"
        per+=("\"$s\":$("$npk" eval --model "$dir/model.npk" --data "$dir/with.$s.csv" --json | tail -n1)")
    fi
done

OVERALL="$overall" PER="{$(IFS=,; echo "${per[*]}")}" TRAIN="$(cat "$dir/train.json")" python3 - <<'EOF'
import json, os
overall = json.loads(os.environ["OVERALL"])
per = json.loads(os.environ["PER"])
benign = {"web-small", "web-keepalive", "web-large", "slow-client", "dns", "bulk-tcp", "bulk-udp", "ping"}
print(f"{'scenario':<14} {'rows':>8} {'correct class':>14}")
benign_rows = benign_hits = 0
hits = lambda r: round(r["quantized_accuracy"] * r["samples"])
scenario = {}
for s, r in per.items():
    rows = r["samples"] - overall["samples"]
    correct = hits(r) - hits(overall)
    scenario[s] = correct / rows
    print(f"{s:<14} {rows:>8} {scenario[s]:>14.4f}")
    if s in benign:
        benign_rows += rows
        benign_hits += correct
# A benign packet given any attack class is dropped (every attack class's action is drop).
drop = 1 - benign_hits / benign_rows if benign_rows else 0.0
print(f"overall (quantized, as the kernel computes): {overall['quantized_accuracy']:.4f} "
      f"over {overall['samples']} rows; benign drop rate {drop:.4f}")
print(json.dumps({
    "overall_accuracy": overall["quantized_accuracy"],
    "float_accuracy": overall["float_accuracy"],
    "rows": overall["samples"],
    "benign_drop_rate": drop,
    "per_scenario_correct": scenario,
}))
EOF
