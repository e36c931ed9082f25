#!/usr/bin/env bash
# The main job until `npk demo` exists: set up, then train, quantize and evaluate on the bundled
# datasets, inspect the model, check the kernel classifier bit for bit and time it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
npk=target/release/npk
mkdir -p out
$npk train --data data/iris.csv --hidden 16,16 --epochs 100 --batch 16 --optimizer adam --lr 0.01 \
    --seed 1 --test-split 0.2 --out out/iris.npk
$npk train --data data/digits.csv --hidden 64,32 --epochs 50 --batch 32 --optimizer adam --lr 0.01 \
    --seed 1 --test-split 0.2 --out out/digits.npk
$npk eval --model out/digits.npk --data data/digits.csv
$npk inspect out/digits.npk
$npk verify --hidden 16,16 --packets 100000
$npk bench infer --hidden 16,16
