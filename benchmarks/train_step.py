"""needle's training step against the numpy floor, timed side by side in the same process.

The model is a 784-256-128-10 ReLU MLP with softmax loss and plain SGD, in float32. The
floor is the same step written by hand in numpy: forward, backward and update, no
framework. Everything needle spends above it is its own overhead (graph building, Python
dispatch, copies). Runs alternate between the two so drift on a busy machine hits both
alike; the ratio is of the medians.

Each side starts from a batch in the form its data pipeline delivers: numpy arrays for the
floor, the Tensors `needle.data.DataLoader` yields for needle (it wraps the arrays its
fancy-indexing made, without a second copy). A loop that instead wraps numpy arrays itself
with `ndl.Tensor(x)` pays a copy of each batch (the course's semantics: the tensor must not
change when the caller's array does); the `wrap us` column measures that copy.

The allocator matters: with glibc's default malloc, a step whose temporaries are freed
before the next one can hand its heap top back to the kernel and fault it in again
(hundreds of page faults a step at batch 512). The table shows page faults per step for
both sides; `--allocator tuned` reruns with trimming and mmap off (MALLOC_TRIM_THRESHOLD_,
MALLOC_MMAP_THRESHOLD_), which takes that effect out of both.

    python benchmarks/train_step.py                 # batches 32, 128, 512, default malloc
    python benchmarks/train_step.py --allocator tuned
    python benchmarks/train_step.py --batch-sizes 128 --processes 9 --json
    PYTHONPATH=/path/to/other/checkout python benchmarks/train_step.py   # another version

Each batch size is measured in fresh processes (7 by default, taking turns with the other
sizes): the allocator's state depends on everything the process did before, and a row
measured after another inherits that history. Each process also shifts its heap by a
seeded amount first (`shift_heap`), so the processes sample heap layouts. The table gives
the median over processes and the range of their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _harness import TUNED_MALLOC, alternate, shift_heap, summarize

# Appended, not prepended: PYTHONPATH can point at another checkout to compare versions.
sys.path.append(str(Path(__file__).resolve().parents[1]))

import needle as ndl  # noqa: E402
from needle import data, nn, optim  # noqa: E402

SIZES = (784, 256, 128, 10)
LR = 0.01


def make_data(batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.random((batch_size, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], batch_size).astype(np.uint8)
    return x, y


class NeedleStep:
    """The step as a needle user writes it: modules, SoftmaxLoss, SGD."""

    def __init__(self) -> None:
        self.model = nn.Sequential(
            nn.Linear(SIZES[0], SIZES[1]),
            nn.ReLU(),
            nn.Linear(SIZES[1], SIZES[2]),
            nn.ReLU(),
            nn.Linear(SIZES[2], SIZES[3]),
        )
        self.loss_fn = nn.SoftmaxLoss()
        self.opt = optim.SGD(self.model.parameters(), lr=LR)

    def weights(self) -> list[np.ndarray]:
        return [p.numpy().copy() for p in self.model.parameters()]

    def __call__(self, x: ndl.Tensor, y: ndl.Tensor) -> float:
        self.opt.reset_grad()
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.opt.step()
        return float(loss.numpy())


class NumpyStep:
    """The floor: the same forward, backward and SGD update written directly in numpy."""

    def __init__(self, weights: list[np.ndarray]) -> None:
        self.params = [w.copy() for w in weights]  # W1, b1, W2, b2, W3, b3; b of shape (1, n)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> float:
        w1, b1, w2, b2, w3, b3 = self.params
        n = x.shape[0]
        z1 = x @ w1 + b1
        a1 = np.maximum(z1, 0)
        z2 = a1 @ w2 + b2
        a2 = np.maximum(z2, 0)
        z3 = a2 @ w3 + b3
        shifted = z3 - z3.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, y]))
        dz3 = exp / total
        dz3[rows, y] -= 1
        dz3 /= n
        dz2 = (dz3 @ w3.T) * (z2 > 0)
        dz1 = (dz2 @ w2.T) * (z1 > 0)
        grads = [
            x.T @ dz1, dz1.sum(axis=0, keepdims=True),
            a1.T @ dz2, dz2.sum(axis=0, keepdims=True),
            a2.T @ dz3, dz3.sum(axis=0, keepdims=True),
        ]  # fmt: skip
        for p, g in zip(self.params, grads, strict=True):
            p -= LR * g
        return loss


def time_wrap(batches, steps: int) -> float:
    """Seconds to wrap one numpy batch as a user loop would: `ndl.Tensor(x)`, `ndl.Tensor(y)`."""
    start = time.perf_counter()
    for k in range(steps):
        x, y = batches[k % len(batches)]
        ndl.Tensor(x, requires_grad=False), ndl.Tensor(y)
    return (time.perf_counter() - start) / steps


def measure(batch_size: int, rounds: int, steps: int, seed: int = 0) -> dict[str, float]:
    np.random.seed(seed)
    rng = np.random.default_rng(seed)
    batches = [make_data(batch_size, rng) for _ in range(8)]
    # The same batches, as needle's DataLoader yields them (in order: no shuffle).
    xs, ys = zip(*batches, strict=True)
    dataset = data.NDArrayDataset(np.concatenate(xs), np.concatenate(ys))
    tensor_batches = list(data.DataLoader(dataset, batch_size=batch_size))
    needle_step = NeedleStep()
    numpy_step = NumpyStep(needle_step.weights())
    # Same model, same data: both sides must compute the same losses.
    first = [needle_step(*tensor_batches[0]), numpy_step(*batches[0])]
    if not np.isclose(first[0], first[1], rtol=1e-4):
        raise AssertionError(f"needle loss {first[0]} != numpy loss {first[1]}")
    timed = alternate(needle_step, numpy_step, tensor_batches, batches, rounds, steps)
    # Timed after the steps: its batch-sized copies would change the heap both steps share.
    wraps = [time_wrap(batches, steps) for _ in range(rounds)]
    return {"batch_size": batch_size, **timed, "wrap_us": statistics.median(wraps) * 1e6}


def in_fresh_process(batch_size: int, seed: int, args: argparse.Namespace) -> dict[str, float]:
    """One `measure` row from a new Python process, so no row inherits another's heap."""
    command = [sys.executable, __file__, "--one-process", "--json", "--heap-seed", str(seed)]
    command += ["--batch-sizes", str(batch_size), "--rounds", str(args.rounds)]
    command += ["--steps", str(args.steps), "--allocator", args.allocator]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output)["rows"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--rounds", type=int, default=11, help="alternating rounds (median)")
    parser.add_argument("--steps", type=int, default=30, help="steps per round")
    parser.add_argument(
        "--processes", type=int, default=7, help="fresh processes per batch size (median)"
    )
    parser.add_argument("--one-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--heap-seed", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--allocator",
        choices=["default", "tuned"],
        default="default",
        help="tuned: rerun with glibc malloc's trimming and mmap turned off",
    )
    args = parser.parse_args()
    if args.allocator == "tuned" and any(os.environ.get(k) != v for k, v in TUNED_MALLOC.items()):
        # glibc reads these once, at start-up: run again with them set.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **TUNED_MALLOC})
    if args.one_process:
        padding = shift_heap(args.heap_seed) if args.heap_seed is not None else []
        rows = [measure(b, args.rounds, args.steps) for b in args.batch_sizes]
        del padding
    else:
        # Processes take turns between batch sizes, so drift on the machine hits all rows.
        runs: dict[int, list[dict[str, float]]] = {b: [] for b in args.batch_sizes}
        for seed in range(args.processes):
            for b in args.batch_sizes:
                runs[b].append(in_fresh_process(b, seed, args))
        rows = [summarize(runs[b]) for b in args.batch_sizes]
    if args.json:
        print(json.dumps({"allocator": args.allocator, "rows": rows}))
        return
    print(f"needle from {Path(ndl.__file__).parent}")
    print(
        f"allocator: {args.allocator} glibc malloc; each row: medians over {args.processes} "
        f"fresh processes of medians over {args.rounds} alternating rounds"
    )
    print(
        f"{'batch':>6} {'needle ms':>10} {'numpy ms':>10} {'ratio':>7} {'range':>12} "
        f"{'needle faults':>14} {'numpy faults':>13} {'wrap us':>8}"
    )
    for row in rows:
        print(
            f"{row['batch_size']:>6.0f} {row['needle_ms']:>10.3f} {row['numpy_ms']:>10.3f} "
            f"{row['ratio']:>6.2f}x {row['ratio_min']:>5.2f}-{row['ratio_max']:.2f}x "
            f"{row['needle_faults']:>14.1f} {row['numpy_faults']:>13.1f} {row['wrap_us']:>8.1f}"
        )


if __name__ == "__main__":
    main()
