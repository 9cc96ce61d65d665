"""Peak memory of a training run on data of MNIST's size, epoch by epoch.

Trains the benchmark MLP (784-256-128-10, ReLU, SGD, batch 128, float32) with
`needle.train.epoch` on MNIST's idx files if a folder of them is given, else on random data
of the same size (60,000 × 784 float32 images, 188 MB). After each epoch it reports the
process's resident memory now and its peak so far, and the live tensor count, read without
running the garbage collector (a graph freed only by the collector would show up as a
growing count): a flat line means no leak.

    python benchmarks/memory.py --epochs 5
    python benchmarks/memory.py --mnist data/mnist --epochs 3
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from needle import autograd, nn, optim  # noqa: E402
from needle.data import DataLoader, MNISTDataset, NDArrayDataset  # noqa: E402
from needle.train import epoch  # noqa: E402


def rss_mb() -> float:
    """Resident set size now, from /proc (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def dataset(mnist: str | None):
    if mnist:
        folder = Path(mnist)
        return MNISTDataset(
            str(folder / "train-images-idx3-ubyte.gz"), str(folder / "train-labels-idx1-ubyte.gz")
        )
    rng = np.random.default_rng(0)
    images = rng.random((60_000, 784), dtype=np.float32)
    labels = rng.integers(0, 10, 60_000).astype(np.uint8)
    return NDArrayDataset(images, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--mnist", help="a folder with MNIST's idx files (default: random data)")
    args = parser.parse_args()
    np.random.seed(0)
    start_rss = rss_mb()
    data = dataset(args.mnist)
    model = nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    opt = optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True)
    print(f"start {start_rss:.0f} MB, with data {rss_mb():.0f} MB")
    print(f"{'epoch':>5} {'seconds':>8} {'loss':>8} {'rss MB':>8} {'peak MB':>8} {'tensors':>8}")
    for k in range(1, args.epochs + 1):
        began = time.perf_counter()
        _, loss = epoch(loader, model, opt)
        print(
            f"{k:>5} {time.perf_counter() - began:>8.1f} {loss:>8.4f} {rss_mb():>8.0f} "
            f"{peak_rss_mb():>8.0f} {autograd.TENSOR_COUNTER:>8}"
        )


if __name__ == "__main__":
    main()
