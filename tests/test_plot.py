"""`needle plot` and `needle.train.history`: the series read back equal the run's metrics
files, the terminal plot shows each line in the legend and each series' extremes on its
axis, --png writes an image matplotlib reads back, and the errors name what is there."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from pathlib import Path

import pytest
from cli_contract import one_line_error
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from needle.errors import NeedleError, UsageError
from needle.train.checkpoint import EpochMetrics
from needle.train.history import default_metrics, finite_points, read_history
from needle.train.rundir import METRICS_CSV, METRICS_JSONL, write_metrics
from needle_cli.app import app
from needle_cli.charts import tick_label

runner = CliRunner()

TINY = """\
seed: 1
data: {dataset: moons, samples: 100}
model:
  layers:
    - linear: 8
    - relu
    - linear: 2
train: {epochs: 4, batch_size: 20, optimizer: {name: adam, lr: 0.02}}
"""


def run(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """Two trained runs of the tiny config, the second with another learning rate."""
    out = tmp_path_factory.mktemp("runs")
    config = out / "tiny.yaml"
    config.write_text(TINY)
    for extra in ([], ["--set", "train.optimizer.lr=0.005", "--set", "train.epochs=3"]):
        result = run("train", config, "--out", out, "--quiet", *extra)
        assert result.exit_code == 0, result.output
    return [out / "tiny-1", out / "tiny-2"]


def jsonl_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS_JSONL).read_text().splitlines()]


# -- reading -------------------------------------------------------------------------------


def test_the_series_read_equal_the_metrics_files(runs):
    for run_dir in runs:
        history = read_history(run_dir)
        rows = jsonl_rows(run_dir)
        assert history.epochs == tuple(row["epoch"] for row in rows)
        assert set(history.series) == set(rows[0]) - {"epoch"}
        for name, values in history.series.items():
            assert values == tuple(row[name] for row in rows)
        with open(run_dir / METRICS_CSV) as f:  # the CSV says the same to the last digit
            for row, values in zip(
                csv.DictReader(f), zip(*history.series.values(), strict=True), strict=True
            ):
                assert [float(row[name]) for name in history.series] == list(values)


def test_plot_json_is_the_data_drawn(runs):
    result = run("plot", *runs, "--json")
    assert result.exit_code == 0, result.output
    panels = {p["metric"]: p["lines"] for p in json.loads(result.stdout)["panels"]}
    assert list(panels) == ["train_loss", "val_loss", "val_accuracy", "lr"]
    for run_dir, line in zip(runs, panels["val_loss"], strict=True):
        rows = jsonl_rows(run_dir)
        assert line["label"] == run_dir.name
        assert line["epoch"] == [row["epoch"] for row in rows]
        assert line["value"] == [row["val_loss"] for row in rows]
    one = json.loads(run("plot", runs[0], "--json").stdout)["panels"]
    assert [p["metric"] for p in one] == ["loss", "accuracy", "lr"]
    assert [line["label"] for line in one[0]["lines"]] == ["train_loss", "val_loss"]


finite_or_not = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(-5, 5)
)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {"train_loss": finite_or_not, "lr": finite_or_not},
            optional={
                "layers": st.fixed_dictionaries(
                    {"0": st.fixed_dictionaries({"norm": finite_or_not})}
                )
            },
        ),
        min_size=1,
        max_size=6,
    )
)
def test_any_row_reads_back_number_for_number(tmp_path_factory, rows):
    run_dir = tmp_path_factory.mktemp("run")
    lines = [json.dumps({"epoch": i + 1, **row}) for i, row in enumerate(rows)]
    (run_dir / METRICS_JSONL).write_text("\n".join(lines) + "\n")
    history = read_history(run_dir)
    assert history.epochs == tuple(range(1, len(rows) + 1))

    def same(a, b):
        return a is b is None or (a is not None and b is not None and (a == b or a != a and b != b))

    for name, get in (
        ("train_loss", lambda r: r["train_loss"]),
        ("lr", lambda r: r["lr"]),
        ("layers.0.norm", lambda r: r["layers"]["0"]["norm"] if "layers" in r else None),
    ):
        wanted = [get(r) for r in rows]
        got = history.series.get(name, (None,) * len(rows))
        assert all(same(a, b) for a, b in zip(got, wanted, strict=True)), (name, got, wanted)
        # what is drawn: exactly the finite values, at their epochs
        x, y = finite_points(history.epochs, got)
        assert y == [float(v) for v in wanted if v is not None and math.isfinite(v)]
        assert x == [i + 1 for i, v in enumerate(wanted) if v is not None and math.isfinite(v)]


def test_a_language_models_defaults_are_perplexity(tmp_path):
    history = [EpochMetrics(e, 3.0 / e, 0.2 * e, 3.2 / e, 0.2 * e, 0.1, 0.01) for e in (1, 2, 3)]
    write_metrics(tmp_path, history, perplexity=True)
    read = read_history(tmp_path)
    assert read.language_model
    assert default_metrics([read]) == ["loss", "perplexity", "lr"]
    assert read.select("perplexity")["val_perplexity"] == tuple(
        math.exp(m.val_loss) for m in history
    )


# -- drawing -------------------------------------------------------------------------------


def axis_labels(text: str) -> list[str]:
    """The y tick labels of a plotext plot: what stands before each `┤`."""
    return [line.split("┤")[0].strip() for line in text.splitlines() if "┤" in line]


def test_the_terminal_plot_has_the_legend_and_each_series_extremes(runs):
    result = run("plot", *runs)
    assert result.exit_code == 0, result.output
    text = result.stdout
    for run_dir in runs:
        assert text.count(f" {run_dir.name} ") == 4  # in the legend of each of the 4 panels
    labels = axis_labels(text)
    for metric in ("train_loss", "val_loss", "val_accuracy"):
        values = [row[metric] for run_dir in runs for row in jsonl_rows(run_dir)]
        assert tick_label(min(values)) in labels and tick_label(max(values)) in labels, metric
    assert tick_label(0.02) in labels and tick_label(0.005) in labels  # the two rates
    # piped: no colour codes, and lines told apart by their markers instead
    assert "\x1b[" not in text and "• tiny-2" in text


def test_metric_picks_the_panels_and_colour_only_on_a_terminal(runs, monkeypatch):
    from rich.console import Console

    import needle_cli.plot

    result = run("plot", runs[0], "--metric", "train_accuracy")
    assert result.exit_code == 0, result.output
    accuracy = [row["train_accuracy"] for row in jsonl_rows(runs[0])]
    assert axis_labels(result.stdout)[0] == tick_label(max(accuracy))
    assert "train_accuracy" in result.stdout and "val_loss" not in result.stdout

    stream = io.StringIO()
    terminal = Console(file=stream, force_terminal=True, color_system="256", width=90)
    monkeypatch.setattr(needle_cli.plot, "console", lambda: terminal)
    assert run("plot", runs[0], "--metric", "loss").exit_code == 0
    shown = stream.getvalue()
    assert "\x1b[" in shown  # coloured
    plain = re.sub(r"\x1b\[[0-9;]*m", "", shown)
    assert max(len(line) for line in plain.splitlines()) <= 90  # within the terminal
    assert "train_loss" in shown and "val_loss" in shown


def test_a_terminal_run_ends_with_its_loss_curve_a_pipe_and_quiet_do_not(tmp_path, monkeypatch):
    from rich.console import Console

    import needle_cli.train

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    piped = run("train", config, "--out", tmp_path)
    assert piped.exit_code == 0 and "┤" not in piped.stdout
    stream = io.StringIO()
    terminal = Console(file=stream, force_terminal=True, color_system=None, width=100)
    monkeypatch.setattr(needle_cli.train, "console", lambda: terminal)
    assert run("train", config, "--out", tmp_path).exit_code == 0
    shown = stream.getvalue()
    losses = [row["train_loss"] for row in jsonl_rows(tmp_path / "tiny-2")]
    losses += [row["val_loss"] for row in jsonl_rows(tmp_path / "tiny-2")]
    assert "train_loss" in shown and "val_loss" in shown
    assert tick_label(max(losses)) in axis_labels(shown)
    for quiet in (["--quiet"], ["--json"]):
        stream.seek(0), stream.truncate()
        assert run("train", config, "--out", tmp_path, *quiet).exit_code == 0
        assert "┤" not in stream.getvalue()


def test_png_is_an_image_matplotlib_reads_back(runs, tmp_path):
    pytest.importorskip("matplotlib", reason="--png needs the plot extra")
    from matplotlib.image import imread

    path = tmp_path / "curves.png"
    result = run("plot", *runs, "--png", path)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {path}"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    # 7 inches wide, 2.6 a panel (4 panels), at 120 dots an inch, RGBA
    assert pixels.shape == (round(4 * 2.6 * 120), 7 * 120, 4)
    assert pixels[..., :3].std() > 0.05  # something drawn, not a blank page


def test_png_without_matplotlib_says_which_extra(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if absent
    result = run("plot", runs[0], "--png", tmp_path / "x.png")
    assert "pip install 'needle[plot]'" in one_line_error(result, 1)
    assert not (tmp_path / "x.png").exists()


# -- errors --------------------------------------------------------------------------------


def test_a_folder_that_is_not_a_run(tmp_path, runs):
    result = run("plot", tmp_path)
    wanted = f"'{tmp_path}' is not a run folder: it has no metrics.jsonl"
    assert wanted in one_line_error(result, 2)
    assert "not found" in one_line_error(run("plot", tmp_path / "nowhere"), 2)


def test_a_metric_the_run_lacks_names_those_it_has(runs):
    line = one_line_error(run("plot", runs[0], "--metric", "val_acc"), 2)
    assert "has no metric 'val_acc'; did you mean 'val_accuracy'?" in line
    for name in [*jsonl_rows(runs[0])[0]][1:] + ["loss", "accuracy"]:
        assert name in line
    assert "perplexity" not in line  # not a language model's run


def test_a_damaged_or_empty_metrics_file(tmp_path):
    (tmp_path / METRICS_JSONL).write_text('{"epoch": 1, "train_loss": 0.5}\n{"epoch": 2, "tr\n')
    with pytest.raises(NeedleError, match=rf"{METRICS_JSONL}:2: not a JSON line"):
        read_history(tmp_path)
    (tmp_path / METRICS_JSONL).write_text("")
    assert "no finished epoch" in one_line_error(run("plot", tmp_path), 1)
    with pytest.raises(UsageError):
        read_history(tmp_path).select("loss")


# -- per-layer statistics (--stat) -----------------------------------------------------------


@pytest.fixture(scope="module")
def stats_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stats")
    config = out / "tiny.yaml"
    config.write_text(TINY)
    result = run("train", config, "--out", out, "--quiet", "--set", "train.log_stats=true")
    assert result.exit_code == 0, result.output
    return out / "tiny-1"


@pytest.mark.parametrize("stat", ["grad_norm", "weight_norm", "update_ratio", "dead_relu"])
def test_stat_draws_a_line_per_layer_with_the_values_of_metrics_jsonl(stats_run, stat):
    rows = jsonl_rows(stats_run)
    layers = {layer for row in rows for layer, values in row["stats"].items() if stat in values}
    result = run("plot", stats_run, "--stat", stat, "--json")
    assert result.exit_code == 0, result.output
    (drawn,) = json.loads(result.output)["panels"]
    assert drawn["metric"] == stat
    assert {line["label"] for line in drawn["lines"]} == layers
    for line in drawn["lines"]:
        expected = [(r["epoch"], r["stats"][line["label"]][stat]) for r in rows]
        assert list(zip(line["epoch"], line["value"], strict=True)) == expected
    shown = run("plot", stats_run, "--stat", stat, "--width", "80")
    assert shown.exit_code == 0 and all(layer in shown.output for layer in layers)


def test_stat_names_the_statistics_a_run_has_or_says_it_logged_none(stats_run, runs):
    line = one_line_error(run("plot", stats_run, "--stat", "grad_nrom"), 2)
    assert "no statistic 'grad_nrom'" in line
    assert all(s in line for s in ("grad_norm", "weight_norm", "update_ratio", "dead_relu"))
    assert "without train.log_stats" in one_line_error(
        run("plot", runs[0], "--stat", "grad_norm"), 2
    )
