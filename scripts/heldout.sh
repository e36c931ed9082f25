#!/usr/bin/env bash
# Held-out evaluation on real tools, as one protocol: K independent recording sets, each with
# its own family-A training runs, family-A validation run(s) held out of training, and test runs
# of families B and C (settings never seen in A, in two directions); for every set and each of
# S training seeds the MLP and a linear baseline (the same features, no hidden layer) are
# trained on the set's A runs and scored on its B and C runs. Reports the mean and the worst
# case over the K x S runs and checks the thresholds. Every run is `npk gen --lab tools` (pcap of
# the server's ingress + manifest); features come from `npk features --manifest` on the pcaps,
# then `npk train` and `npk eval`. What differs between the families:
# npk-user/src/packets/lab/scenario.rs.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: sudo bash scripts/heldout.sh [options]

Records fresh real-tool lab runs (K sets), trains the MLP and a linear baseline (multinomial
logistic regression: `npk train --hidden none`) on each set's family-A runs under S training
seeds, and tests them on the set's family-B and family-C runs, whose attack settings (rates,
windows, TTLs, payload sizes, ports, scan ranges and flavours) never occur in A nor in each
other. Prints, per test family (B, C, both) and for both models side by side, the mean and the
worst case over the K x S runs of: overall accuracy, per-class precision/recall/F1, per-scenario
correct class and detection (any attack class = dropped), the benign drop rate and int8/float
agreement, int8 (as the kernel computes) and float; then PASS/FAIL for each threshold and one
JSON line. Per-run JSON files stay in DIR (set<k>/seed<s>/<model>/).

Seeds of the lab runs (set k = 1..99; no seed is used twice, by any family):
  family A training    100k + 1 .. 100k + N      (set 1: 101..)
  family A validation  100k + 91 .. 100k + 90+V  (set 1: 191..)
  family B test        1000 + 100k + 1 ..        (set 1: 1101..)
  family C test        2000 + 100k + 1 ..        (set 1: 2101..)
Sets 10-99 add 10000 to A's, 20000 - 1000 to B's and 30000 - 2000 to C's (set 10: A 11001..,
B 21001.., C 31001..), so that no seed of one family is another's.
Training seeds: 1..S. Nothing is chosen on B or C: the only choice made from data (the int8
drop margin, where `npk train` offers --validation) uses the set's A validation run.

  --sets K          recording sets (default 3; set numbers at most 99)
  --first-set F     number the sets F..F+K-1 (default 1): fresh seeds for a change made
                    after reading an earlier protocol's result
  --seeds S         training seeds per set (default 3)
  --train-runs N    family-A training runs per set (default 8, at most 89)
  --val-runs V      family-A validation runs per set, held out of training (default 1, at most 9)
  --test-runs N     family-B runs and family-C runs per set (default 1 each, at most 99)
  --seconds S       length of each training run (default 10)
  --test-seconds S  length of each validation and test run (default 1.5 x --seconds)
  --hidden H        the MLP's hidden layers (default 32,32)
  --epochs E        training epochs, both models (default 20)
  --baseline H      the baseline's hidden layers (default none: linear)
  --max-benign-drop R
                    passed to `npk train` (where it has the option) with the validation run
  --dir DIR         where runs, CSVs, models and results go (default $TMPDIR/npk-heldout)
  --npk PATH        the npk binary (default target/release/npk)
  --reuse           keep the pcaps and manifests already in DIR (features are recomputed);
                    without it every run is recorded anew
  --strict          exit with status 3 when a threshold fails
  -h, --help        this text

Thresholds (the MLP, int8 as the kernel computes, each test family; worst case over all runs):
overall accuracy >= 0.95, every attack scenario detected >= 0.90, benign packets dropped <= 0.1%.
Where `npk eval --json` reports `quantized.dropped` (the rows the kernel drops with a confident
margin), detection and benign drops are taken from it, and "predicted attack" is shown beside.
USAGE
}

die() { echo "heldout: $*" >&2; exit 2; }
# A whole number in [min, max].
int_opt() { # option value min max
    [[ $2 =~ ^[0-9]+$ ]] && [ "$2" -ge "$3" ] && [ "$2" -le "$4" ] ||
        die "$1 '$2': expected a whole number from $3 to $4"
}
pos_opt() { # option value: a positive number of seconds
    [[ $2 =~ ^[0-9]+([.][0-9]+)?$ ]] && awk -v v="$2" 'BEGIN { exit !(v > 0) }' ||
        die "$1 '$2': expected a positive number of seconds"
}

sets=3 first_set=1 seeds=3 train_runs=8 val_runs=1 test_runs=1 seconds=10 test_seconds=
hidden=32,32 epochs=20 baseline=none max_benign_drop= reuse=0 strict=0
dir=${TMPDIR:-/tmp}/npk-heldout
npk=$(dirname "$0")/../target/release/npk
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --reuse) reuse=1; shift; continue ;;
    --strict) strict=1; shift; continue ;;
    --sets | --first-set | --seeds | --train-runs | --val-runs | --test-runs | --seconds | --test-seconds | \
        --hidden | --epochs | --baseline | --max-benign-drop | --dir | --npk)
        [ $# -ge 2 ] || die "$1 needs a value" ;;&
    --sets) int_opt "$1" "$2" 1 99; sets=$2 ;;
    --first-set) int_opt "$1" "$2" 1 99; first_set=$2 ;;
    --seeds) int_opt "$1" "$2" 1 1000; seeds=$2 ;;
    --train-runs) int_opt "$1" "$2" 1 89; train_runs=$2 ;;
    --val-runs) int_opt "$1" "$2" 1 9; val_runs=$2 ;;
    --test-runs) int_opt "$1" "$2" 1 99; test_runs=$2 ;;
    --seconds) pos_opt "$1" "$2"; seconds=$2 ;;
    --test-seconds) pos_opt "$1" "$2"; test_seconds=$2 ;;
    --hidden) hidden=$2 ;;
    --epochs) int_opt "$1" "$2" 1 100000; epochs=$2 ;;
    --baseline) baseline=$2 ;;
    --max-benign-drop) max_benign_drop=$2 ;;
    --dir) dir=$2 ;;
    --npk) npk=$2 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift 2
done
[ -n "$test_seconds" ] || test_seconds=$(awk -v s="$seconds" 'BEGIN { print s * 1.5 }')
[ -x "$npk" ] || { echo "heldout: $npk not found: cargo build --release first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || [ "$reuse" = 1 ] ||
    die "records real traffic in network namespaces: run as root (sudo bash $0 ...)"
command -v python3 >/dev/null || die "needs python3 (standard library only)"
# Options of `npk train` that another version may lack: used only where --help names them.
train_help=$("$npk" train --help)
has_validation=0
grep -q -- '--validation' <<<"$train_help" && has_validation=1
if [ -n "$max_benign_drop" ] && ! grep -q -- '--max-benign-drop' <<<"$train_help"; then
    die "--max-benign-drop: $npk train has no --max-benign-drop"
fi

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
log=$dir/log.txt
: >"$log"
# Both layer lists, checked against npk's limits before minutes of recording (on iris).
iris=$(dirname "$0")/../data/iris.csv
if [ -f "$iris" ]; then
    for layers in "$hidden" "$baseline"; do
        "$npk" train --data "$iris" --hidden "$layers" --epochs 1 --out "$dir/check.npk" \
            --json >/dev/null 2>"$dir/check.txt" ||
            die "--hidden/--baseline '$layers': $(tail -n1 "$dir/check.txt")"
    done
    rm -f "$dir/check.npk" "$dir/check.txt"
fi
trap 'rc=$?; [ "$rc" = 0 ] || { echo "heldout: failed (exit $rc); the last lines of $log:" >&2; tail -n 20 "$log" >&2; }' EXIT
start=$SECONDS
say() { echo "heldout: [$((SECONDS - start)) s] $*" >&2; }

scenarios=(web-small web-keepalive web-large slow-client dns bulk-tcp bulk-udp ping
    syn-flood udp-flood icmp-flood scan-syn scan-connect scan-stealth scan-udp)

# One lab run (unless reused), then its labelled features from the pcap.
run() { # family seed seconds
    local name="$dir/$1-$2"
    if [ "$reuse" = 1 ] && [ -f "$name.pcap" ] && [ -f "$name.json" ]; then
        say "reusing $1-$2"
    else
        say "recording $1-$2 ($3 s)"
        rm -f "$name.pcap" "$name.json"
        nice -n 10 "$npk" gen --lab tools --family "$1" --seed "$2" --seconds "$3" \
            --pcap "$name.pcap" --out "$name.kernel.csv" --manifest "$name.json" --json \
            >>"$log" 2>&1
    fi
    "$npk" features --pcap "$name.pcap" --manifest "$name.json" --out "$name.csv" --json \
        >>"$log" 2>&1
}
# Per scenario: its rows of one run (features computed over the whole capture).
per_scenario() { # family seed
    local name="$dir/$1-$2" s
    for s in "${scenarios[@]}"; do
        "$npk" features --pcap "$name.pcap" --manifest "$name.json" --only "$s" \
            --out "$name.$s.csv" --json >>"$log" 2>&1
    done
}
# Concatenates CSVs with one header.
concat() { # out in...
    local out=$1; shift
    head -n1 "$1" >"$out"
    for f in "$@"; do tail -n +2 "$f" >>"$out"; done
}
rows() { echo $(($(wc -l <"$1") - 1)); }
# `npk eval --json`'s last line into a file.
evaluate() { # model csv out.json
    "$npk" eval --model "$1" --data "$2" --json 2>>"$log" | tail -n1 >"$3"
}

say "protocol: $sets sets x $seeds training seeds; per set $train_runs A training runs of" \
    "$seconds s, $val_runs A validation, $test_runs B and $test_runs C runs of $test_seconds s;" \
    "npk train --validation: $([ "$has_validation" = 1 ] && echo yes || echo "not offered")"
last_set=$((first_set + sets - 1))
[ "$last_set" -le 99 ] || die "--first-set $first_set with --sets $sets numbers sets up to $last_set: at most 99"
# The first seed of a family's runs in set k: sets 1-9 as numbered since the first protocol,
# sets 10-99 in ranges of their own (A 11001-19999, B 21001-29999, C 31001-39999).
family_base() { # family set
    local f=$1 k=$2 offset
    case "$f" in a) offset=0 ;; b) offset=1 ;; c) offset=2 ;; esac
    if [ "$k" -le 9 ]; then
        echo $((1000 * offset + 100 * k))
    else
        echo $((10000 * (offset + 1) + 100 * k))
    fi
}
for k in $(seq "$first_set" "$last_set"); do
    set_dir="$dir/set$k"
    rm -rf "$set_dir"
    mkdir -p "$set_dir"
    train=() val=()
    for i in $(seq 1 "$train_runs"); do
        run a $(($(family_base a "$k") + i)) "$seconds"
        train+=("$dir/a-$(($(family_base a "$k") + i)).csv")
    done
    for v in $(seq 1 "$val_runs"); do
        run a $(($(family_base a "$k") + 90 + v)) "$test_seconds"
        val+=("$dir/a-$(($(family_base a "$k") + 90 + v)).csv")
    done
    concat "$set_dir/train.csv" "${train[@]}"
    concat "$set_dir/val.csv" "${val[@]}"
    for fam in b c; do
        base=$(family_base "$fam" "$k")
        test=()
        for i in $(seq 1 "$test_runs"); do
            seed=$((base + i))
            run "$fam" "$seed" "$test_seconds"
            per_scenario "$fam" "$seed"
            test+=("$dir/$fam-$seed.csv")
        done
        concat "$set_dir/test-$fam.csv" "${test[@]}"
        for s in "${scenarios[@]}"; do
            files=()
            for i in $(seq 1 "$test_runs"); do files+=("$dir/$fam-$((base + i)).$s.csv"); done
            concat "$set_dir/test-$fam.$s.csv" "${files[@]}"
        done
    done
    say "set $k: $(rows "$set_dir/train.csv") training rows, $(rows "$set_dir/val.csv") validation," \
        "$(rows "$set_dir/test-b.csv") B and $(rows "$set_dir/test-c.csv") C test rows"

    for seed in $(seq 1 "$seeds"); do
        for model in mlp linear; do
            out="$set_dir/seed$seed/$model"
            mkdir -p "$out"
            layers=$([ "$model" = mlp ] && echo "$hidden" || echo "$baseline")
            extra=()
            [ "$has_validation" = 1 ] && extra+=(--validation "$set_dir/val.csv")
            [ -n "$max_benign_drop" ] && extra+=(--max-benign-drop "$max_benign_drop")
            say "set $k seed $seed: training $model (--hidden $layers)"
            "$npk" train --data "$set_dir/train.csv" --hidden "$layers" --epochs "$epochs" \
                --batch 64 --optimizer adam --lr 0.005 --seed "$seed" --test-split 0.1 \
                "${extra[@]}" --out "$out/model.npk" --json 2>>"$log" | tail -n1 >"$out/train.json"
            evaluate "$out/model.npk" "$set_dir/val.csv" "$out/eval-val.json"
            for fam in b c; do
                evaluate "$out/model.npk" "$set_dir/test-$fam.csv" "$out/eval-$fam.json"
                for s in "${scenarios[@]}"; do
                    rm -f "$out/eval-$fam.$s.json"
                    [ "$(rows "$set_dir/test-$fam.$s.csv")" -gt 0 ] || continue
                    evaluate "$out/model.npk" "$set_dir/test-$fam.$s.csv" "$out/eval-$fam.$s.json"
                done
            done
        done
    done
done
say "scoring"
# From here a failure is Python's own traceback (or --strict's status 3), not a step's log.
trap - EXIT

DIR="$dir" SETS="$sets" FIRST_SET="$first_set" SEEDS="$seeds" SCENARIOS="${scenarios[*]}" STRICT="$strict" \
    ELAPSED=$((SECONDS - start)) PROTOCOL="$(printf '{"sets":%s,"first_set":%s,"seeds":%s,"train_runs":%s,"val_runs":%s,"test_runs":%s,"seconds":%s,"test_seconds":%s,"hidden":"%s","baseline_hidden":"%s","epochs":%s,"validation_passed":%s,"reuse":%s}' \
    "$sets" "$first_set" "$seeds" "$train_runs" "$val_runs" "$test_runs" "$seconds" "$test_seconds" \
    "$hidden" "$baseline" "$epochs" "$([ "$has_validation" = 1 ] && echo true || echo false)" \
    "$([ "$reuse" = 1 ] && echo true || echo false)")" \
    python3 - <<'PY' >"$dir/summary.txt" || rc=$?
import json, os, sys

DIR = os.environ["DIR"]
SETS, SEEDS = int(os.environ["SETS"]), int(os.environ["SEEDS"])
FIRST_SET = int(os.environ["FIRST_SET"])
SCENARIOS = os.environ["SCENARIOS"].split()
PROTOCOL = json.loads(os.environ["PROTOCOL"])
CLASSES = ["benign", "syn_flood", "udp_flood", "port_scan", "icmp_flood"]
LABEL = {"syn-flood": 1, "udp-flood": 2, "icmp-flood": 4,
         "scan-syn": 3, "scan-connect": 3, "scan-stealth": 3, "scan-udp": 3}
MODELS = ["mlp", "linear"]
FAMILIES = {"B": ["b"], "C": ["c"], "B+C": ["b", "c"]}
THRESHOLDS = {"min_accuracy": 0.95, "min_detection": 0.90, "max_benign_dropped": 0.001}
KINDS = {"int8": "quantized", "float": "float"}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def add(m, n):
    return [[a + b for a, b in zip(r, s)] for r, s in zip(m, n)]


def merge(evals):
    """One eval object from several (the same model on disjoint rows)."""
    evals = [e for e in evals if e]
    if not evals:
        return None
    out = {"samples": sum(e["samples"] for e in evals),
           "agreement": sum(e["agreement"] * e["samples"] for e in evals)
           / max(1, sum(e["samples"] for e in evals))}
    for kind in KINDS.values():
        conf = evals[0][kind]["confusion"]
        for e in evals[1:]:
            conf = add(conf, e[kind]["confusion"])
        out[kind] = {"confusion": conf}
        drops = [e[kind].get("dropped") for e in evals]
        if all(d is not None for d in drops):
            out[kind]["dropped"] = [sum(x) for x in zip(*drops)]
    return out


def ratio(a, b):
    return a / b if b else None


def overall(e, into):
    """Overall metrics of one eval (possibly merged) into the flat dict `into`."""
    into["rows"] = e["samples"]
    into["agreement"] = e["agreement"]
    for name, kind in KINDS.items():
        c = e[kind]["confusion"]
        n = len(c)
        into[f"accuracy.{name}"] = ratio(sum(c[i][i] for i in range(n)), sum(map(sum, c)))
        into[f"benign_dropped.{name}"] = ratio(sum(c[0]) - c[0][0], sum(c[0]))
        if "dropped" in e[kind]:
            into[f"benign_dropped_confident.{name}"] = ratio(e[kind]["dropped"][0], sum(c[0]))
        for i, cls in enumerate(CLASSES[:n]):
            tp, support = c[i][i], sum(c[i])
            predicted = sum(row[i] for row in c)
            p, r = ratio(tp, predicted), ratio(tp, support)
            f1 = None if p is None or r is None else (2 * p * r / (p + r) if p + r else 0.0)
            into[f"class.{cls}.precision.{name}"] = p
            into[f"class.{cls}.recall.{name}"] = r
            into[f"class.{cls}.f1.{name}"] = f1


def scenario(s, e, into):
    label = LABEL.get(s, 0)
    into[f"scenario.{s}.rows"] = e["samples"]
    into[f"scenario.{s}.agreement"] = e["agreement"]
    what = "detected" if label else "dropped"
    for name, kind in KINDS.items():
        row = e[kind]["confusion"][label]
        n = sum(row)
        into[f"scenario.{s}.correct.{name}"] = ratio(row[label], n)
        into[f"scenario.{s}.{what}.{name}"] = ratio(n - row[0], n)
        if "dropped" in e[kind]:
            into[f"scenario.{s}.{what}_confident.{name}"] = ratio(e[kind]["dropped"][label], n)


def lower_is_better(key):
    return "dropped" in key


# runs[model][family] = list of flat dicts, one per (set, seed).
runs = {m: {f: [] for f in list(FAMILIES) + ["A-val"]} for m in MODELS}
drop_margin = {m: [] for m in MODELS}
for k in range(FIRST_SET, FIRST_SET + SETS):
    for seed in range(1, SEEDS + 1):
        for m in MODELS:
            base = f"{DIR}/set{k}/seed{seed}/{m}"
            val = load(f"{base}/eval-val.json")
            if val is not None:
                if val.get("drop_margin") is not None:
                    drop_margin[m].append(val["drop_margin"])
                flat = {"set": k, "seed": seed}
                overall(merge([val]), flat)
                runs[m]["A-val"].append(flat)
            for fam, parts in FAMILIES.items():
                whole = merge([load(f"{base}/eval-{p}.json") for p in parts])
                if whole is None:
                    continue
                flat = {"set": k, "seed": seed}
                overall(whole, flat)
                for s in SCENARIOS:
                    e = merge([load(f"{base}/eval-{p}.{s}.json") for p in parts])
                    if e is not None:
                        scenario(s, e, flat)
                runs[m][fam].append(flat)
                with open(f"{base}/metrics-{fam.replace('+', '')}.json", "w") as f:
                    json.dump(flat, f)


def aggregate(flats):
    keys = sorted({k for f in flats for k in f if k not in ("set", "seed")})
    out = {}
    for key in keys:
        vals = [f[key] for f in flats if f.get(key) is not None]
        if not vals:
            continue
        worst = max(vals) if lower_is_better(key) else min(vals)
        where = next(f for f in flats if f.get(key) == worst)
        out[key] = {"mean": sum(vals) / len(vals), "worst": worst, "runs": len(vals),
                    "worst_run": {"set": where["set"], "seed": where["seed"]}}
    return out


results = {m: {f: aggregate(fl) for f, fl in fams.items()} for m, fams in runs.items()}
confident = any(k.startswith("benign_dropped_confident") for m in results.values()
                for fam in m.values() for k in fam)


def cell(agg, key, pct=False):
    v = agg.get(key)
    if v is None:
        return "-"
    if pct:
        return f"{v['mean']:.2%}/{v['worst']:.2%}"
    return f"{v['mean']:.4f}/{v['worst']:.4f}"


n_runs = SETS * SEEDS
w = 15
print(f"\nheld-out protocol: {SETS} recording sets x {SEEDS} training seeds = {n_runs} runs per model;"
      f" cells are MEAN/WORST over the runs (worst: lowest, or highest for drop rates)")
print(f"MLP --hidden {PROTOCOL['hidden']}, baseline --hidden {PROTOCOL['baseline_hidden']}"
      f" (linear), {PROTOCOL['epochs']} epochs; "
      + ("drop margin chosen on the A validation run" if PROTOCOL["validation_passed"]
         else "npk train has no --validation: no drop margin"))
for fam in list(FAMILIES) + ["A-val"]:
    title = {"A-val": "family A validation run (held out of training; in-family reference)",
             "B+C": "test families B and C together"}.get(fam, f"test family {fam}")
    print(f"\n== {title} ==")
    cols = [(m, k) for m in MODELS for k in KINDS]
    print(f"{'':<24}" + "".join(f"{m + ' ' + k:>{w + 1}}" for m, k in cols))
    rows = [("rows", "rows", False), ("accuracy", "accuracy.{k}", False),
            ("int8/float agreement", "agreement", False),
            ("benign dropped", "benign_dropped.{k}", True)]
    if confident:
        rows.append(("benign dropped (conf.)", "benign_dropped_confident.{k}", True))
    for cls in CLASSES:
        for what in ("precision", "recall", "f1"):
            rows.append((f"{cls} {what[0].upper() if what != 'f1' else 'F1'}",
                         f"class.{cls}.{what}.{{k}}", False))
    for label, pattern, pct in rows:
        line = f"{label:<24}"
        for m, k in cols:
            agg = results[m][fam]
            if pattern == "rows":
                v = agg.get("rows")
                txt = f"{v['mean']:.0f}/{v['worst']:.0f}" if v and k == "int8" else ""
            elif pattern == "agreement":
                txt = cell(agg, "agreement") if k == "int8" else ""
            else:
                txt = cell(agg, pattern.format(k=k), pct)
            line += f"{txt:>{w + 1}}"
        print(line)
    if fam == "A-val":
        continue
    for m in MODELS:
        heads = ["correct int8", "det/drop int8"] + (["confident int8"] if confident else []) \
            + ["correct float", "det/drop float", "agreement"]
        print(f"\n{m + ', per scenario':<22}" + "".join(f"{h:>{w + 1}}" for h in heads))
        for s in SCENARIOS:
            what = "detected" if s in LABEL else "dropped"
            pct = s not in LABEL
            keys = [(f"scenario.{s}.correct.int8", False), (f"scenario.{s}.{what}.int8", pct)]
            if confident:
                keys.append((f"scenario.{s}.{what}_confident.int8", pct))
            keys += [(f"scenario.{s}.correct.float", False), (f"scenario.{s}.{what}.float", pct),
                     (f"scenario.{s}.agreement", False)]
            print(f"{s:<15}{'attack' if s in LABEL else 'benign':>7}"
                  + "".join(f"{cell(results[m][fam], key, p):>{w + 1}}" for key, p in keys))
    print("(det/drop: an attack scenario's rows detected, i.e. called any attack class and so "
          "dropped; a benign scenario's rows dropped)")

# The thresholds: the MLP, int8, each test family, the worst case over all runs.
suffix = "_confident" if confident else ""
checks = []
for m in MODELS:
    for fam in ("B", "C"):
        agg = results[m][fam]
        acc = agg.get("accuracy.int8")
        det = [(agg[f"scenario.{s}.detected{suffix}.int8"]["worst"], s)
               for s in LABEL if f"scenario.{s}.detected{suffix}.int8" in agg]
        missing = [s for s in LABEL if f"scenario.{s}.detected{suffix}.int8" not in agg]
        drop = agg.get(f"benign_dropped{suffix}.int8")
        for name, value, ok, where in [
            ("accuracy >= 0.95", acc["worst"] if acc else None,
             acc is not None and acc["worst"] >= THRESHOLDS["min_accuracy"], ""),
            ("every attack detected >= 0.90", min(det)[0] if det else None,
             bool(det) and len(det) == len(LABEL) and min(det)[0] >= THRESHOLDS["min_detection"],
             ", ".join(([min(det)[1]] if det else []) + [f"no rows of {s}" for s in missing])),
            ("benign dropped <= 0.1%", drop["worst"] if drop else None,
             drop is not None and drop["worst"] <= THRESHOLDS["max_benign_dropped"], ""),
        ]:
            checks.append({"model": m, "family": fam, "check": name, "worst": value,
                           "pass": bool(ok), "where": where})
print(f"\nthresholds (int8 as the kernel computes{', confident drops' if confident else ''};"
      f" worst case over the {n_runs} runs of each test family):")
for c in checks:
    v = c["worst"]
    shown = "-" if v is None else (f"{v:.3%}" if "dropped" in c["check"] else f"{v:.4f}")
    tag = "PASS" if c["pass"] else "FAIL"
    note = " (baseline, for comparison)" if c["model"] != "mlp" else ""
    where = f" [{c['where']}]" if c["where"] else ""
    print(f"  {tag}  {c['model']:<6} {c['family']}: {c['check']:<30} worst {shown}{where}{note}")
passed = all(c["pass"] for c in checks if c["model"] == "mlp")
print(f"protocol {'PASS' if passed else 'FAIL'} (the MLP; {os.environ['ELAPSED']} s; "
      f"per-run files in {DIR}/set*/seed*/)")
summary = {
    "protocol": PROTOCOL,
    "thresholds": THRESHOLDS,
    "confident_drops": confident,
    "drop_margin": drop_margin if any(drop_margin.values()) else None,
    "pass": passed,
    "checks": checks,
    "results": results,
    "seconds": int(os.environ["ELAPSED"]),
}
with open(f"{DIR}/summary.json", "w") as f:
    json.dump(summary, f)
# The last line: the same, each metric as its mean and worst case only (summary.json also has
# the number of runs and which run was the worst).
summary["results"] = {m: {fam: {k: {"mean": round(v["mean"], 6), "worst": round(v["worst"], 6)}
                                for k, v in agg.items()} for fam, agg in fams.items()}
                      for m, fams in results.items()}
print(json.dumps(summary, separators=(",", ":")))
if os.environ["STRICT"] == "1" and not passed:
    sys.exit(3)
PY
cat "$dir/summary.txt"
exit "${rc:-0}"
