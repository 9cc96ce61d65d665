"""train.log_stats: per-layer norms against numpy's of the arrays they measure, the update
ratio from the states before and after a step, dead ReLUs in a model built to have some, and
a run that logs them trains and resumes exactly as one that does not."""

from __future__ import annotations

import json

import numpy as np
from checkpoints import assert_same_state
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from needle import nn, optim
from needle.data import DataLoader, NDArrayDataset
from needle.train.checkpoint import load_checkpoint
from needle.train.config import parse_config
from needle.train.layer_stats import LayerStats, dead_fraction, own_parameters
from needle.train.loop import BatchResult, EpochMetrics, Hooks, LoopState, fit
from needle.train.rundir import CHECKPOINT_FILE, METRICS_JSONL
from needle.train.runner import resume, train


def _data(rng: np.random.Generator, n: int = 40):
    X = rng.standard_normal((n, 4)).astype(np.float32)
    y = rng.integers(0, 3, n).astype(np.uint8)
    train_loader = DataLoader(NDArrayDataset(X[:32], y[:32]), batch_size=8, shuffle=True)
    val_loader = DataLoader(NDArrayDataset(X[32:], y[32:]), batch_size=8)
    return train_loader, val_loader


class Spy(Hooks):
    """Copies, at each epoch's last step, the gradients and the weights before the update,
    and at the epoch's end the weights after it."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = own_parameters(model)
        self.grads: dict[int, dict] = {}
        self.before: dict[int, dict] = {}
        self.after: dict[int, dict] = {}

    def on_backward(self, state: LoopState) -> None:
        if state.step == state.steps - 1:
            self.grads[state.epoch] = {
                n: [p.grad.numpy().copy() for p in ps] for n, ps in self.layers.items()
            }
            self.before[state.epoch] = {
                n: [p.numpy().copy() for p in ps] for n, ps in self.layers.items()
            }

    def on_epoch_end(self, state: LoopState, metrics: EpochMetrics) -> None:
        self.after[state.epoch] = {
            n: [p.numpy().copy() for p in ps] for n, ps in self.layers.items()
        }


def _flat(arrays) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def test_norms_and_update_ratio_are_numpys_of_the_arrays_they_measure():
    np.random.seed(3)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    train_loader, val_loader = _data(np.random.default_rng(0))
    stats, spy = LayerStats(model), Spy(model)
    state = LoopState(model, optim.SGD(model.parameters(), lr=0.1), epochs=3, steps=4)
    fit(train_loader, val_loader, state, [stats, spy])
    assert sorted(stats.by_epoch) == [1, 2, 3]
    assert set(spy.layers) == {"modules.0", "modules.2"}  # the two linears; relu has none
    for epoch, by_layer in stats.by_epoch.items():
        for name in spy.layers:
            got = by_layer[name]
            grad = _flat(spy.grads[epoch][name])
            before, after = _flat(spy.before[epoch][name]), _flat(spy.after[epoch][name])
            np.testing.assert_allclose(got["grad_norm"], np.linalg.norm(grad), rtol=1e-12)
            np.testing.assert_allclose(got["weight_norm"], np.linalg.norm(after), rtol=1e-12)
            ratio = np.linalg.norm(after - before) / np.linalg.norm(before)
            np.testing.assert_allclose(got["update_ratio"], ratio, rtol=1e-12)
            # plain SGD: the step is lr times the gradient
            np.testing.assert_allclose(after - before, -0.1 * grad, atol=1e-6)
        assert set(by_layer["modules.1"]) == {"dead_relu"}


def test_dead_relu_counts_the_units_a_model_was_built_to_kill():
    """Units 0 and 2 of the first layer have zero weights and a negative bias: they put out
    0 for every input, and (their gradient being 0 too) stay dead, so 2 of 5 are."""
    np.random.seed(4)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    state = model.state_dict()
    dead = [0, 2]
    state["modules.0.weight"][:, dead] = 0.0
    state["modules.0.bias"][:, dead] = -1.0
    state["modules.0.bias"][:, [1, 3, 4]] = 10.0  # far above what the inputs can cancel
    model.load_state_dict(state)
    train_loader, val_loader = _data(np.random.default_rng(1))
    stats = LayerStats(model)
    loop = LoopState(model, optim.SGD(model.parameters(), lr=0.01), epochs=2, steps=4)
    fit(train_loader, val_loader, loop, [stats])
    assert [stats.by_epoch[e]["modules.1"]["dead_relu"] for e in (1, 2)] == [0.4, 0.4]
    assert "forward" not in vars(model.modules[1])  # the watch is taken off at the stop


@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=4, max_side=4),
        elements=st.sampled_from([0.0, 0.0, 1.5]),
    )
)
def test_dead_fraction_is_the_share_of_units_zero_in_every_sample(out):
    units = out.reshape(len(out), -1)
    dead = sum(all(units[s, u] == 0 for s in range(len(out))) for u in range(units.shape[1]))
    assert dead_fraction(out) == dead / units.shape[1]


STATS = """\
seed: 6
data: {dataset: spirals, samples: 120, classes: 3}
model: {layers: [{linear: 10}, batchnorm1d, relu, {residual: [{linear: 10}, relu]}, {linear: 3}]}
train: {epochs: 3, batch_size: 16, log_stats: true, clip_grad_norm: 1.0,
        optimizer: {name: sgd, lr: 0.1, momentum: 0.5}}
"""


class StopInside(Hooks):
    def on_step(self, state: LoopState, batch: BatchResult) -> None:
        if (state.epoch, state.step) == (2, 2):
            state.request_stop("asked by a test")


def _jsonl(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS_JSONL).read_text().splitlines()]


def test_a_run_with_log_stats_trains_the_same_and_resumes_to_the_same_stats(tmp_path):
    config = parse_config(STATS, "s.yaml")
    off = train(
        config.model_copy(update={"train": config.train.model_copy(update={"log_stats": False})}),
        out=tmp_path,
        name="off",
    )
    straight = train(config, out=tmp_path, name="straight")
    stopped = train(config, out=tmp_path, name="stopped", hooks=[StopInside()])
    assert stopped.stopped_at == (2, 2)
    resumed = resume(stopped.run_dir)
    a, b, c = (load_checkpoint(r.run_dir / CHECKPOINT_FILE) for r in (off, straight, resumed))
    for name in a.model:  # log_stats on or off: the same training
        np.testing.assert_array_equal(a.model[name], b.model[name], err_msg=name)
    assert_same_state(b, c)  # stopped inside epoch 2 and resumed: the same run
    assert all("stats" not in row for row in _jsonl(off.run_dir))
    rows = _jsonl(straight.run_dir)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    layers = set(rows[0]["stats"])
    linears = {"modules.0", "modules.1", "modules.3.fn.modules.0", "modules.4"}  # 1: batchnorm
    assert layers == linears | {"modules.2", "modules.3.fn.modules.1"}
    assert [row["stats"] for row in _jsonl(resumed.run_dir)] == [row["stats"] for row in rows]
