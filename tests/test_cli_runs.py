"""`needle runs` and `needle compare` through the CLI: the table shows each run's own
numbers and only the keys that differ, --json is the library's data, and mistakes are one
error line."""

from __future__ import annotations

import json

import pytest
from cli_contract import one_line_error
from typer.testing import CliRunner

from needle.train.config import parse_config
from needle.train.runner import train
from needle_cli.app import app
from needle_cli.render import number

runner = CliRunner()

TINY = """\
seed: 3
data: {dataset: spirals, samples: 90, classes: 3}
model: {layers: [{linear: 8}, relu, {linear: 3}]}
train: {epochs: 2, batch_size: 16, optimizer: {name: sgd, lr: 0.1}}
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    one = train(parse_config(TINY, "t.yaml"), out=out, name="one")
    two = train(parse_config(TINY, "t.yaml", ["train.batch_size=8"]), out=out, name="two")
    return out, one, two


def test_runs_table_has_each_run_its_best_and_the_differing_key(runs):
    out, one, two = runs
    result = runner.invoke(app, ["runs", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "train.batch_size" in lines[0] and "train.optimizer.lr" not in lines[0]
    row = {line.split()[0]: line for line in lines[2:]}
    for name, run, batch in (("one-1", one, "16"), ("two-1", two, "8")):
        assert "completed" in row[name] and "2/2" in row[name]
        assert f"val_loss {number(run.best_value)} @{run.best_epoch}" in row[name]
        assert row[name].rstrip().endswith(batch)


def test_runs_json_is_the_listing(runs):
    out, one, two = runs
    result = runner.invoke(app, ["runs", str(out), "--json"])
    data = json.loads(result.stdout)
    assert data["differs"] == ["train.batch_size"]
    assert [r["name"] for r in data["runs"]] == ["one-1", "two-1"]
    assert [r["config"] for r in data["runs"]] == [
        {"train.batch_size": 16},
        {"train.batch_size": 8},
    ]
    assert data["runs"][1]["final"]["val_loss"] == two.history[-1].val_loss


def test_compare_puts_runs_in_columns(runs):
    _, one, two = runs
    result = runner.invoke(app, ["compare", str(two.run_dir), str(one.run_dir)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["two-1", "one-1"]
    # the table's rows start at the left edge; the curves below it are indented
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:] if line[:1].strip()}
    assert rows["val_loss"] == [number(two.history[-1].val_loss), number(one.history[-1].val_loss)]
    assert rows["train.batch_size"] == ["8", "16"]
    # then their curves, overlaid as `needle plot` draws them: a panel per default metric,
    # each run in the legend
    titles = [line.strip() for line in lines if line.strip() in ("train_loss", "val_loss")]
    assert titles == ["train_loss", "val_loss"]
    assert (
        sum("two-1" in line for line in lines) >= 2 and sum("one-1" in line for line in lines) >= 3
    )
    data = json.loads(
        runner.invoke(app, ["compare", str(one.run_dir), str(two.run_dir), "--json"]).stdout
    )
    assert [r["name"] for r in data["runs"]] == ["one-1", "two-1"]


def test_mistakes_are_one_error_line(runs, tmp_path):
    out, one, _ = runs
    message = one_line_error(runner.invoke(app, ["runs", str(tmp_path / "nowhere")]), 2)
    assert "nowhere' not found" in message
    message = one_line_error(runner.invoke(app, ["compare", str(one.run_dir)]), 2)
    assert "two runs or more (got 1)" in message
    message = one_line_error(runner.invoke(app, ["compare", str(one.run_dir), str(tmp_path)]), 2)
    assert "is not a run folder" in message


def test_an_empty_folder_says_so(tmp_path):
    result = runner.invoke(app, ["runs", str(tmp_path)])
    assert result.exit_code == 0 and "no runs in" in result.stdout
