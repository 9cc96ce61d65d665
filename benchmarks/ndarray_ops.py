"""NDArray's compact operations against the same numpy call, in one process.

Elementwise add and mul of compact float32 arrays, and matmul of 256×256 and 512×512
matrices, which take the tiled path (8 divides every size); a 500×500 matmul shows the
plain path beside it. NDArray and numpy take turns, round by round; the figure is the
ratio of the medians of the per-call times.

    python benchmarks/ndarray_ops.py            # 15 alternating rounds
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

import needle.backend_ndarray as nd


def per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def cases(rng: np.random.Generator) -> dict[str, tuple[Callable, Callable, int]]:
    """name -> (NDArray call, numpy call, calls per round)."""
    table = {}
    for n in (256, 1024):
        x, y = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        a, b = nd.array(x), nd.array(y)
        calls = 200 if n == 256 else 20
        table[f"add {n}×{n}"] = (lambda a=a, b=b: a + b, lambda x=x, y=y: np.add(x, y), calls)
        table[f"mul {n}×{n}"] = (lambda a=a, b=b: a * b, lambda x=x, y=y: np.multiply(x, y), calls)
    for n, path in ((256, "tiled"), (512, "tiled"), (500, "plain")):
        x, y = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        a, b = nd.array(x), nd.array(y)
        calls = 20 if n == 256 else 5
        table[f"matmul {n}×{n} ({path})"] = (lambda a=a, b=b: a @ b, lambda x=x, y=y: x @ y, calls)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(f"{'operation':<26} {'NDArray µs':>11} {'numpy µs':>10} {'ratio':>7}")
    for name, (ours, reference, calls) in cases(np.random.default_rng(0)).items():
        ours(), reference()  # warm up
        ours_times, reference_times = [], []
        for _ in range(args.rounds):
            ours_times.append(per_call(ours, calls))
            reference_times.append(per_call(reference, calls))
        mine, theirs = statistics.median(ours_times), statistics.median(reference_times)
        print(f"{name:<26} {mine * 1e6:>11.1f} {theirs * 1e6:>10.1f} {mine / theirs:>6.2f}×")


if __name__ == "__main__":
    main()
