"""An epoch of configs/mnist_cnn.yaml's network on 60,000 MNIST-shaped images: needle's training
loop against the same network trained by conv_step.py's hand-written numpy floor, in one
process.

The data are synthetic (seeded uniform pixels in [0, 1) and random labels: the cost of a step
does not depend on what the pixels show), 1×28×28, 10 classes. needle's side is the model
the config builds (`build_model`, seeded with the config's seed), its optimizer (the
config's, Adam; `--sgd` for the floor's plain SGD at lr 0.01) and batch size, trained by
`needle.train.loop.epoch` over a shuffling `DataLoader`, as `needle train` runs an epoch
(without the run folder's writes and the progress display). The floor is `FloorStep` of
conv_step.py, built from the same model's weights before needle trains it: per batch, a
shuffled slice of the arrays, forward, softmax loss, backward and SGD in numpy.

Before timing, one batch on each side from the same weights must give losses within
conv_step.py's LOSS_RTOL, and each side runs a few untimed batches. Then `--rounds` alternating
rounds of a `--fraction` of an epoch
each (a fraction 0.1 is 6,000 images, 60 batches of 100); seconds per epoch are the medians
scaled by 1/fraction.

    python benchmarks/mnist_epoch.py                    # a tenth of an epoch, 3 rounds
    python benchmarks/mnist_epoch.py --fraction 1 --rounds 1
    python benchmarks/mnist_epoch.py --sgd --json
    OPENBLAS_NUM_THREADS=1 python benchmarks/mnist_epoch.py   # on a busy machine (README)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from conv_step import LOSS_RTOL, FloorStep

# Appended, not prepended: PYTHONPATH can point at another checkout to compare versions.
sys.path.append(str(Path(__file__).resolve().parents[1]))

import needle as ndl  # noqa: E402
from needle import data, optim  # noqa: E402
from needle.train import loop  # noqa: E402
from needle.train.build import build_model  # noqa: E402
from needle.train.config import TrainConfig, load_config  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "mnist_cnn.yaml"
EPOCH = 60_000
IMAGE = (1, 28, 28)
CLASSES = 10
FLOOR_LR = 0.01  # conv_step.py's SGD
WARM_UP = 5  # batches


def images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, *IMAGE), dtype=np.float32)
    return x, rng.integers(0, CLASSES, n).astype(np.uint8)


class Sides:
    """needle's model, optimizer and loader, and the floor built from the same weights."""

    def __init__(self, config: TrainConfig, x: np.ndarray, y: np.ndarray, *, sgd: bool) -> None:
        np.random.seed(config.seed)
        self.model = build_model(config, IMAGE, CLASSES)
        self.floor = FloorStep(self.model)  # copies the weights before needle changes them
        params = self.model.parameters()
        self.opt = optim.SGD(params, lr=FLOOR_LR) if sgd else config.train.optimizer.build(params)
        self.batch = config.train.batch_size
        self.x, self.y = x, y
        dataset = data.NDArrayDataset(x, y)
        self.loader = data.DataLoader(dataset, batch_size=self.batch, shuffle=True)
        self.rng = np.random.default_rng(config.seed)

    def agreement(self) -> float:
        """Relative difference of the two sides' losses on the first batch, one step each."""
        x, y = self.x[: self.batch], self.y[: self.batch]
        batch = [(ndl.Tensor(x), ndl.Tensor(y))]
        needle_loss = next(loop.run_batches(batch, self.model, self.opt)).loss
        floor_loss = self.floor(x, y)
        error = abs(needle_loss - floor_loss) / abs(floor_loss)
        if error > LOSS_RTOL:
            raise AssertionError(
                f"needle and the numpy floor disagree on the first batch: loss {needle_loss} "
                f"against {floor_loss} (relative error {error:.1e}, at most {LOSS_RTOL:.0e})"
            )
        return error

    def warm_up(self) -> None:
        """A few untimed batches on each side: caches, allocator, BLAS threads."""
        rows = slice(0, WARM_UP * self.batch)
        warm = data.DataLoader(data.NDArrayDataset(self.x[rows], self.y[rows]), self.batch)
        loop.epoch(warm, self.model, self.opt)
        for i in range(0, len(self.x[rows]), self.batch):
            self.floor(self.x[i : i + self.batch], self.y[i : i + self.batch])

    def needle_pass(self) -> float:
        started = time.perf_counter()
        loop.epoch(self.loader, self.model, self.opt)
        return time.perf_counter() - started

    def floor_pass(self) -> float:
        started = time.perf_counter()
        order = self.rng.permutation(len(self.x))
        for i in range(0, len(order), self.batch):
            rows = order[i : i + self.batch]
            self.floor(self.x[rows], self.y[rows])
        return time.perf_counter() - started


def measure(fraction: float, rounds: int, *, sgd: bool, seed: int = 0) -> dict:
    config = load_config(CONFIG)
    batch = config.train.batch_size
    # whole batches, as an epoch of 60,000 at batch 100 has
    n = max(batch, round(EPOCH * fraction / batch) * batch)
    sides = Sides(config, *images(n, seed), sgd=sgd)
    error = sides.agreement()
    sides.warm_up()
    needle_runs, floor_runs = [], []
    for _ in range(rounds):
        needle_runs.append(sides.needle_pass())
        floor_runs.append(sides.floor_pass())
    scale = EPOCH / n
    needle_s = statistics.median(needle_runs) * scale
    floor_s = statistics.median(floor_runs) * scale
    return {
        "images": n,
        "batch_size": batch,
        "optimizer": "sgd" if sgd else config.train.optimizer.name,
        "rounds": rounds,
        "needle_s_per_epoch": needle_s,
        "numpy_s_per_epoch": floor_s,
        "ratio": needle_s / floor_s,
        "needle_runs_s": needle_runs,
        "numpy_runs_s": floor_runs,
        "loss_err": error,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fraction", type=float, default=0.1, help="of an epoch of 60,000 per round"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--sgd", action="store_true", help="needle with the floor's SGD")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if not 0 < args.fraction <= 1 or args.rounds < 1:
        parser.error(
            f"--fraction must be in (0, 1] and --rounds ≥ 1 (got {args.fraction}, {args.rounds})"
        )
    row = measure(args.fraction, args.rounds, sgd=args.sgd)
    if args.json:
        print(json.dumps(row))
        return
    print(f"needle from {Path(ndl.__file__).parent}")
    print(
        f"configs/mnist_cnn.yaml, batch {row['batch_size']}, needle's optimizer "
        f"{row['optimizer']} (the floor: sgd); {row['images']} synthetic images a round "
        f"({row['images'] / EPOCH:g} of an epoch), median of {row['rounds']} alternating "
        f"rounds, scaled to 60,000; first-batch loss err {row['loss_err']:.1e}"
    )
    print(f"{'needle s/epoch':>14} {'numpy s/epoch':>13} {'ratio':>6}")
    print(
        f"{row['needle_s_per_epoch']:>14.1f} {row['numpy_s_per_epoch']:>13.1f} "
        f"{row['ratio']:>5.2f}x"
    )


if __name__ == "__main__":
    main()
