"""`needle train`, `needle evaluate` and `needle schema` through CliRunner, and Ctrl-C /
SIGTERM in a real subprocess. Numbers and exit codes are asserted, not just output. (Mutated
configs are in test_robustness.py.)"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from needle.train.checkpoint import load_checkpoint
from needle.train.config import parse_config
from needle.train.rundir import CHECKPOINT_FILE
from needle_cli.app import app
from needle_cli.progress import epoch_text, percent
from needle_cli.render import number

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

TINY = """\
seed: 1
data: {dataset: moons, samples: 100}
model:
  layers:
    - linear: 8
    - relu
    - linear: 2
train: {epochs: 2, batch_size: 20}
"""


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def last_json(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_quickstart_trains_to_95_percent_in_under_30_seconds(tmp_path):
    began = time.perf_counter()
    result = run("train", ROOT / "configs" / "quickstart.yaml", "--out", tmp_path, "--json")
    seconds = time.perf_counter() - began
    assert result.exit_code == 0, result.output
    summary = last_json(result)
    assert summary["epochs"] == 20 and summary["status"] == "completed"
    assert summary["val_accuracy"] >= 0.95
    assert seconds < 30
    assert summary["run_dir"] == str(tmp_path / "quickstart-1")


# What only a progress bar shows: the bar and its count, the phase label, the rates.
BAR_TEXT = r"━ +\d+/\d+ |validating|samples/s|\beta \d"


def test_plain_lines_per_epoch_when_not_a_terminal_and_a_final_table(tiny, tmp_path):
    result = run("train", tiny, "--out", tmp_path / "runs", "--set", "train.epochs=3")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "tiny-1"
    saved = load_checkpoint(run_dir / CHECKPOINT_FILE)
    lines = result.stdout.splitlines()
    # one line to say what trains, then exactly one per epoch, then the final table
    assert lines[:5] == [
        f"training {run_dir}: moons (100 samples, seed 1), 80 train / 20 val samples, "
        "2 features, 2 classes",
        *(epoch_text(m, 3) for m in saved.history),
        f"run {run_dir}",
    ]
    assert [line.split()[1] for line in lines[1:4]] == ["1/3", "2/3", "3/3"]
    assert not re.search(BAR_TEXT, result.stdout)
    val_acc = f"{100 * saved.history[-1].val_accuracy:.2f}%"
    assert re.search(r"│\s+3/3 │.*│ +" + re.escape(val_acc) + r" │", result.stdout)


def test_progress_ticks_say_their_phase_and_batch_size(tmp_path):
    from needle.train import reports, runner

    ticks = []
    callbacks = reports.Callbacks(on_step=ticks.append, on_validate=ticks.append)
    result = runner.train(parse_config(TINY, "tiny.yaml"), out=tmp_path, callbacks=callbacks)
    # per epoch: 4 training steps of 20 samples, then 1 validation batch of 20
    expected = [("train", s, 4) for s in (1, 2, 3, 4)] + [("validate", 1, 1)]
    for epoch, m in zip((1, 2), result.history, strict=True):
        mine = [t for t in ticks if t.epoch == epoch]
        assert [(t.phase, t.step, t.steps) for t in mine] == expected
        assert [t.samples for t in mine] == [20] * 5 and {t.epochs for t in mine} == {2}
        last_train, validation = mine[3], mine[4]  # running means over each whole phase
        assert (last_train.loss, last_train.accuracy) == (m.train_loss, m.train_accuracy)
        assert (validation.loss, validation.accuracy) == (m.val_loss, m.val_accuracy)


def screen(stream: str) -> list[str]:
    """The lines a terminal shows once it has received `stream`: the text with the controls
    rich's live display uses applied (carriage return, erase line, cursor up); others, such
    as hiding the cursor, change nothing visible."""
    lines, row, col = [""], 0, 0
    for token in re.split(r"(\x1b\[[0-9;?]*[A-Za-z]|\r|\n)", stream):
        if token == "\n":
            row, col = row + 1, 0
            lines += [""] * (row + 1 - len(lines))
        elif token == "\r":
            col = 0
        elif token == "\x1b[2K":
            lines[row] = ""
        elif up := re.fullmatch(r"\x1b\[(\d*)A", token):
            row = max(0, row - int(up[1] or 1))
        elif token and not token.startswith("\x1b["):
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token) :]
            col += len(token)
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.rstrip() for line in lines]


def test_terminal_bars_per_phase_leave_one_line_per_epoch(tiny, tmp_path, monkeypatch):
    from rich.console import Console

    import needle_cli.train

    stream = io.StringIO()
    terminal = Console(file=stream, force_terminal=True, color_system=None, width=120)
    monkeypatch.setattr(needle_cli.train, "console", lambda: terminal)
    result = run("train", tiny, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    saved = load_checkpoint(tmp_path / "tiny-1" / CHECKPOINT_FILE)
    sent, shown = stream.getvalue(), screen(stream.getvalue())
    # while it ran: a bar for each epoch's 4 training steps, then a labelled validation bar
    # of its 1 batch, each with steps done, running loss and accuracy, samples/s and ETA
    rate = r" [\d,]+ samples/s +eta \d+:\d\d"
    for m in saved.history:
        assert re.search(rf"epoch {m.epoch}/2 ━+ +1/4 loss [\d.]+ +acc [\d.]+%{rate}", sent)
        val = rf"loss {re.escape(number(m.val_loss))} +acc {re.escape(percent(m.val_accuracy))}"
        assert re.search(rf"validating ━+ 1/1 {val}{rate}", sent)
    # once it is done: the bars are gone; what stays is one line per epoch and the table
    assert shown[1:4] == [*(epoch_text(m, 2) for m in saved.history), f"run {tmp_path / 'tiny-1'}"]
    assert not [line for line in shown if re.search(BAR_TEXT, line)]
    assert shown[7].startswith("│    2/2 │") and shown[8].startswith("└")
    # and below the table, the run's loss curve (tests/test_plot.py checks what it draws)
    assert shown[9].strip() == "loss" and "train_loss" in "".join(shown[10:])


def test_the_screen_helper_applies_what_a_terminal_does():
    # a bar drawn, redrawn over itself, then erased, between two permanent lines
    stream = "a\n\x1b[?25l\r\x1b[2Kbar 1\r\x1b[2Kbar 2\nmore\r\x1b[2K\x1b[1A\x1b[2Kb\n"
    assert screen(stream) == ["a", "b"]
    assert screen("abc\rX") == ["Xbc"]


def cells(text: str) -> list[list[str]]:
    """The header and body rows of the rich tables in `text`, each a list of its cells."""
    rows = [line for line in text.splitlines() if line[:1] in ("│", "┃")]
    return [[cell.strip() for cell in re.split("[│┃]", row)[1:-1]] for row in rows]


def test_piped_tables_keep_every_digit_at_a_narrow_width(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")  # a log of a narrow terminal: `needle ... | tee log`
    trained = run("train", tiny, "--out", tmp_path)
    assert trained.exit_code == 0, trained.output
    saved = load_checkpoint(tmp_path / "tiny-1" / CHECKPOINT_FILE)
    last, seconds = saved.history[-1], sum(m.seconds for m in saved.history)
    assert cells(trained.stdout) == [
        ["epochs", "time", "train loss", "train acc", "val loss", "val acc"],
        ["2/2", f"{seconds:.1f}s", number(last.train_loss), percent(last.train_accuracy)]
        + [number(last.val_loss), percent(last.val_accuracy)],
    ]
    evaluation = last_json(run("evaluate", tmp_path / "tiny-1", "--json"))
    table = run("evaluate", tmp_path / "tiny-1")
    matrix = evaluation["confusion_matrix"]
    assert cells(table.stdout) == [
        ["samples", "loss", "accuracy"],
        [str(evaluation["samples"]), number(evaluation["loss"]), percent(evaluation["accuracy"])],
        ["", *map(str, range(len(matrix)))],
        *([str(c), *map(str, row)] for c, row in enumerate(matrix)),
    ]
    assert "…" not in trained.stdout + table.stdout
    assert f"{tmp_path / 'tiny-1' / CHECKPOINT_FILE} (epoch 2) on validation split" in table.stdout


def test_quiet_prints_nothing_and_json_is_the_last_line(tiny, tmp_path):
    quiet = run("train", tiny, "--out", tmp_path, "--quiet")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""
    both = run("train", tiny, "--out", tmp_path, "--quiet", "--json")
    assert len(both.stdout.splitlines()) == 1
    summary = last_json(both)
    assert set(summary) >= {
        "run_dir",
        "epochs",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
    }
    assert summary["run_dir"] == str(tmp_path / "tiny-2")
    saved = load_checkpoint(tmp_path / "tiny-2" / CHECKPOINT_FILE)
    assert summary["val_loss"] == saved.history[-1].val_loss


def test_set_overrides_and_same_numbers_twice(tiny, tmp_path):
    a = last_json(run("train", tiny, "--out", tmp_path, "--set", "train.epochs=3", "--json"))
    b = last_json(run("train", tiny, "--out", tmp_path, "--set", "train.epochs=3", "--json"))
    assert a["epochs"] == b["epochs"] == 3
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert a[key] == b[key]
    assert a["run_dir"] != b["run_dir"]


def test_print_config_is_the_resolved_config(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("train", tiny, "--print-config", "--set", "train.optimizer=sgd")
    assert result.exit_code == 0
    printed = parse_config(result.stdout, "printed.yaml")
    assert printed.model_dump() == parse_config(TINY, "t", ["train.optimizer=sgd"]).model_dump()
    assert yaml.safe_load(result.stdout)["train"]["optimizer"]["momentum"] == 0.0
    assert not (tmp_path / "runs").exists()


def test_dry_run_prints_the_model_and_writes_nothing(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("train", tiny, "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "data: moons (100 samples, seed 1): 80 train / 20 val samples, 2 features, 2 classes\n"
    )
    # 2*8 + 8 and 8*2 + 2 parameters; a multiply-add per weight counts 2, a bias add 1
    flops = [(2 * 2 + 1) * 8, 0, (2 * 8 + 1) * 2]
    assert re.search(
        rf"│ 0 +│ linear +│ +\(batch, 8\) │ +24 │ +{flops[0]} │ kaiming_uniform\(\)", result.stdout
    )
    assert re.search(rf"│ 2 +│ linear +│ +\(batch, 2\) │ +18 │ +{flops[2]} │", result.stdout)
    assert (
        f"42 parameters, {sum(flops)} FLOPs per sample (forward, a multiply-add as 2); dry run: "
        "nothing trained, nothing written"
    ) in result.stdout
    assert not (tmp_path / "runs").exists()
    summary = last_json(run("train", tiny, "--dry-run", "--json"))
    assert summary["parameters"] == 42 and summary["data"]["train"] == 80
    assert summary["flops"] == sum(flops)
    assert [layer["flops"] for layer in summary["layers"]] == flops


def test_a_list_index_can_be_written_with_a_dot_which_zsh_leaves_alone(tiny):
    """`model.layers[0]` unquoted is a glob in zsh (macOS's shell); `model.layers.0` is not."""
    dotted, bracketed = (
        last_json(run("train", tiny, "--dry-run", "--json", "--set", f"{key}.linear=16"))
        for key in ("model.layers.0", "model.layers[0]")
    )
    assert dotted == bracketed
    assert [layer["out_features"] for layer in dotted["layers"]] == [16, 16, 2]
    assert dotted["parameters"] == (2 * 16 + 16) + (16 * 2 + 2)


@pytest.mark.parametrize("name", ["mnist_mlp", "mlp_resnet"])
def test_mnist_configs_build_on_an_mnist_folder(tmp_path, name):
    from test_datasets import make_mnist

    from needle import models

    make_mnist(tmp_path / "mnist")
    config = ROOT / "configs" / f"{name}.yaml"
    result = run("train", config, "--dry-run", "--json", "--set", f"data.path={tmp_path / 'mnist'}")
    assert result.exit_code == 0, result.output
    summary = last_json(result)
    assert summary["data"]["in_features"] == 784 and summary["data"]["val"] == 5
    course = models.MLPResNet(784) if name == "mlp_resnet" else None
    expected = (
        sum(p.numpy().size for p in course.parameters()) if course else 784 * 256 + 256 + 2570
    )
    assert summary["parameters"] == expected


def test_dry_run_refuses_a_model_that_does_not_fit_before_writing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.yaml"
    path.write_text(TINY.replace("    - linear: 2\n", "    - linear: 5\n"))
    for extra in (["--dry-run"], []):
        result = run("train", path, *extra)
        assert result.exit_code == 2
        assert result.stderr == (
            f"error: {path}:7:15: model.layers[2].linear.out_features: the model puts out 5 "
            "values per sample but the data has 2 classes; the last layer must put out 2\n"
        )
        assert not (tmp_path / "runs").exists()


def test_config_error_is_one_line_exit_2_nothing_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.yaml"
    path.write_text(TINY.replace("batch_size: 20", "batch_size: 0"))
    result = run("train", path)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {path}:8:32: train.batch_size: must be a positive integer (got 0)\n"
    )
    assert result.stdout == ""
    assert not (tmp_path / "runs").exists()
    result = run("train", path, "--set", "train.batch_size=x")
    assert result.stderr == (
        "error: --set train.batch_size=x: train.batch_size: must be an integer (got 'x')\n"
    )


def test_usage_errors(tiny, tmp_path):
    assert run("train").stderr == (
        "error: give a CONFIG file to start a run, or --resume RUN_DIR to continue one\n"
    )
    both = run("train", tiny, "--resume", tmp_path)
    assert both.exit_code == 2
    for option in ("--dry-run", "--print-config", "--out=runs"):
        result = run("train", "--resume", tmp_path, option)
        assert (result.exit_code, result.stderr) == (
            2,
            "error: --out, --dry-run and --print-config apply to a new run, not --resume\n",
        )
    missing = run("train", "--resume", tmp_path / "nope")
    assert (missing.exit_code, missing.stderr) == (
        2,
        f"error: run folder '{tmp_path / 'nope'}' not found\n",
    )


def test_resume_through_the_cli(tiny, tmp_path):
    first = last_json(run("train", tiny, "--out", tmp_path, "--json"))
    again = run("train", "--resume", first["run_dir"], "--set", "train.epochs=3", "--json")
    assert again.exit_code == 0, again.output
    assert last_json(again)["epochs"] == 3
    straight = last_json(run("train", tiny, "--out", tmp_path, "--set", "train.epochs=3", "--json"))
    assert last_json(again)["val_loss"] == straight["val_loss"]
    done = run("train", "--resume", first["run_dir"])
    assert done.exit_code == 2 and "has already trained 3 of train.epochs=3" in done.stderr


def test_divergence_exits_1_with_one_line(tmp_path):
    path = tmp_path / "hot.yaml"
    path.write_text(TINY.replace("batch_size: 20}", "batch_size: 20, optimizer: {lr: 1.0e+30}}"))
    result = run("train", path, "--out", tmp_path, "--quiet")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: the loss became nan at epoch 1, step ")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.output


def test_evaluate_reports_the_runs_numbers_and_a_confusion_matrix(tiny, tmp_path):
    summary = last_json(run("train", tiny, "--out", tmp_path, "--json"))
    result = run("evaluate", summary["run_dir"], "--json")
    assert result.exit_code == 0, result.output
    evaluation = last_json(result)
    assert evaluation["loss"] == summary["val_loss"]
    assert evaluation["accuracy"] == summary["val_accuracy"]
    matrix = np.array(evaluation["confusion_matrix"])
    assert matrix.sum() == evaluation["samples"] == 20
    assert np.trace(matrix) / 20 == evaluation["accuracy"]
    table = run("evaluate", Path(summary["run_dir"]) / CHECKPOINT_FILE)
    assert table.exit_code == 0
    assert f"{100 * summary['val_accuracy']:.2f}%" in table.stdout
    row0 = " │ ".join(str(v) for v in matrix[0])
    assert re.search(r"│ 0 │ +" + row0.replace(" │ ", r" │ +") + " │", table.stdout)


def test_evaluate_leaves_out_a_confusion_matrix_too_wide_to_read(tmp_path):
    from needle_cli.evaluate import CONFUSION_LIMIT

    classes = CONFUSION_LIMIT + 1
    path = tmp_path / "wide.yaml"
    path.write_text(
        TINY.replace("moons, samples: 100", f"blobs, samples: 210, classes: {classes}")
        .replace("linear: 2", f"linear: {classes}")
        .replace("epochs: 2", "epochs: 1")
    )
    summary = last_json(run("train", path, "--out", tmp_path, "--json"))
    table = run("evaluate", summary["run_dir"])
    assert table.exit_code == 0, table.output
    assert f"confusion matrix: {classes} classes, too many to show (see --json)" in table.stdout
    assert "rows: true class" not in table.stdout
    matrix = last_json(run("evaluate", summary["run_dir"], "--json"))["confusion_matrix"]
    assert np.array(matrix).shape == (classes, classes)


def test_evaluate_other_data_and_errors(tiny, tmp_path):
    summary = last_json(run("train", tiny, "--out", tmp_path, "--json"))
    np.savez(tmp_path / "d.npz", X=np.ones((6, 2)), y=np.array([0, 1, 0, 1, 0, 1]))
    other = last_json(run("evaluate", summary["run_dir"], "--data", tmp_path / "d.npz", "--json"))
    assert other["samples"] == 6 and other["accuracy"] == 0.5  # one input, one prediction
    missing = run("evaluate", tmp_path / "nothing")
    assert (missing.exit_code, missing.stderr) == (
        2,
        f"error: '{tmp_path / 'nothing'}' not found: give a run folder or a checkpoint .npz\n",
    )
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip at all")
    result = run("evaluate", corrupt)
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: checkpoint '{corrupt}' is not an .npz file (it does not start like a zip)\n",
    )


def test_schema_is_json_schema(tmp_path):
    result = run("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "needle training config"
    assert "Layer" in schema["$defs"] and schema["required"] == ["model"]


# -- signals in a real process ----------------------------------------------------------------


@pytest.mark.parametrize(
    "signum, code, name",
    [
        (signal.SIGINT, 130, "Ctrl-C"),
        (signal.SIGTERM, 143, "SIGTERM"),
        (signal.SIGHUP, 129, "SIGHUP"),
    ],
)
def test_signal_saves_a_checkpoint_and_prints_the_resume_command(tmp_path, signum, code, name):
    config = tmp_path / "long.yaml"
    config.write_text(TINY.replace("epochs: 2", "epochs: 100000"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "needle_cli", "train", str(config), "--out", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    for line in proc.stdout:  # wait until training is under way
        if line.startswith("epoch 3/"):
            break
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    run_dir = tmp_path / "long-1"
    assert proc.returncode == code, stderr
    lines = stderr.splitlines()
    assert (
        lines[0]
        == f"{name}: stopping after this step to save a checkpoint ({name} again stops at once)"
    )
    assert re.fullmatch(
        rf"stopped at epoch (\d+), step (\d+); checkpoint saved to {re.escape(str(run_dir))}/"
        r"checkpoint\.npz",
        lines[1],
    )
    assert lines[2:] == [f"resume with: needle train --resume {run_dir}"]
    epoch, step = map(int, re.findall(r"\d+", lines[1])[:2])
    saved = load_checkpoint(run_dir / CHECKPOINT_FILE)
    assert (saved.epoch, saved.step) in ((epoch - 1, step), (epoch, 0))
    assert "Traceback" not in stderr
    # the printed command works (with fewer epochs, so that it ends)
    again = run("train", "--resume", run_dir, "--set", f"train.epochs={epoch + 1}", "--json")
    assert again.exit_code == 0, again.output
    assert last_json(again)["epochs"] == epoch + 1


def test_stopped_at_once_names_the_checkpoint_kept_wherever_it_stopped(tmp_path, capsys):
    import typer

    from needle.train import reports, runner, signals
    from needle_cli.train import _stopped_at_once

    flag = signals.StopFlag()

    def stop_inside_epoch_2(p):
        if (p.epoch, p.step) == (2, 3):
            flag.request()

    callbacks = reports.Callbacks(on_step=stop_inside_epoch_2)
    config = parse_config(TINY, "tiny.yaml")
    run_dir = runner.train(config, out=tmp_path, callbacks=callbacks, stop=flag).run_dir
    cases = [
        (run_dir, "kept the last checkpoint, at epoch 2, step 3"),
        (runner.train(config, out=tmp_path).run_dir, "kept the last checkpoint, after epoch 2"),
        (None, "before training began: nothing to resume"),
    ]
    for where, kept in cases:
        with pytest.raises(typer.Exit) as stopped:
            _stopped_at_once(where, signal.SIGTERM)
        assert stopped.value.exit_code == 128 + signal.SIGTERM
        said = capsys.readouterr().err.splitlines()
        assert said[0].startswith("stopped at once by a second SIGTERM") and kept in said[0]
        if where is not None:
            assert said == [
                f"stopped at once by a second SIGTERM; {kept}, in {where / CHECKPOINT_FILE}",
                f"resume with: needle train --resume {where}",
            ]


def test_the_data_line_gives_an_image_samples_shape(tmp_path):
    from test_datasets import make_mnist

    make_mnist(tmp_path / "mnist")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {{dataset: mnist, path: {tmp_path / 'mnist'}}}\n"
        "model: {layers: [{linear: 10}]}\n"
    )
    result = runner.invoke(app, ["train", str(config), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "samples, each 1×28×28, 10 classes" in result.stdout
