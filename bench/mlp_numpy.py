#!/usr/bin/env python3
"""The MLP of `npk train`, in NumPy: the baseline for npk's training speed.

Same model and training as npk-user/src/train: He init, ReLU hidden layers, softmax
cross-entropy (mean over the batch), mini-batches, SGD with momentum 0.9 or Adam, float32.
The stratified split, the standardization and the initial weights mirror npk bit for bit
(xoshiro256** seeded by splitmix64, Box-Muller normals), so both start from the same weights on
the same rows. The per-epoch shuffle uses NumPy's generator, as a NumPy user would write it, so
the accuracies come out close to npk's, not identical. --exact-shuffle mirrors npk's shuffle in
pure Python (slow: do not time it); the per-epoch losses then match npk's to the printed digits,
which checks both implementations against each other.

    python3 bench/mlp_numpy.py --data data/iris.csv --hidden 16,16 --epochs 100 --batch 16 \
        --lr 0.01 --seed 1 --test-split 0.2 --json

With --json the last line of stdout is {"float_accuracy", "train_seconds", "test_samples",
"epochs"} like `npk train --json`; train_seconds covers the training loop only.

For speed runs (`npk bench train` runs it this way): --init numpy draws the He weights with
NumPy's generator instead of the pure-Python mirror (which takes about a minute for the
12-million-weight network), and --time-infer adds "infer_seconds": --epochs passes of batched
forward passes and argmax over the training rows, in order.
"""

import argparse
import gzip
import json
import math
import re
import sys
import time

import numpy as np

MASK = (1 << 64) - 1


class Rng:
    """Mirror of npk::rng::Rng."""

    def __init__(self, seed):
        x = seed & MASK
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            self.s.append(z ^ (z >> 31))

    def next_u64(self):
        s = self.s
        rotl = lambda v, k: ((v << k) | (v >> (64 - k))) & MASK
        result = (rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def next_f64(self):
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def below(self, n):
        return (self.next_u64() * n) >> 64

    def shuffle(self, items):
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]

    def normal(self):
        u1 = 1.0 - self.next_f64()
        u2 = self.next_f64()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def load_csv(path):
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    return table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)


IDX_IMAGES = re.compile(r"-images-idx3-ubyte(\.gz)?$")


def read_idx(path, magic, dims):
    """The big-endian header's dimensions and the unsigned bytes after it."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    header = np.frombuffer(raw[: 4 * (1 + dims)], dtype=">u4")
    if len(header) != 1 + dims or header[0] != magic:
        sys.exit(f"mlp_numpy.py: {path}: not an IDX file of {dims} dimension(s)")
    data = np.frombuffer(raw[4 * (1 + dims) :], dtype=np.uint8)
    if len(data) != int(np.prod(header[1:], dtype=np.int64)):
        sys.exit(f"mlp_numpy.py: {path}: the header's dimensions do not match the data")
    return header[1:], data


def load_idx(path):
    """An IDX image file (MNIST's format) and the labels beside it, as npk reads them."""
    (count, rows, cols), pixels = read_idx(path, 0x803, 3)
    (labels_count,), labels = read_idx(IDX_IMAGES.sub(r"-labels-idx1-ubyte\1", path), 0x801, 1)
    if labels_count != count:
        sys.exit(f"mlp_numpy.py: {path}: {count} images, {labels_count} labels")
    return pixels.reshape(count, rows * cols).astype(np.float32), labels.astype(np.int64)


def load(path):
    return load_idx(path) if IDX_IMAGES.search(path) else load_csv(path)


def split(labels, test_fraction, seed):
    """Mirror of Dataset::split: per class, a seeded shuffle picks the test rows."""
    rng = Rng(seed)
    train, test = [], []
    for c in range(int(labels.max()) + 1):
        rows = [int(i) for i in np.flatnonzero(labels == c)]
        if not rows:
            continue
        rng.shuffle(rows)
        # Rust's f64::round: half away from zero.
        n_test = min(int(math.floor(len(rows) * test_fraction + 0.5)), len(rows) - 1)
        test += rows[:n_test]
        train += rows[n_test:]
    if not train or not test:
        sys.exit("mlp_numpy.py: a split is empty")
    return np.array(sorted(train)), np.array(sorted(test))


def standardizer(x):
    """Mirror of Standardizer::fit: population std in f64, constant features get 1."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    std = np.sqrt(((x64 - mean) ** 2).mean(axis=0))
    std[x.min(axis=0) == x.max(axis=0)] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def he_init(widths, rng):
    """Mirror of Mlp::new: layer by layer, weights [out][in] in row-major order."""
    layers = []
    for n_in, n_out in zip(widths, widths[1:]):
        scale = math.sqrt(2.0 / n_in)
        w = np.array([rng.normal() * scale for _ in range(n_in * n_out)], dtype=np.float32)
        layers.append([w.reshape(n_out, n_in), np.zeros(n_out, dtype=np.float32)])
    return layers


def he_init_numpy(widths, seed):
    """He init from NumPy's generator: the same distribution as he_init, not the same values."""
    gen = np.random.default_rng(seed)
    return [
        [
            (gen.standard_normal((n_out, n_in)) * math.sqrt(2.0 / n_in)).astype(np.float32),
            np.zeros(n_out, dtype=np.float32),
        ]
        for n_in, n_out in zip(widths, widths[1:])
    ]


def time_inference(layers, x, batch, epochs):
    """Seconds for `epochs` passes of batched prediction over the rows of x."""
    start = time.perf_counter()
    for _ in range(epochs):
        for s in range(0, len(x), batch):
            forward(layers, x[s : s + batch])[-1].argmax(axis=1)
    return time.perf_counter() - start


def forward(layers, x):
    """Activations of every layer; ReLU on all but the last (the logits)."""
    acts = [x]
    for i, (w, b) in enumerate(layers):
        z = acts[-1] @ w.T + b
        acts.append(np.maximum(z, 0.0) if i + 1 < len(layers) else z)
    return acts


def train(layers, x, y, args, rng):
    n, k = len(y), layers[-1][1].shape[0]
    params = [p for layer in layers for p in layer]
    state1 = [np.zeros_like(p) for p in params]
    state2 = [np.zeros_like(p) for p in params]
    b1, b2, eps, mu = np.float32(0.9), np.float32(0.999), np.float32(1e-8), np.float32(0.9)
    lr = np.float32(args.lr)
    shuffler = np.random.default_rng(args.seed)
    exact_order = list(range(n))
    step = 0
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        if args.exact_shuffle:
            # npk shuffles one index vector in place, epoch after epoch.
            rng.shuffle(exact_order)
            order = np.array(exact_order)
        else:
            order = shuffler.permutation(n)
        loss_sum, correct = 0.0, 0
        for s in range(0, n, args.batch):
            idx = order[s : s + args.batch]
            xb, yb = x[idx], y[idx]
            m = len(idx)
            acts = forward(layers, xb)
            z = acts[-1]
            zmax = z.max(axis=1, keepdims=True)
            e = np.exp(z - zmax)
            total = e.sum(axis=1, keepdims=True)
            loss_sum += float((np.log(total[:, 0]) + zmax[:, 0] - z[np.arange(m), yb]).sum())
            correct += int((z.argmax(axis=1) == yb).sum())
            delta = e / total
            delta[np.arange(m), yb] -= 1.0
            delta /= np.float32(m)
            grads = [None] * len(params)
            for li in range(len(layers) - 1, -1, -1):
                w = layers[li][0]
                grads[2 * li] = delta.T @ acts[li]
                grads[2 * li + 1] = delta.sum(axis=0)
                if li > 0:
                    delta = (delta @ w) * (acts[li] > 0)
            step += 1
            if args.optimizer == "adam":
                c1 = np.float32(1.0 / (1.0 - 0.9**step))
                c2 = np.float32(1.0 / (1.0 - 0.999**step))
                for p, g, m1, m2 in zip(params, grads, state1, state2):
                    m1 *= b1
                    m1 += (1 - b1) * g
                    m2 *= b2
                    m2 += (1 - b2) * g * g
                    p -= lr * (m1 * c1) / (np.sqrt(m2 * c2) + eps)
            else:
                for p, g, v in zip(params, grads, state1):
                    v *= mu
                    v += g
                    p -= lr * v
        line = (
            f"epoch {epoch}/{args.epochs}  loss {loss_sum / n:.4f}  "
            f"train acc {correct / n:.4f}  {time.perf_counter() - start:.2f}s"
        )
        print(line, file=sys.stderr if args.json else sys.stdout)
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--hidden", default="16,16")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--test-split", type=float, default=0.2)
    p.add_argument(
        "--test-data", help="rows to test on (CSV or IDX); then all of --data trains"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--exact-shuffle", action="store_true", help="mirror npk's shuffle (slow)")
    p.add_argument(
        "--init",
        choices=["mirror", "numpy"],
        default="mirror",
        help="He weights: npk's generator mirrored in Python (slow for big nets) or NumPy's",
    )
    p.add_argument("--time-infer", action="store_true", help='add "infer_seconds" (see above)')
    args = p.parse_args()

    x, y = load(args.data)
    if args.test_data:
        # npk's order: all rows train; the test file's rows follow them here.
        x_test, y_test = load(args.test_data)
        train_rows = np.arange(len(y))
        test_rows = np.arange(len(y), len(y) + len(y_test))
        x, y = np.concatenate([x, x_test]), np.concatenate([y, y_test])
    else:
        train_rows, test_rows = split(y, args.test_split, args.seed)
    mean, std = standardizer(x[train_rows])
    xs = (x - mean) / std
    hidden = [int(h) for h in args.hidden.split(",")]
    widths = [x.shape[1], *hidden, int(y[train_rows].max()) + 1]
    # npk draws the initial weights and then the shuffles from one generator.
    rng = Rng(args.seed)
    layers = he_init(widths, rng) if args.init == "mirror" else he_init_numpy(widths, args.seed)

    seconds = train(layers, xs[train_rows], y[train_rows], args, rng)
    logits = forward(layers, xs[test_rows])[-1]
    accuracy = float((logits.argmax(axis=1) == y[test_rows]).mean())
    report = {
        "float_accuracy": accuracy,
        "train_seconds": seconds,
        "test_samples": len(test_rows),
        "epochs": args.epochs,
    }
    if args.time_infer:
        report["infer_seconds"] = time_inference(
            layers, xs[train_rows], args.batch, args.epochs
        )
    if args.json:
        print(json.dumps(report))
    else:
        print(f"trained {'-'.join(map(str, widths))} in {seconds:.3f} s")
        print(f"float test accuracy: {accuracy:.4f} ({len(test_rows)} rows)")


if __name__ == "__main__":
    main()
