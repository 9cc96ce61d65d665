"""Training must not leak graph values: after a warm-up, further steps leave
`needle.autograd.TENSOR_COUNTER` exactly where it was.

Each step's graph is freed by reference counting alone (the next `reset_grad` drops the
gradients that keep it alive), so the count must hold steady with the garbage collector
switched off as well as after an explicit `gc.collect()`.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import numpy as np
import pytest

from needle import autograd, data, nn, optim
from needle.models import MLPResNet
from needle.train.loop import epoch, run_batches


@pytest.fixture
def no_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _loader(n, dim, batch_size, classes=3):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, dim)).astype(np.float32)
    y = rng.integers(0, classes, n).astype(np.uint8)
    return data.DataLoader(data.NDArrayDataset(X, y), batch_size=batch_size, shuffle=True)


def test_a_thousand_sgd_steps_leave_the_tensor_count_unchanged(no_gc):
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    loader = _loader(n=100, dim=8, batch_size=10)  # 10 steps per epoch

    epoch(loader, model, opt)  # warm-up: the last step's gradients now hold one graph
    start = autograd.TENSOR_COUNTER
    counts = []
    for _ in range(100):  # 1,000 steps
        epoch(loader, model, opt)
        counts.append(autograd.TENSOR_COUNTER)
    assert counts == [start] * 100, "graph values pile up with the collector off"
    gc.collect()
    assert autograd.TENSOR_COUNTER == start


def test_mlpresnet_with_batchnorm_dropout_and_adam_does_not_leak(no_gc):
    np.random.seed(0)
    model = MLPResNet(8, hidden_dim=12, num_blocks=2, num_classes=3)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    loader = _loader(n=64, dim=8, batch_size=16)

    for _ in range(2):  # warm-up, training and evaluation
        epoch(loader, model, opt)
        epoch(loader, model)
    start = autograd.TENSOR_COUNTER
    for _ in range(25):  # 100 training steps and 100 evaluation batches
        for _ in run_batches(loader, model, opt):
            pass
        for _ in run_batches(loader, model):
            pass
        assert autograd.TENSOR_COUNTER == start
    gc.collect()
    assert autograd.TENSOR_COUNTER == start


def test_reset_grad_releases_the_last_graph(no_gc):
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = optim.SGD(model.parameters())
    loader = _loader(n=8, dim=4, batch_size=8, classes=2)
    before = autograd.TENSOR_COUNTER
    epoch(loader, model, opt)
    opt.reset_grad()
    assert autograd.TENSOR_COUNTER == before
