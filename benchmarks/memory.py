"""Peak memory of a training run, epoch by epoch: the benchmark MLP on data of MNIST's size,
or ResNet-9 on CIFAR-shaped images against conv_step.py's numpy floor.

`--model mlp` (the default) trains the benchmark MLP (784-256-128-10, ReLU, SGD, batch 128,
float32) with `needle.train.epoch` on MNIST's idx files if a folder of them is given, else on
random data of the same size (60,000 × 784 float32 images, 188 MB). `--model resnet9` trains
the course's ResNet-9 (`needle.models.ResNet9`, SGD lr 0.01, batch 128) the same way on
`--images` random 3×32×32 images (2,560 by default, 31 MB), then, in a fresh process (so that
its peak is its own), the same number of epochs of conv_step.py's `FloorStep`, built from the
same initial weights, over shuffled batches of the same images.

After each epoch it reports the process's resident memory now and its peak so far, and, for
needle, the live tensor count, read without running the garbage collector (a graph freed
only by the collector would show up as a growing count): a flat line means no leak.

    python benchmarks/memory.py --epochs 5
    python benchmarks/memory.py --mnist data/mnist --epochs 3
    python benchmarks/memory.py --model resnet9 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from needle import autograd, models, nn, optim  # noqa: E402
from needle.data import DataLoader, MNISTDataset, NDArrayDataset  # noqa: E402
from needle.train import epoch  # noqa: E402

CIFAR_IMAGE = (3, 32, 32)
LR = 0.01  # conv_step.py's SGD


def rss_mb() -> float:
    """Resident set size now, from /proc (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def random_data(n: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """n seeded uniform float32 images of `shape` and labels in [0, 10)."""
    rng = np.random.default_rng(0)
    return rng.random((n, *shape), dtype=np.float32), rng.integers(0, 10, n).astype(np.uint8)


def dataset(args: argparse.Namespace):
    if args.model == "resnet9":
        return NDArrayDataset(*random_data(args.images, CIFAR_IMAGE))
    if args.mnist:
        folder = Path(args.mnist)
        return MNISTDataset(
            str(folder / "train-images-idx3-ubyte.gz"), str(folder / "train-labels-idx1-ubyte.gz")
        )
    return NDArrayDataset(*random_data(60_000, (784,)))


def build(name: str) -> nn.Module:
    np.random.seed(0)
    if name == "resnet9":
        return models.ResNet9()
    return nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
    )


def needle_epochs(args: argparse.Namespace, data) -> Iterator[dict]:
    model = build(args.model)
    opt = optim.SGD(model.parameters(), lr=LR)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True)
    for k in range(1, args.epochs + 1):
        began = time.perf_counter()
        _, loss = epoch(loader, model, opt)
        seconds = time.perf_counter() - began
        yield {"epoch": k, "seconds": seconds, "loss": loss, "rss": rss_mb(),
               "peak": peak_rss_mb(), "tensors": autograd.TENSOR_COUNTER}  # fmt: skip


def floor_epochs(args: argparse.Namespace, data: NDArrayDataset) -> Iterator[dict]:
    """conv_step's FloorStep from the model needle starts from, over shuffled batches (each
    a copy, as the DataLoader's fancy indexing makes)."""
    from conv_step import FloorStep

    floor = FloorStep(build(args.model))
    x, y = data.arrays
    rng = np.random.default_rng(0)
    for k in range(1, args.epochs + 1):
        began, total = time.perf_counter(), 0.0
        order = rng.permutation(len(x))
        for i in range(0, len(order), args.batch_size):
            rows = order[i : i + args.batch_size]
            total += floor(x[rows], y[rows]) * len(rows)
        seconds = time.perf_counter() - began
        yield {"epoch": k, "seconds": seconds, "loss": total / len(x), "rss": rss_mb(),
               "peak": peak_rss_mb(), "tensors": None}  # fmt: skip


def print_row(side: str, row: dict) -> None:
    tensors = "-" if row["tensors"] is None else row["tensors"]
    print(
        f"{side:>6} {row['epoch']:>5} {row['seconds']:>8.1f} {row['loss']:>8.4f} "
        f"{row['rss']:>8.0f} {row['peak']:>8.0f} {tensors:>8}",
        flush=True,
    )


def floor_in_fresh_process(args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--side", "floor", "--model", args.model]
    command += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    command += ["--images", str(args.images)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"the floor's process failed:\n{result.stderr.strip()}")
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["mlp", "resnet9"], default="mlp")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--mnist", help="a folder with MNIST's idx files (default: random data)")
    parser.add_argument("--images", type=int, default=2560, help="resnet9: random images")
    parser.add_argument(
        "--side", choices=["needle", "floor"], default="needle", help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    start_rss = rss_mb()
    data = dataset(args)
    with_data = rss_mb()
    if args.side == "floor":
        rows = list(floor_epochs(args, data))
        print(json.dumps({"start": start_rss, "with_data": with_data, "rows": rows}))
        return
    print(f"start {start_rss:.0f} MB, with data {with_data:.0f} MB")
    print(
        f"{'side':>6} {'epoch':>5} {'seconds':>8} {'loss':>8} {'rss MB':>8} {'peak MB':>8} "
        f"{'tensors':>8}"
    )
    for row in needle_epochs(args, data):
        print_row("needle", row)
    if args.model != "resnet9":
        return
    floor = floor_in_fresh_process(args)
    for row in floor["rows"]:
        print_row("floor", row)
    needle_peak, floor_peak = peak_rss_mb(), floor["rows"][-1]["peak"]
    print(
        f"floor's process: start {floor['start']:.0f} MB, with data {floor['with_data']:.0f} "
        f"MB\npeak RSS: needle {needle_peak:.0f} MB, floor {floor_peak:.0f} MB, ratio "
        f"{needle_peak / floor_peak:.2f}x; above the data: needle "
        f"{needle_peak - with_data:.0f} MB, floor {floor_peak - floor['with_data']:.0f} MB"
    )


if __name__ == "__main__":
    main()
