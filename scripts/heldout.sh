#!/usr/bin/env bash
# Held-out evaluation on real tools: train on lab runs whose settings come from family A, test
# on runs of family B. Every run is `npk gen --lab tools` (pcap of the server's ingress +
# manifest); features come from `npk features --manifest` on the pcaps, then `npk train` and
# `npk eval`. What differs between the families: npk-user/src/packets/lab/scenario.rs.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: sudo bash scripts/heldout.sh [options]

Records (or reuses) real-tool lab runs, trains on family A (seeds 101..), tests on family B
(seeds 201..), whose attack settings (windows, TTLs, payload sizes, ports, rates, source
ports) never occur in A. Prints per-class precision/recall/F1, per-scenario correct class and
detection (any attack class = dropped), the benign drop rate, int8 (as the kernel computes)
and float, and ends with one JSON line.

  --train-runs N   family A runs (default 20: seeds 101-120)
  --test-runs N    family B runs (default 2: seeds 201-202)
  --seconds S      length of each run (default 20)
  --hidden H       hidden layers (default 32,32)
  --epochs E       training epochs (default 20)
  --dir DIR        where runs, CSVs and the model go (default $TMPDIR/npk-heldout)
  --npk PATH       the npk binary (default target/release/npk)
  --reuse          keep the pcaps and manifests already in DIR (features are recomputed)
  -h, --help       this text
USAGE
}

train_runs=20 test_runs=2 seconds=20 hidden=32,32 epochs=20 reuse=0
dir=${TMPDIR:-/tmp}/npk-heldout
npk=$(dirname "$0")/../target/release/npk
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --reuse) reuse=1; shift; continue ;;
    --train-runs | --test-runs | --seconds | --hidden | --epochs | --dir | --npk)
        [ $# -ge 2 ] || { echo "heldout: $1 needs a value" >&2; exit 2; } ;;&
    --train-runs) train_runs=$2 ;;
    --test-runs) test_runs=$2 ;;
    --seconds) seconds=$2 ;;
    --hidden) hidden=$2 ;;
    --epochs) epochs=$2 ;;
    --dir) dir=$2 ;;
    --npk) npk=$2 ;;
    *) echo "heldout: unknown option $1 (see --help)" >&2; exit 2 ;;
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
"$npk" eval --model "$dir/model.npk" --data "$dir/test.csv" --json | tail -n1 >"$dir/eval.json"

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
    if [ "$(wc -l <"$dir/test.$s.csv")" -gt 1 ]; then
        per+=("\"$s\":$("$npk" eval --model "$dir/model.npk" --data "$dir/test.$s.csv" --json | tail -n1)")
    fi
done

EVAL="$dir/eval.json" PER="{$(IFS=,; echo "${per[*]}")}" python3 - <<'PY'
import json, os
overall = json.load(open(os.environ["EVAL"]))
per = json.loads(os.environ["PER"])
classes = ["benign", "syn_flood", "udp_flood", "port_scan", "icmp_flood"]
benign = {"web-small", "web-keepalive", "web-large", "slow-client", "dns", "bulk-tcp", "bulk-udp", "ping"}
fmt = lambda v: "-" if v is None else f"{v:.3f}"

print(f"{'class':<11} {'support':>8} | int8 P / R / F1      | float P / R / F1")
for c, name in enumerate(classes):
    q, f = overall["quantized"]["per_class"][c], overall["float"]["per_class"][c]
    print(f"{name:<11} {q['support']:>8} | {fmt(q['precision'])} {fmt(q['recall'])} {fmt(q['f1'])}"
          f"   | {fmt(f['precision'])} {fmt(f['recall'])} {fmt(f['f1'])}")

# A scenario's rows all carry its class: the confusion row of that class says what they got.
scenario, dropped = {}, {"quantized": [0, 0], "float": [0, 0]}
print(f"\n{'scenario':<14} {'rows':>7} | int8 correct detected | float correct detected")
for s, r in per.items():
    label = next(c for c, row in enumerate(r["quantized"]["confusion"]) if sum(row))
    out = {"rows": r["samples"]}
    for kind in ("quantized", "float"):
        row = r[kind]["confusion"][label]
        n = sum(row)
        out[kind] = {"correct": row[label] / n, "detected": 1 - row[0] / n}
        if s in benign:
            dropped[kind][0] += n - row[0]
            dropped[kind][1] += n
    scenario[s] = out
    q, f = out["quantized"], out["float"]
    det = lambda d: "-" if s in benign else f"{d['detected']:.4f}"
    print(f"{s:<14} {r['samples']:>7} |      {q['correct']:.4f}   {det(q):>6} |       {f['correct']:.4f}   {det(f):>6}")
drop = {k: (d / n if n else 0.0) for k, (d, n) in dropped.items()}
print(f"\noverall accuracy int8 {overall['quantized_accuracy']:.4f} (float {overall['float_accuracy']:.4f}, "
      f"agreement {overall['agreement']:.4f}) over {overall['samples']} rows; "
      f"benign dropped int8 {drop['quantized']:.4%} (float {drop['float']:.4%}) of {dropped['quantized'][1]}")
print(json.dumps({
    "overall_accuracy": overall["quantized_accuracy"],
    "float_accuracy": overall["float_accuracy"],
    "rows": overall["samples"],
    "benign_drop_rate": drop["quantized"],
    "float_benign_drop_rate": drop["float"],
    "per_class": {classes[c]: {k: overall["quantized"]["per_class"][c][k] for k in ("precision", "recall", "f1")}
                  for c in range(len(classes))},
    "per_scenario": scenario,
}))
PY
