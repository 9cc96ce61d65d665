"""`needle train` and `needle evaluate` with a schedule, clipping and early stopping: the
epoch lines carry the lr, a run stopped early says why and which epoch was best, `--dry-run`
and `--print-config` show the new settings, `evaluate --checkpoint best` measures best.npz."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from needle.train.checkpoint import load_checkpoint
from needle.train.config import parse_config
from needle.train.rundir import BEST_FILE, CHECKPOINT_FILE
from needle.train.schedules import epoch_rates
from needle_cli.app import app
from needle_cli.progress import epoch_text
from needle_cli.render import number

runner = CliRunner()

CONFIG = """\
seed: 1
data: {dataset: moons, samples: 100}
model: {layers: [{linear: 8}, relu, {linear: 2}]}
train:
  epochs: 9
  batch_size: 20
  schedule: {name: step, step_size: 2, gamma: 0.5}
  clip_grad_norm: 2.5
  early_stopping: {metric: val_loss, patience: 2, min_delta: 5}
"""


def run(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "es.yaml"
    path.write_text(CONFIG)
    return path


def test_a_run_stopped_early_says_why_and_which_epoch_was_best(tmp_path):
    result = run("train", _config(tmp_path), "--out", tmp_path)
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "es-1"
    saved = load_checkpoint(run_dir / CHECKPOINT_FILE)
    assert [m.lr for m in saved.history] == [0.01, 0.01, 0.005]
    lines = result.stdout.splitlines()
    for m in saved.history:
        assert epoch_text(m, 9) in lines and f"  lr {m.lr:.3g}  " in epoch_text(m, 9)
    best = saved.history[0]
    assert lines[-2:] == [
        "stopped after epoch 3: early stopping: val_loss did not improve by 5 for 2 epochs",
        f"best: epoch 1, val_loss {number(best.val_loss)}, kept in {run_dir / BEST_FILE}",
    ]
    summary = json.loads(run("train", _config(tmp_path), "--out", tmp_path, "--json").stdout)
    assert summary["best"]["epoch"] == 1 and summary["status"].startswith("early stopping")


def test_evaluate_takes_the_best_or_the_last_checkpoint(tmp_path):
    assert run("train", _config(tmp_path), "--out", tmp_path, "--quiet").exit_code == 0
    run_dir = tmp_path / "es-1"
    best = json.loads(run("evaluate", run_dir, "--checkpoint", "best", "--json").stdout)
    last = json.loads(run("evaluate", run_dir, "--json").stdout)
    history = load_checkpoint(run_dir / CHECKPOINT_FILE).history
    assert (best["epoch"], best["checkpoint"]) == (1, str(run_dir / BEST_FILE))
    assert best["loss"] == history[0].val_loss and last["loss"] == history[-1].val_loss
    wrong = run("evaluate", run_dir, "--checkpoint", "worst")
    assert wrong.exit_code == 2
    assert wrong.stderr == "error: --checkpoint is last or best (got 'worst')\n"


def test_dry_run_and_print_config_show_the_schedule_clipping_and_early_stopping(tmp_path):
    path = _config(tmp_path)
    shown = run("train", path, "--dry-run")
    assert shown.exit_code == 0, shown.output
    rates = epoch_rates(parse_config(CONFIG, "c.yaml").train, 4)
    assert rates == [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025, 0.00125, 0.00125, 0.000625]
    lines = shown.stdout.splitlines()
    assert lines[1:5] == [
        "train: 9 epochs of 4 steps, adam (lr 0.01, beta1 0.9, beta2 0.999, eps 1e-08, "
        "weight_decay 0)",
        "schedule: step (step_size 2, gamma 0.5); lr at each epoch's start: "
        + ", ".join(f"{r:.3g}" for r in rates[:8])
        + ", …",
        "clip_grad_norm: each step's gradients scaled to a global norm of at most 2.5",
        "early stopping: after 2 epochs in a row in which val_loss (min) does not improve by "
        "more than 5",
    ]
    as_json = json.loads(run("train", path, "--dry-run", "--json").stdout)["train"]
    assert as_json["epoch_lr"] == rates and as_json["steps"] == 4
    assert as_json["schedule"] == {"name": "step", "step_size": 2, "gamma": 0.5}
    assert as_json["clip_grad_norm"] == 2.5 and as_json["early_stopping"]["mode"] == "min"
    resolved = yaml.safe_load(run("train", path, "--print-config").stdout)["train"]
    assert resolved["schedule"] == {"name": "step", "step_size": 2, "gamma": 0.5}
    assert resolved["clip_grad_norm"] == 2.5
    assert resolved["early_stopping"] == {
        "metric": "val_loss",
        "mode": "min",
        "patience": 2,
        "min_delta": 5.0,
    }


def test_a_mistake_in_the_new_keys_is_one_positioned_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(CONFIG.replace("metric: val_loss", "metric: val_los"))
    result = run("train", path, "--dry-run")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {path}:9:28: train.early_stopping.metric: unknown metric 'val_los'; "
        "did you mean 'val_loss'?\n"
    )
