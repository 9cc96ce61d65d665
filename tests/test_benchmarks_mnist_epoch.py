"""benchmarks/mnist_epoch.py: the two sides agree before anything is timed, and the epoch
figures are the rounds' medians scaled to 60,000 images."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
mnist_epoch = pytest.importorskip("mnist_epoch")


def test_one_batch_each_side_agrees_and_the_epoch_is_scaled(monkeypatch):
    monkeypatch.setattr(mnist_epoch, "WARM_UP", 1)
    row = mnist_epoch.measure(100 / 60_000, 1, sgd=True)
    assert row["images"] == row["batch_size"] == 100  # whole batches of the config's size
    assert row["loss_err"] <= mnist_epoch.LOSS_RTOL
    scale = 60_000 / row["images"]
    assert row["needle_s_per_epoch"] == statistics.median(row["needle_runs_s"]) * scale
    assert row["ratio"] == row["needle_s_per_epoch"] / row["numpy_s_per_epoch"]
