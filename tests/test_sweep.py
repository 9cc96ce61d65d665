"""`needle sweep` and `needle.train.sweep`: the grid's product and the seeded draws, a small
sweep on spirals whose best is the trial with the lowest val_loss its own run folder records,
a rerun that skips every trial, a stopped sweep that keeps what finished, and the errors."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from cli_contract import one_line_error
from typer.testing import CliRunner

from needle.errors import ConfigError, UsageError
from needle.train.signals import StopFlag
from needle.train.sweep import SWEEP_FILE, Trial, make_trials, parse_grid, parse_range, run_sweep
from needle_cli.app import app

CONFIG = """\
seed: 0
data: {dataset: spirals, samples: 200, classes: 3}
model:
  layers: [{linear: 8}, relu, {linear: 3}]
train: {epochs: 1, batch_size: 50, optimizer: {name: adam, lr: 0.01}}
"""

GRID = ["train.optimizer.lr=0.001,0.1", "train.batch_size=25,50"]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    return path


def test_the_grid_is_the_product_of_its_values():
    grid = ["a.x=1,2,3", "b=p,q", "c.d=null"]
    trials = make_trials(grid)
    expected = itertools.product(["a.x=1", "a.x=2", "a.x=3"], ["b=p", "b=q"], ["c.d=null"])
    assert [t.overrides for t in trials] == [tuple(e) for e in expected]
    assert len({t.id for t in trials}) == 6


def test_grid_values_may_be_yaml_lists_and_quoted_strings():
    key, values = parse_grid("model.hidden=[64, 64],[128],{a: 1, b: 2},'x,y'")
    assert key == "model.hidden"
    assert values == ["[64, 64]", "[128]", "{a: 1, b: 2}", "'x,y'"]
    # A quote opens a string only where YAML's would: a plain it's is one value, as before.
    assert parse_grid("run.name=it's,ok")[1] == ["it's", "ok"]
    assert parse_grid('k="a,\\"b",c')[1] == ['"a,\\"b"', "c"]
    trials = make_trials(["model.hidden=[64,64],[128]"])
    assert [t.overrides for t in trials] == [("model.hidden=[64,64]",), ("model.hidden=[128]",)]


@pytest.mark.parametrize(
    ("text", "words"),
    [("h=[64,64", "leaves a bracket open"), ("h=64],1", "closes nothing"), ("h='a,b", "' open")],
)
def test_unbalanced_grid_values_are_refused(text, words):
    with pytest.raises(UsageError, match=words):
        parse_grid(text)


def test_random_draws_lie_in_the_range_and_follow_the_seed():
    first = make_trials(ranges=["lr=0.5:2", "n=3:7"], random=50, seed=4)
    again = make_trials(ranges=["lr=0.5:2", "n=3:7"], random=50, seed=4)
    other = make_trials(ranges=["lr=0.5:2", "n=3:7"], random=50, seed=5)
    assert first == again and first != other
    lrs = [float(t.settings["lr"]) for t in first]
    ns = [t.settings["n"] for t in first]
    assert all(0.5 <= v <= 2 for v in lrs)
    assert {int(n) for n in ns} <= set(range(3, 8)) and all(n.isdigit() for n in ns)


def test_a_log_range_is_uniform_in_the_logarithm():
    rng = np.random.default_rng(0)
    span = parse_range("lr=1e-4:1:log")
    logs = np.log10([span.draw(rng) for _ in range(4000)])
    # log10 of a log-uniform draw on [1e-4, 1] is uniform on [-4, 0]: each unit has a quarter
    counts = np.histogram(logs, bins=4, range=(-4, 0))[0] / len(logs)
    assert logs.min() >= -4 and logs.max() <= 0
    assert np.allclose(counts, 0.25, atol=0.03)
    assert abs(np.median(logs) + 2) < 0.1  # a uniform draw's median would be near 0.5 (log -0.3)


def test_a_trial_is_named_by_its_overrides_alone():
    assert Trial(("a=1", "b=2")).id == Trial(("b=2", "a=1")).id != Trial(("a=1", "b=3")).id


@pytest.mark.parametrize(
    ("grid", "ranges", "random", "words"),
    [
        (["lr=0.1,"], [], 0, "empty"),
        (["lr="], [], 0, "empty"),
        (["=1,2"], [], 0, "KEY="),
        ([], ["lr=1:0.1"], 3, "below"),
        ([], ["lr=0:1:log"], 3, "LO > 0"),
        ([], ["lr=a:b"], 3, "numbers"),
        ([], ["lr=1:2:lin"], 3, "cannot read"),
        ([], ["lr=0.1:1"], 0, "--random"),
        (["lr=1,2"], ["lr=0.1:1"], 2, "twice"),
        ([], [], 0, "nothing to sweep"),
    ],
)
def test_bad_grids_and_ranges_say_what_is_wrong(grid, ranges, random, words):
    with pytest.raises(UsageError, match=words):
        make_trials(grid, ranges, random=random)


def test_a_key_the_config_lacks_is_the_first_trials_config_error(config, tmp_path):
    with pytest.raises(ConfigError, match="lrr"):
        run_sweep(config, make_trials(["train.optimizer.lrr=1,2"]), out=tmp_path / "s")
    assert not (tmp_path / "s").exists()  # refused before anything ran


def _val_loss(run_dir: str) -> float:
    return json.loads((Path(run_dir) / "summary.json").read_text())["best"]["value"]


def test_a_small_sweep_runs_every_trial_picks_the_best_and_skips_them_when_run_again(
    config, tmp_path
):
    out = tmp_path / "sweep"
    trials = make_trials(GRID)
    result = run_sweep(config, trials, out=out, workers=2)
    assert [t.status for t in result.trials] == ["completed"] * 4
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(folders) == 4 and all((p / "checkpoint.npz").is_file() for p in folders)
    losses = {t.id: _val_loss(t.run_dir) for t in result.trials}
    assert result.best.id == min(losses, key=losses.get)
    for trial, run in zip(trials, result.trials, strict=True):  # each folder has its settings
        text = (Path(run.run_dir) / "config.yaml").read_text()
        assert f"batch_size: {trial.settings['train.batch_size']}" in text

    again = run_sweep(config, trials, out=out, workers=2)
    assert all(t.reused for t in again.trials)
    assert sorted(p for p in out.iterdir() if p.is_dir()) == folders
    assert again.best.id == result.best.id


def test_a_stopped_sweep_keeps_finished_trials_and_a_rerun_does_the_rest(config, tmp_path):
    out = tmp_path / "sweep"
    trials = make_trials(GRID)
    stop = StopFlag()
    result = run_sweep(
        config, trials, out=out, workers=1, stop=stop, on_trial=lambda t: stop.request()
    )
    assert result.interrupted
    done = [t for t in result.trials if t.finished]
    assert 1 <= len(done) < 4
    recorded = json.loads((out / SWEEP_FILE).read_text())["trials"]
    assert {t["id"] for t in recorded} == {t.id for t in result.trials if t.run_dir}

    rest = run_sweep(config, trials, out=out, workers=2)
    assert all(t.finished for t in rest.trials)
    assert {t.id for t in rest.trials if t.reused} == {t.id for t in done}
    assert len([p for p in out.iterdir() if p.is_dir()]) == 4


def test_the_cli_prints_the_table_and_the_command_that_trains_the_best(config, tmp_path):
    out = tmp_path / "s"
    args = ["sweep", str(config), "--grid", GRID[0], "--workers", "2", "--out", str(out)]
    shown = CliRunner().invoke(app, args)
    assert shown.exit_code == 0, shown.output
    data = json.loads(CliRunner().invoke(app, [*args, "--json"]).output)
    best = data["best"]
    assert best["best_value"] == min(t["best_value"] for t in data["trials"])
    assert f"needle train {config} --set {best['overrides'][0]}" in shown.output
    assert all(t["reused"] for t in data["trials"])
    assert math.isfinite(best["val_loss"])


def test_the_cli_refuses_a_bad_grid_in_one_line(config):
    result = CliRunner().invoke(app, ["sweep", str(config), "--grid", "train.epochs="])
    assert "empty" in one_line_error(result, 2)
