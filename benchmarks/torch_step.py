"""PyTorch CPU's training step against the numpy floor, each timed in its own processes.

PyTorch's OpenMP threads keep spinning after each op and take the two cores from numpy's
BLAS threads, so the two are never timed in one process. This script alternates fresh
processes, one timing PyTorch's step and one timing the numpy floor of train_step.py (the
same 784-256-128-10 ReLU MLP, softmax loss, SGD lr 0.01, float32), and reports the ratio
of their medians: the figure to set beside needle's ratios from train_step.py.

Optional: it needs torch, which needle does not. The PyTorch side can run under another
interpreter, such as a virtual environment that has torch:

    python benchmarks/torch_step.py --torch-python /path/to/venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from _harness import median_ms
from train_step import LR, SIZES, NumpyStep, make_data, shift_heap


def torch_step_factory():
    """The step as a PyTorch user writes it, with the benchmark's model and update."""
    import torch

    model = torch.nn.Sequential(
        torch.nn.Linear(SIZES[0], SIZES[1]),
        torch.nn.ReLU(),
        torch.nn.Linear(SIZES[1], SIZES[2]),
        torch.nn.ReLU(),
        torch.nn.Linear(SIZES[2], SIZES[3]),
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def step(x, y) -> float:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    def convert(x, y):
        return torch.from_numpy(x), torch.from_numpy(y.astype("int64"))

    return step, convert


def numpy_step_factory():
    import numpy as np

    rng = np.random.default_rng(1)
    weights = []
    for fan_in, fan_out in zip(SIZES, SIZES[1:], strict=False):
        bound = 1 / np.sqrt(fan_in)
        weights.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32))
        weights.append(rng.uniform(-bound, bound, (1, fan_out)).astype(np.float32))
    return NumpyStep(weights), lambda x, y: (x, y)


def time_one_side(side: str, batch_size: int, rounds: int, steps: int) -> float:
    """Median milliseconds per step of one side, in this process."""
    import numpy as np

    step, convert = (torch_step_factory if side == "torch" else numpy_step_factory)()
    rng = np.random.default_rng(0)
    batches = [convert(*make_data(batch_size, rng)) for _ in range(8)]
    return median_ms(step, batches, rounds, steps)


def run_side(python: str, side: str, batch_size: int, seed: int, args: argparse.Namespace) -> float:
    command = [python, __file__, "--side", side, "--batch-sizes", str(batch_size)]
    command += ["--heap-seed", str(seed)]
    command += ["--rounds", str(args.rounds), "--steps", str(args.steps)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(json.loads(output)["ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--processes", type=int, default=7, help="alternating process pairs")
    parser.add_argument("--torch-python", default=sys.executable, help="interpreter with torch")
    parser.add_argument("--side", choices=["torch", "numpy"], help=argparse.SUPPRESS)
    parser.add_argument("--heap-seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        padding = shift_heap(args.heap_seed)  # as in train_step.py: sample heap layouts
        ms = time_one_side(args.side, args.batch_sizes[0], args.rounds, args.steps)
        del padding
        print(json.dumps({"ms": ms}))
        return
    print(f"medians over {args.processes} alternating pairs of fresh processes")
    print(f"{'batch':>6} {'torch ms':>9} {'numpy ms':>9} {'ratio':>7}")
    for b in args.batch_sizes:
        torch_ms, numpy_ms = [], []
        for seed in range(args.processes):
            numpy_ms.append(run_side(sys.executable, "numpy", b, seed, args))
            torch_ms.append(run_side(args.torch_python, "torch", b, seed, args))
        t, n = statistics.median(torch_ms), statistics.median(numpy_ms)
        print(f"{b:>6} {t:>9.3f} {n:>9.3f} {t / n:>6.2f}x")


if __name__ == "__main__":
    main()
