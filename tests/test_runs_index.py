"""Run folders read back: statuses (a dead process's "running" reads "crashed"), epochs,
best and final metrics and time against the run's own history, start order, config
differences, and damaged folders listed with what is known."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from needle.errors import UsageError
from needle.train.config import parse_config
from needle.train.loop import BatchResult, Hooks, LoopState
from needle.train.runner import train
from needle.train.runs_index import (
    compare_runs,
    config_differences,
    flatten,
    list_runs,
    read_run,
)

TINY = """\
seed: 2
data: {dataset: spirals, samples: 90, classes: 3}
model: {layers: [{linear: 8}, relu, {linear: 3}]}
train: {epochs: 3, batch_size: 16, optimizer: {name: sgd, lr: 0.1}}
"""


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    first = train(parse_config(TINY, "t.yaml"), out=out, name="b")
    second = train(parse_config(TINY, "t.yaml", ["train.optimizer.lr=0.05"]), out=out, name="a")
    return out, first, second


def test_runs_are_listed_oldest_first_with_their_own_numbers(two_runs):
    out, first, second = two_runs
    found = list_runs(out)
    assert [r.name for r in found.runs] == ["b-1", "a-1"]  # by start time, not by name
    assert found.differs == ["train.optimizer.lr"]
    for run, result in zip(found.runs, (first, second), strict=True):
        assert (run.status, run.epochs, run.total_epochs) == ("completed", 3, 3)
        best = min(result.history, key=lambda m: m.val_loss)
        assert (run.best_metric, run.best_value, run.best_epoch) == (
            "val_loss",
            best.val_loss,
            best.epoch,
        )
        assert run.final["val_accuracy"] == result.history[-1].val_accuracy
        assert run.seconds == pytest.approx(sum(m.seconds for m in result.history))
        assert run.problems == ()
    assert found.runs[0].started < found.runs[1].started
    data = found.to_json()
    assert [r["config"] for r in data["runs"]] == [
        {"train.optimizer.lr": 0.1},
        {"train.optimizer.lr": 0.05},
    ]
    json.dumps(data, allow_nan=False)


def test_a_folder_that_is_one_run_lists_that_run(two_runs):
    out, first, _ = two_runs
    assert [r.name for r in list_runs(first.run_dir).runs] == ["b-1"]


def _copy(run_dir, tmp_path, name, summary_update=None, drop=()):
    copy = tmp_path / name
    shutil.copytree(run_dir, copy)
    if summary_update is not None:
        summary = json.loads((copy / "summary.json").read_text())
        summary.update(summary_update)
        (copy / "summary.json").write_text(json.dumps(summary))
    for file in drop:
        (copy / file).unlink()
    return copy


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_running_summary_is_checked_against_its_process(two_runs, tmp_path):
    run_dir = two_runs[1].run_dir
    host = socket.gethostname()
    cases = {
        "alive": ({"status": "running", "pid": os.getpid(), "host": host}, "running"),
        "dead": ({"status": "running", "pid": _dead_pid(), "host": host}, "crashed"),
        "elsewhere": ({"status": "running", "pid": os.getpid(), "host": host + "x"}, "running?"),
        "old": ({"status": "running", "pid": None}, "running?"),
        "stopped": ({"status": "interrupted", "pid": _dead_pid(), "host": host}, "interrupted"),
    }
    for name, (update, status) in cases.items():
        assert read_run(_copy(run_dir, tmp_path, name, update)).status == status, name


class ReadsItself(Hooks):
    """Reads its own run folder in the middle of the first epoch."""

    def __init__(self) -> None:
        self.seen = None

    def on_step(self, state: LoopState, batch: BatchResult) -> None:
        if (state.epoch, state.step) == (1, 2):
            run_dir = sorted(self.out.iterdir())[0]
            self.seen = read_run(run_dir)


def test_a_run_in_its_first_epoch_reads_running(tmp_path):
    hook = ReadsItself()
    hook.out = tmp_path
    train(parse_config(TINY, "t.yaml"), out=tmp_path, hooks=[hook])
    assert (hook.seen.status, hook.seen.epochs, hook.seen.total_epochs) == ("running", 0, 3)


def test_damaged_and_partial_folders_are_listed_with_what_is_known(two_runs, tmp_path):
    run_dir = two_runs[1].run_dir
    garbled = _copy(run_dir, tmp_path, "garbled")
    (garbled / "summary.json").write_text("{not json")
    (garbled / "config.yaml").write_text("a: [unclosed")
    no_summary = _copy(run_dir, tmp_path, "no-summary", drop=("summary.json",))
    with open(no_summary / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 4, "val_lo')  # a line cut short
    only_checkpoint = tmp_path / "only-checkpoint"
    only_checkpoint.mkdir()
    (only_checkpoint / "checkpoint.npz").write_bytes(b"")
    (tmp_path / "not-a-run").mkdir()
    found = {r.name: r for r in list_runs(tmp_path).runs}
    assert set(found) == {"garbled", "no-summary", "only-checkpoint"}
    g = found["garbled"]
    assert g.status == "unknown" and g.config == {} and g.epochs == 3  # from metrics.jsonl
    assert any("summary.json" in p for p in g.problems)
    assert any("config.yaml" in p for p in g.problems)
    n = found["no-summary"]
    history = two_runs[1].history
    best = min(history, key=lambda m: m.val_loss)
    assert (n.epochs, n.total_epochs, n.best_value) == (3, 3, best.val_loss)
    assert any("line 4" in p for p in n.problems)
    assert found["only-checkpoint"].epochs is None
    json.dumps(list_runs(tmp_path).to_json())


def test_listing_refuses_a_missing_folder_or_a_file(tmp_path):
    with pytest.raises(UsageError, match="'.*nowhere' not found"):
        list_runs(tmp_path / "nowhere")
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match="is a file"):
        list_runs(tmp_path / "f")


def test_compare_keeps_the_order_given_and_needs_two_runs(two_runs, tmp_path):
    _, first, second = two_runs
    found = compare_runs([second.run_dir, first.run_dir])
    assert [r.name for r in found.runs] == ["a-1", "b-1"]
    assert found.differs == ["train.optimizer.lr"]
    with pytest.raises(UsageError, match="two runs or more"):
        compare_runs([first.run_dir])
    with pytest.raises(UsageError, match="is not a run folder"):
        compare_runs([first.run_dir, tmp_path])


def test_flatten_writes_the_key_paths_set_would():
    nested = {"train": {"optimizer": {"lr": 0.1}}, "model": {"layers": [{"linear": 8}, "relu"]}}
    assert flatten(nested) == {
        "train.optimizer.lr": 0.1,
        "model.layers[0].linear": 8,
        "model.layers[1]": "relu",
    }


keys = st.sampled_from(["a", "b", "c.d", "e[0]"])
values = st.one_of(st.integers(-2, 2), st.sampled_from(["x", "y"]), st.none())


@given(st.lists(st.dictionaries(keys, values), min_size=1, max_size=4))
def test_a_key_differs_when_some_config_lacks_it_or_has_another_value(configs):
    differs = set(config_differences(configs))
    for key in {k for c in configs for k in c}:
        seen = [c[key] if key in c else "<missing>" for c in configs]
        same = all(v == seen[0] and type(v) is type(seen[0]) for v in seen)
        assert (key in differs) == (not same), (key, seen)
