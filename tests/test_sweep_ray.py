"""`needle sweep --ray`: the trials of a small spirals sweep run as tasks on a local Ray
instance (started and stopped here) land as run folders in the sweep folder, with the same
numbers a sweep in worker processes gives (training is deterministic); an interrupted trial
resumes on Ray into its own folder; a stopped sweep (ray.cancel) keeps the finished trials and a
rerun does the rest; without Ray, `--ray` is one line saying how to install it."""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from cli_contract import one_line_error
from typer.testing import CliRunner

from needle.train.checkpoint import load_checkpoint
from needle.train.config import load_config
from needle.train.runner import train
from needle.train.signals import StopFlag
from needle.train.sweep import SWEEP_FILE, TrialResult, make_trials, run_sweep
from needle.train.sweep_ray import RAY_MISSING
from needle_cli.app import app

CONFIG = """\
seed: 0
data: {dataset: spirals, samples: 200, classes: 3}
model:
  layers: [{linear: 8}, relu, {linear: 3}]
train: {epochs: 2, batch_size: 50, optimizer: {name: adam, lr: 0.01}}
"""

GRID = "train.optimizer.lr=0.001,0.1"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'needle[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray.shutdown()


def _finals(result) -> dict[str, tuple]:
    return {t.id: (t.status, t.best_value, t.val_loss, t.val_accuracy) for t in result.trials}


def _summary(run_dir: str) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def test_trials_on_ray_land_here_with_the_numbers_worker_processes_give(
    local_ray, config, tmp_path
):
    out = tmp_path / "on-ray"
    args = ["sweep", str(config), "--grid", GRID, "--ray", "auto", "--out", str(out), "--json"]
    shown = CliRunner().invoke(app, args)
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(folders) == 2 and {str(p) for p in folders} == {t["run_dir"] for t in data["trials"]}
    for folder in folders:
        assert load_checkpoint(folder / "checkpoint.npz").epoch == 2
        summary = _summary(str(folder))  # its paths name the folder here, not the node's
        assert summary["run_dir"] == str(folder)
        assert summary["checkpoint"] == str(folder / "checkpoint.npz")
        assert f"--resume {folder}\n" in (folder / "config.yaml").read_text()

    trials = make_trials([GRID])
    on_workers = run_sweep(config, trials, out=tmp_path / "on-workers", workers=2)
    on_ray = run_sweep(config, trials, out=out, ray="auto")  # the same again: all skipped
    assert all(t.reused for t in on_ray.trials)
    assert _finals(on_ray) == _finals(on_workers)
    assert on_ray.best.id == on_workers.best.id


def test_an_interrupted_trial_resumes_on_ray_into_its_own_folder(local_ray, config, tmp_path):
    out = tmp_path / "sweep"
    trials = make_trials([GRID])
    first = trials[0]
    stop = StopFlag()
    stop.request()  # stops after the first step, with a checkpoint to resume from
    cut = train(load_config(str(config), first.overrides), out=out, name="cut", stop=stop)
    assert cut.status == "interrupted"
    record = TrialResult(first.id, list(first.overrides), "interrupted", str(cut.run_dir))
    (out / SWEEP_FILE).write_text(json.dumps({"config": str(config), "trials": [asdict(record)]}))

    resumed = run_sweep(config, trials, out=out, ray="auto")
    whole = run_sweep(config, trials, out=tmp_path / "whole", workers=2)
    assert _finals(resumed) == _finals(whole)
    assert resumed.trials[0].run_dir == str(cut.run_dir)
    assert _summary(str(cut.run_dir))["epochs"] == 2
    assert len([p for p in out.iterdir() if p.is_dir()]) == 2


def test_without_ray_the_option_says_how_to_install_it_and_writes_nothing(
    config, monkeypatch, tmp_path
):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    out = tmp_path / "sweep"
    args = ["sweep", str(config), "--grid", GRID, "--ray", "auto", "--out", str(out)]
    assert one_line_error(CliRunner().invoke(app, args), 2) == RAY_MISSING
    assert not out.exists()


def test_workers_and_ray_together_are_refused_in_one_line(config):
    args = ["sweep", str(config), "--grid", GRID, "--ray", "auto", "--workers", "2"]
    assert "--workers and --ray" in one_line_error(CliRunner().invoke(app, args), 2)


def test_a_stopped_sweep_on_ray_keeps_finished_trials_and_a_rerun_does_the_rest(
    local_ray, config, tmp_path
):
    out = tmp_path / "sweep"
    # trials long enough (a second or so) that the first to end finds the others unfinished
    trials = make_trials([GRID, "train.batch_size=25,50", "train.epochs=100"])
    stop = StopFlag()
    result = run_sweep(
        config, trials, out=out, ray="auto", stop=stop, on_trial=lambda t: stop.request()
    )
    assert result.interrupted
    done = [t for t in result.trials if t.finished]
    assert 1 <= len(done) < len(trials)  # the rest cancelled: not run, or stopped cleanly
    recorded = json.loads((out / SWEEP_FILE).read_text())["trials"]
    assert {t["id"] for t in recorded} == {t.id for t in result.trials if t.run_dir}

    rest = run_sweep(config, trials, out=out, ray="auto")
    assert all(t.finished for t in rest.trials)
    assert {t.id for t in rest.trials if t.reused} == {t.id for t in done}
    assert len([p for p in out.iterdir() if p.is_dir()]) == len(trials)


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_where_nothing_listens_is_one_line_at_once_and_writes_nothing(
    config, monkeypatch, tmp_path, scheme
):
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'needle[ray]'")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process

    def never(*args, **kwargs):  # ray.init would retry such an address for minutes
        raise AssertionError("ray.init was called")

    monkeypatch.setattr(ray, "init", never)
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    out = tmp_path / "sweep"
    args = ["sweep", str(config), "--grid", GRID, "--ray", address, "--out", str(out)]
    message = one_line_error(CliRunner().invoke(app, args), 1)
    assert message.startswith(
        f"--ray {address}: cannot connect to a Ray cluster (nothing answers at "
        f"127.0.0.1:{address.rpartition(':')[2]}: Connection refused); give auto, "
    ), message
    assert not out.exists()
