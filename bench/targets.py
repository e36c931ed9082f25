#!/usr/bin/env python3
"""The training-speed targets: `npk train --json` against bench/mlp_numpy.py, same network,
batch, epochs, Adam and train split, interleaved run by run; prints the median train_seconds of
each and their ratio.

    python3 bench/targets.py [--npk target/release/npk] [--rounds 5]

The large network runs NumPy with --init numpy (the pure-Python mirror of npk's generator takes
about a minute for 12 million weights; the weights' distribution is the same).
"""

import argparse
import json
import statistics
import subprocess
import sys

TARGETS = [
    # (name, data, hidden, batch, epochs, target ratio)
    ("small 3-4-5, batch 3", "data/iris.csv", "3,4,5", 3, 200, 20.0),
    ("digits 64-128-64, batch 32", "data/digits.csv", "64,128,64", 32, 20, 3.0),
    ("large 1600-2600-1600-2500, batch 10", "data/iris.csv", "1600,2600,1600,2500", 10, 1, 1.2),
]


def train_seconds(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["train_seconds"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--npk", default="target/release/npk")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    ok = True
    for name, data, hidden, batch, epochs, target in TARGETS:
        common = ["--data", data, "--hidden", hidden, "--batch", str(batch),
                  "--epochs", str(epochs), "--optimizer", "adam", "--lr", "0.01",
                  "--seed", "1", "--test-split", "0.2", "--json"]
        init = ["--init", "numpy"] if epochs == 1 else []
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(train_seconds([args.npk, "train", *common]))
            theirs.append(train_seconds([args.python, "bench/mlp_numpy.py", *common, *init]))
        a, b = statistics.median(ours), statistics.median(theirs)
        ratio = b / a
        ok &= ratio >= target
        print(f"{name}: {epochs} epochs, npk {a:.4f} s, NumPy {b:.4f} s (medians of "
              f"{args.rounds}): {ratio:.1f}x (target {target}x)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
