"""conv_step.py's two sides each alone in a process, with glibc's default malloc and with
`needle.allocator.retain_freed_memory()`: what a training run gets, page faults included.

conv_step.py alternates needle and the floor in one process, which is fairest for their
ratio but hides what each side's own allocation pattern costs: with the floor's arrays in
the same heap, needle's freed graph is not handed back to the kernel, and alone it is, to
be faulted in again on the next step (thousands of faults a step at the MNIST CNN). Here
every (network, batch, side, allocator) runs in fresh processes, taking turns with the
others; each process shifts its heap, warms up for 10 steps, then reports the median of 9
rounds of 3 steps and the page faults a step.

    python benchmarks/alone_step.py --blas-threads 1
    python benchmarks/alone_step.py --networks mnist_cnn --batch-sizes 128 --processes 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

from _harness import median_ms, shift_heap
from conv_step import NETWORKS, setup

SIDES = ("needle", "floor")
ALLOCATORS = ("default", "retained")


def one_process(network: str, batch_size: int, side: str, allocator: str, seed: int) -> dict:
    padding = shift_heap(seed)
    if allocator == "retained":
        from needle.allocator import retain_freed_memory

        if not retain_freed_memory():
            sys.exit("retain_freed_memory() had no effect here (not glibc, or NEEDLE_MALLOC)")
    needle_step, floor_step, tensor_batches, batches = setup(network, batch_size)
    step, inputs = (needle_step, tensor_batches) if side == "needle" else (floor_step, batches)
    median_ms(step, inputs, 3, 3)  # warm-up: caches, threads, the heap's steady state
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ms = median_ms(step, inputs, 9, 3)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / (10 * 3)
    del padding
    return {"ms": ms, "faults": faults}


def run_all(args: argparse.Namespace) -> list[dict]:
    env = dict(os.environ)
    env.pop("NEEDLE_MALLOC", None)
    if args.blas_threads:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(args.blas_threads)
    cases = [
        (net, b, side, alloc)
        for net in args.networks
        for b in args.batch_sizes
        for side in SIDES
        for alloc in ALLOCATORS
    ]
    runs: dict[tuple, list[dict]] = {case: [] for case in cases}
    for seed in range(args.processes):  # the cases take turns, so drift hits them all
        for case in cases:
            command = [sys.executable, __file__, "--one", json.dumps([*case, seed])]
            result = subprocess.run(command, capture_output=True, text=True, env=env)
            if result.returncode:
                sys.exit(f"a measuring process failed:\n{result.stderr.strip()}")
            runs[case].append(json.loads(result.stdout))
    return [
        {
            "network": net,
            "batch_size": b,
            "side": side,
            "allocator": alloc,
            "ms": statistics.median(r["ms"] for r in runs[net, b, side, alloc]),
            "faults": statistics.median(r["faults"] for r in runs[net, b, side, alloc]),
        }
        for net, b, side, alloc in cases
    ]


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(
        f"each side alone in fresh processes; BLAS threads: {args.blas_threads or 'default'}; "
        f"medians over {args.processes} processes of medians over 9 rounds of 3 steps"
    )
    print(f"{'network':>9} {'batch':>5} {'side':>6} {'allocator':>9} {'ms':>8} {'faults':>8}")
    for r in rows:
        print(
            f"{r['network']:>9} {r['batch_size']:>5} {r['side']:>6} {r['allocator']:>9} "
            f"{r['ms']:>8.2f} {r['faults']:>8.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--networks", nargs="+", choices=list(NETWORKS), default=["resnet9", "mnist_cnn"]
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--processes", type=int, default=3, help="fresh processes per case")
    parser.add_argument("--blas-threads", type=int, default=None, help="OpenBLAS threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        network, batch_size, side, allocator, seed = json.loads(args.one)
        print(json.dumps(one_process(network, batch_size, side, allocator, seed)))
        return
    rows = run_all(args)
    if args.json:
        print(json.dumps(rows))
    else:
        print_table(rows, args)


if __name__ == "__main__":
    main()
