"""Schedules, clipping, early stopping and best checkpoints in a run: every step trains at
the schedule's rate, a run stopped at an epoch's end or inside one and resumed ends bit for
bit where a run never stopped ends, each epoch's lr is in its metrics, gradients reach the
update clipped, early stopping stops with its reason, best.npz is the best epoch's state, and
the count of epochs without improvement survives a resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from checkpoints import assert_same_state

from needle.errors import UsageError
from needle.train.checkpoint import load_checkpoint, save_checkpoint
from needle.train.config import parse_config
from needle.train.evaluate import evaluate
from needle.train.loop import BatchResult, EpochMetrics, Hooks, LoopState
from needle.train.rundir import BEST_FILE, CHECKPOINT_FILE
from needle.train.runner import resume, train
from needle.train.schedules import build_schedule

# 100 training samples in batches of 16: 7 steps an epoch, the last one short
TINY = """\
seed: 3
data: {{dataset: spirals, samples: 125, classes: 3}}
model: {{layers: [{{linear: 8}}, relu, {{dropout: 0.1}}, {{linear: 3}}]}}
train:
  epochs: 4
  batch_size: 16
  optimizer: {{name: sgd, lr: 0.2, momentum: 0.5}}
  {extra}
"""
STEPS = 7

SCHEDULES = {
    "step": "{name: step, step_size: 1, gamma: 0.5}",
    "multistep": "{name: multistep, milestones: [1, 3], gamma: 0.3}",
    "cosine": "{name: cosine, warmup_steps: 3, min_lr: 0.01}",
    "onecycle": "{name: onecycle, max_lr: 0.5, pct_start: 0.4}",
}


def _config(extra: str = "", *, epochs: int = 4):
    text = TINY.format(extra=extra).replace("epochs: 4", f"epochs: {epochs}")
    return parse_config(text, "t.yaml")


class StopAt(Hooks):
    """Asks the run to stop after step `step` of `epoch`, or at that epoch's end."""

    def __init__(self, epoch: int, step: int | None = None) -> None:
        self.at = (epoch, step)

    def on_step(self, state: LoopState, batch: BatchResult) -> None:
        if (state.epoch, state.step) == self.at:
            state.request_stop("asked by a test")

    def on_epoch_end(self, state: LoopState, metrics: EpochMetrics) -> None:
        if self.at == (state.epoch, None):
            state.request_stop("asked by a test")


class RatesSeen(Hooks):
    """The optimizer's lr as each update is about to be made, by (epochs done, step)."""

    def __init__(self) -> None:
        self.rates: dict[tuple[int, int], float] = {}

    def on_backward(self, state: LoopState) -> None:
        self.rates[(state.epoch - 1, state.step)] = state.opt.lr


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_each_step_trains_at_the_schedules_rate_and_the_epoch_records_it(name, tmp_path):
    config = _config(f"schedule: {SCHEDULES[name]}")
    seen = RatesSeen()
    result = train(config, out=tmp_path, hooks=[seen])
    chosen = build_schedule(config.train, STEPS)
    expected = {(e, s): chosen.lr_at(e, s) for e in range(4) for s in range(STEPS)}
    assert seen.rates == expected
    assert len(set(expected.values())) > 1  # the schedule moved
    # each epoch's metrics carry the rate of its last step, in every file
    lrs = [chosen.lr_at(e, STEPS - 1) for e in range(4)]
    assert [m.lr for m in result.history] == lrs
    rows = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(row)["lr"] for row in rows] == lrs
    csv = (result.run_dir / "metrics.csv").read_text().splitlines()
    assert [float(line.split(",")[-1]) for line in csv[1:]] == lrs
    assert json.loads((result.run_dir / "summary.json").read_text())["lr"] == lrs[-1]


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_stopped_then_resumed_a_scheduled_run_ends_as_one_never_stopped(name, tmp_path):
    # clipping and early stopping ride along: they must not break exactness either
    config = _config(
        f"schedule: {SCHEDULES[name]}\n  clip_grad_norm: 0.5\n"
        "  early_stopping: {metric: val_accuracy, patience: 3}"
    )
    straight = train(config, out=tmp_path, name="straight")
    assert straight.status == "completed"
    last = load_checkpoint(straight.run_dir / CHECKPOINT_FILE)
    # 2 epochs, then 2 more; and a stop inside epoch 2, then the rest
    for stop in (StopAt(2), StopAt(2, 3)):
        stopped = train(config, out=tmp_path, name="stopped", hooks=[stop])
        assert stopped.status == "asked by a test"
        resumed = resume(stopped.run_dir)
        assert resumed.status == "completed"
        assert_same_state(last, load_checkpoint(resumed.run_dir / CHECKPOINT_FILE))


class GradNorms(Hooks):
    """The global gradient norm each update is made with."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_backward(self, state: LoopState) -> None:
        squares = sum(
            float(np.sum(p.grad.numpy().astype(np.float64) ** 2)) for p in state.opt.params
        )
        self.norms.append(squares**0.5)


def test_gradients_reach_the_update_clipped_and_clipping_changes_the_run(tmp_path):
    free, clipped = GradNorms(), GradNorms()
    plain = train(_config(), out=tmp_path, hooks=[free])
    limited = train(_config("clip_grad_norm: 0.3"), out=tmp_path, hooks=[clipped])
    assert max(free.norms) > 0.3  # so the limit bites
    assert max(clipped.norms) <= 0.3 * (1 + 1e-5)
    # steps below the limit pass unchanged; the first step's gradient is the same in both
    assert clipped.norms[0] == pytest.approx(min(free.norms[0], 0.3), rel=1e-5)
    assert plain.last.train_loss != limited.last.train_loss


# -- early stopping and the best checkpoint --------------------------------------------------


def test_early_stopping_stops_with_its_reason_and_keeps_the_best_epoch(tmp_path):
    # no epoch can beat the first by 10: the run stops after 1 + patience epochs
    config = _config("early_stopping: {metric: val_loss, patience: 2, min_delta: 10}", epochs=9)
    result = train(config, out=tmp_path)
    reason = "early stopping: val_loss did not improve by 10 for 2 epochs"
    assert (result.status, result.epochs, result.best_epoch) == (reason, 3, 1)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == reason and summary["epochs"] == 3
    assert summary["best"] == {
        "epoch": 1,
        "metric": "val_loss",
        "value": result.history[0].val_loss,
        "checkpoint": str(result.run_dir / BEST_FILE),
    }
    # best.npz is the state after epoch 1: the same as a run of one epoch
    one = train(_config(epochs=1), out=tmp_path, name="one")
    best = load_checkpoint(result.run_dir / BEST_FILE)
    after_one = load_checkpoint(one.run_dir / CHECKPOINT_FILE)
    assert best.epoch == 1
    for name in best.model:
        np.testing.assert_array_equal(best.model[name], after_one.model[name])
    # evaluate picks either checkpoint; best's numbers are epoch 1's
    assert evaluate(result.run_dir, checkpoint="best").loss == pytest.approx(
        result.history[0].val_loss, rel=1e-6
    )
    assert evaluate(result.run_dir).epoch == 3


def test_without_early_stopping_best_follows_val_loss_and_improving_epochs_rewrite_it(tmp_path):
    result = train(_config(), out=tmp_path)
    losses = [m.val_loss for m in result.history]
    assert result.best_epoch == 1 + int(np.argmin(losses))
    assert result.best_value == min(losses) and result.best_metric == "val_loss"
    assert load_checkpoint(result.run_dir / BEST_FILE).epoch == result.best_epoch


def test_mode_max_follows_an_accuracy_upwards(tmp_path):
    result = train(_config("early_stopping: {metric: val_accuracy, patience: 4}"), out=tmp_path)
    accuracies = [m.val_accuracy for m in result.history]
    assert result.best_epoch == 1 + int(np.argmax(accuracies))  # the first of equal bests


def test_the_count_of_epochs_without_improvement_survives_a_resume(tmp_path):
    config = _config("early_stopping: {patience: 3, min_delta: 10}", epochs=9)
    straight = train(config, out=tmp_path, name="straight")
    assert straight.epochs == 4  # epoch 1, then 3 that do not improve by 10
    for stop in (StopAt(2), StopAt(3, 2)):
        stopped = train(config, out=tmp_path, name="stopped", hooks=[stop])
        kept = load_checkpoint(stopped.run_dir / CHECKPOINT_FILE).monitor
        assert kept["best_epoch"] == 1 and kept["since"] == stopped.epochs - 1
        resumed = resume(stopped.run_dir)
        # counted from scratch, it would stop 3 epochs after the resume instead
        assert (resumed.status, resumed.epochs) == (straight.status, 4)
        assert_same_state(
            load_checkpoint(straight.run_dir / CHECKPOINT_FILE),
            load_checkpoint(resumed.run_dir / CHECKPOINT_FILE),
        )


def test_a_tampered_best_record_is_refused_on_load(tmp_path):
    result = train(_config(), out=tmp_path)
    path = result.run_dir / CHECKPOINT_FILE
    saved = load_checkpoint(path)
    saved.monitor = {**saved.monitor, "since": -1}
    save_checkpoint(path, saved)
    with pytest.raises(UsageError, match=r"corrupt or incomplete \(since must be a whole number"):
        load_checkpoint(path)


def test_evaluate_best_needs_a_run_folder_that_has_one(tmp_path):
    result = train(_config(), out=tmp_path)
    with pytest.raises(UsageError, match="--checkpoint is last or best"):
        evaluate(result.run_dir, checkpoint="first")
    with pytest.raises(UsageError, match="is a checkpoint file already"):
        evaluate(result.run_dir / CHECKPOINT_FILE, checkpoint="best")
    (result.run_dir / BEST_FILE).unlink()
    with pytest.raises(UsageError, match=f"has no {BEST_FILE}"):
        evaluate(result.run_dir, checkpoint="best")
