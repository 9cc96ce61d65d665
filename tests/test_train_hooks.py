"""The one loop's hooks: `fit` is the course's `epoch` pass after pass, every hook sees each
step, epoch, evaluation and stop in order, and a hook's stop request ends a run cleanly with
a checkpoint that resumes to the same numbers as a run never stopped."""

from __future__ import annotations

import json
import math

import numpy as np
from checkpoints import assert_same_state

from needle import nn, optim
from needle.data import DataLoader, NDArrayDataset
from needle.train import epoch
from needle.train.checkpoint import load_checkpoint
from needle.train.config import parse_config
from needle.train.loop import BatchResult, EpochMetrics, Hooks, LoopState, Totals, fit
from needle.train.rundir import CHECKPOINT_FILE
from needle.train.runner import resume, train
from needle.train.session import prepare

# dropout and batchnorm: the RNG stream and running statistics must survive a stop
TINY = """\
seed: 5
data: {dataset: spirals, samples: 150, classes: 3}
model: {layers: [{linear: 12}, batchnorm1d, relu, {dropout: 0.2}, {linear: 3}]}
train: {epochs: 3, batch_size: 16, optimizer: {name: sgd, lr: 0.1, momentum: 0.5}}
"""


class Recorder(Hooks):
    """Writes down every call, with where the loop said it was."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.metrics: list[EpochMetrics] = []
        self.val: list[float] = []

    def on_epoch_start(self, state: LoopState) -> None:
        self.events.append(("epoch_start", state.epoch))

    def on_step(self, state: LoopState, batch: BatchResult) -> None:
        self.events.append(("step", state.epoch, state.step))

    def on_validate_step(self, state: LoopState, batch: BatchResult) -> None:
        self.events.append(("validate_step", state.epoch))

    def on_evaluate(self, state: LoopState, val: Totals) -> None:
        self.events.append(("evaluate", state.epoch))
        self.val.append(val.loss)

    def on_epoch_end(self, state: LoopState, metrics: EpochMetrics) -> None:
        self.events.append(("epoch_end", state.epoch))
        self.metrics.append(metrics)
        assert state.history[-1] is metrics

    def on_stop(self, state: LoopState, reason: str) -> None:
        self.events.append(("stop", reason))


class StopAt(Recorder):
    """Asks the run to stop after training step `step` of `epoch` (`step=None`: at that
    epoch's end), as early stopping will."""

    def __init__(self, epoch: int, step: int | None = None) -> None:
        super().__init__()
        self.at = (epoch, step)

    def on_step(self, state: LoopState, batch: BatchResult) -> None:
        super().on_step(state, batch)
        if (state.epoch, state.step) == self.at:
            state.request_stop("asked by a hook")

    def on_epoch_end(self, state: LoopState, metrics: EpochMetrics) -> None:
        super().on_epoch_end(state, metrics)
        if self.at == (state.epoch, None):
            state.request_stop("asked by a hook")


def _expected(epochs: range, steps: int, val_steps: int, first_step: int = 1) -> list[tuple]:
    events: list[tuple] = []
    for e in epochs:
        events.append(("epoch_start", e))
        start = first_step if e == epochs.start else 1
        events += [("step", e, s) for s in range(start, steps + 1)]
        events += [("validate_step", e)] * val_steps + [("evaluate", e), ("epoch_end", e)]
    return events


def _steps(config) -> tuple[int, int]:
    data = prepare(config).data
    batch = config.train.batch_size
    return math.ceil(len(data.train.y) / batch), math.ceil(len(data.val.y) / batch)


def test_a_hook_sees_every_step_epoch_evaluation_and_the_stop_in_order(tmp_path):
    config = parse_config(TINY, "t.yaml")
    steps, val_steps = _steps(config)
    hook = Recorder()
    result = train(config, out=tmp_path, hooks=[hook])
    assert hook.events == _expected(range(1, 4), steps, val_steps) + [("stop", "completed")]
    assert hook.metrics == result.history
    assert hook.val == [m.val_loss for m in result.history]


def test_a_hook_stop_at_an_epoch_end_keeps_that_epoch_and_resumes_exactly(tmp_path):
    config = parse_config(TINY, "t.yaml")
    steps, val_steps = _steps(config)
    straight = train(config, out=tmp_path, name="straight")
    hook = StopAt(2)
    stopped = train(config, out=tmp_path, name="stopped", hooks=[hook])
    assert (stopped.status, stopped.epochs, stopped.stopped_at) == (
        "asked by a hook",
        2,
        (2, steps),
    )
    assert hook.events == _expected(range(1, 3), steps, val_steps) + [("stop", "asked by a hook")]
    saved = load_checkpoint(stopped.run_dir / CHECKPOINT_FILE)
    assert (saved.epoch, saved.step) == (2, 0)
    summary = json.loads((stopped.run_dir / "summary.json").read_text())
    assert (summary["status"], summary["epochs"]) == ("asked by a hook", 2)
    after = Recorder()
    resumed = resume(stopped.run_dir, hooks=[after])
    assert resumed.status == "completed"
    assert after.events == _expected(range(3, 4), steps, val_steps) + [("stop", "completed")]
    assert_same_state(
        load_checkpoint(straight.run_dir / CHECKPOINT_FILE),
        load_checkpoint(resumed.run_dir / CHECKPOINT_FILE),
    )


def test_hook_stops_inside_one_epoch_twice_then_resume_equals_straight(tmp_path):
    """The second stop comes in an epoch that was itself resumed: its checkpoint must keep
    that epoch's starting RNG and running sums too."""
    config = parse_config(TINY, "t.yaml")
    steps, val_steps = _steps(config)
    straight = train(config, out=tmp_path, name="straight")
    first = train(config, out=tmp_path, name="stopped", hooks=[StopAt(2, 2)])
    assert (first.status, first.epochs, first.stopped_at) == ("asked by a hook", 1, (2, 2))
    second_hook = StopAt(2, 5)
    second = resume(first.run_dir, hooks=[second_hook])
    assert second.stopped_at == (2, 5)
    assert second_hook.events == [("epoch_start", 2)] + [("step", 2, s) for s in (3, 4, 5)] + [
        ("stop", "asked by a hook")
    ]
    saved = load_checkpoint(second.run_dir / CHECKPOINT_FILE)
    assert (saved.epoch, saved.step) == (1, 5)
    last = Recorder()
    resumed = resume(second.run_dir, hooks=[last])
    assert last.events == _expected(range(2, 4), steps, val_steps, first_step=6) + [
        ("stop", "completed")
    ]
    assert_same_state(
        load_checkpoint(straight.run_dir / CHECKPOINT_FILE),
        load_checkpoint(resumed.run_dir / CHECKPOINT_FILE),
    )


def _model_and_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4)).astype(np.float32)
    y = rng.integers(0, 3, 50).astype(np.uint8)
    np.random.seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 3))
    train_loader = DataLoader(NDArrayDataset(X[:40], y[:40]), batch_size=8, shuffle=True)
    val_loader = DataLoader(NDArrayDataset(X[40:], y[40:]), batch_size=8)
    return model, train_loader, val_loader


def test_fit_is_the_course_epoch_pass_after_pass():
    model, train_loader, val_loader = _model_and_data()
    opt = optim.Adam(model.parameters(), lr=0.05)
    np.random.seed(2)
    by_epoch = []
    for _ in range(3):
        train_error, train_loss = epoch(train_loader, model, opt)
        val_error, val_loss = epoch(val_loader, model)
        by_epoch.append((1 - train_error, train_loss, 1 - val_error, val_loss))
    expected = [p.numpy().copy() for p in model.parameters()]

    model, train_loader, val_loader = _model_and_data()
    state = LoopState(model, optim.Adam(model.parameters(), lr=0.05), epochs=3, steps=5)
    np.random.seed(2)
    fit(train_loader, val_loader, state)
    for p, want in zip(model.parameters(), expected, strict=True):
        np.testing.assert_array_equal(p.numpy(), want)
    got = [(m.train_accuracy, m.train_loss, m.val_accuracy, m.val_loss) for m in state.history]
    np.testing.assert_allclose(got, by_epoch, rtol=1e-12)
