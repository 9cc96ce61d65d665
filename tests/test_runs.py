"""Runs: folders, checkpoints, bit-identical resume (at and inside epochs), determinism,
divergence, corrupt or foreign checkpoints, evaluation, and the model builder."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from checkpoints import assert_same_state

from needle import init, models, nn
from needle.errors import NeedleWarning, UsageError
from needle.fileio import TEMP_PREFIX, atomic_writer, write_text
from needle.train.build import build_model, plan_model
from needle.train.checkpoint import load_checkpoint
from needle.train.config import config_to_yaml, parse_config
from needle.train.datasets import load_data
from needle.train.evaluate import evaluate, measure_split
from needle.train.normalize import Normalization
from needle.train.reports import Callbacks
from needle.train.rundir import CHECKPOINT_FILE, new_run_dir
from needle.train.runner import TrainingDiverged, resume, train
from needle.train.session import prepare
from needle.train.signals import StopFlag

ROOT = Path(__file__).resolve().parents[1]

# Small enough to train 4 epochs in well under a second; dropout and batchnorm make the RNG
# stream and the running statistics part of what must survive a checkpoint.
TINY = """\
seed: 3
data: {dataset: spirals, samples: 150, classes: 3}
model:
  layers:
    - linear: 16
    - batchnorm1d
    - relu
    - dropout: 0.2
    - linear: 3
train:
  epochs: 4
  batch_size: 16
  optimizer: {name: adam, lr: 0.02}
"""


def config(*overrides: str, text: str = TINY):
    return parse_config(text, "tiny.yaml", list(overrides))


def final(run_dir: Path):
    return load_checkpoint(run_dir / CHECKPOINT_FILE)


def test_run_folder_files_and_numbers(tmp_path):
    result = train(config(), out=tmp_path, name="tiny")
    run = tmp_path / "tiny-1"
    assert result.run_dir == run and result.status == "completed" and result.epochs == 4
    assert sorted(p.name for p in run.iterdir()) == [
        "best.npz",
        "checkpoint.npz",
        "config.yaml",
        "metrics.csv",
        "metrics.jsonl",
        "summary.json",
    ]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    csv_lines = (run / "metrics.csv").read_text().splitlines()
    assert csv_lines[0] == "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,lr"
    assert float(csv_lines[-1].split(",")[3]) == rows[-1]["val_loss"] == result.last.val_loss
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["val_accuracy"] == result.last.val_accuracy
    # the saved config is the resolved one: loading it gives the same config
    again = parse_config((run / "config.yaml").read_text(), "saved.yaml")
    assert again.model_dump() == config().model_dump()
    assert not list(run.glob(f"{TEMP_PREFIX}*"))


def test_run_folders_are_never_reused(tmp_path):
    (tmp_path / "tiny-7").mkdir()
    (tmp_path / "tiny-x").mkdir()
    assert new_run_dir(tmp_path, "tiny") == tmp_path / "tiny-8"
    assert new_run_dir(tmp_path, "tiny") == tmp_path / "tiny-9"
    assert new_run_dir(tmp_path, "other") == tmp_path / "other-1"


def test_same_config_same_numbers(tmp_path):
    a = train(config(), out=tmp_path, name="a")
    b = train(config(), out=tmp_path, name="b")
    assert_same_state(final(a.run_dir), final(b.run_dir))
    c = train(config("seed=4"), out=tmp_path, name="c")
    assert c.last.train_loss != a.last.train_loss


def test_two_epochs_then_resume_to_four_equals_four_straight(tmp_path):
    straight = train(config(), out=tmp_path, name="straight")
    half = train(config("train.epochs=2"), out=tmp_path, name="half")
    assert half.epochs == 2
    resumed = resume(half.run_dir, ["train.epochs=4"])
    assert resumed.status == "completed" and resumed.epochs == 4
    assert_same_state(final(straight.run_dir), final(resumed.run_dir))
    # the raised epoch count is saved, so the run folder stays self-describing
    assert "epochs: 4" in (half.run_dir / "config.yaml").read_text()
    assert len((half.run_dir / "metrics.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize("stop_at", [(2, 3), (1, 1), (4, 7)])
def test_stop_inside_an_epoch_then_resume_equals_straight(tmp_path, stop_at):
    straight = train(config(), out=tmp_path, name="straight")
    flag = StopFlag()

    def on_step(progress):
        if (progress.epoch, progress.step) == stop_at:
            flag.request(signal.SIGTERM)

    stopped = train(
        config(), out=tmp_path, name="stopped", callbacks=Callbacks(on_step=on_step), stop=flag
    )
    assert stopped.status == "interrupted"
    assert stopped.stopped_at == stop_at and stopped.epochs == stop_at[0] - 1
    assert stopped.signum == signal.SIGTERM
    saved = final(stopped.run_dir)
    assert (saved.epoch, saved.step) == (stop_at[0] - 1, stop_at[1])
    resumed = resume(stopped.run_dir)
    assert_same_state(final(straight.run_dir), final(resumed.run_dir))


def test_stop_at_the_end_of_an_epoch_keeps_that_epoch(tmp_path):
    flag = StopFlag()
    steps = 8  # 120 training samples in batches of 16

    def on_step(progress):
        assert progress.steps == steps
        if (progress.epoch, progress.step) == (2, steps):
            flag.request()

    stopped = train(
        config(), out=tmp_path, name="t", callbacks=Callbacks(on_step=on_step), stop=flag
    )
    assert (stopped.status, stopped.epochs, stopped.stopped_at) == ("interrupted", 2, (2, 8))
    assert final(stopped.run_dir).step == 0


def test_an_interrupted_epoch_keeps_the_time_it_took(tmp_path):
    """A stop inside the first epoch has no finished epoch to sum; its time still counts, and
    the resumed epoch goes on from it."""
    flag, pause = StopFlag(), 0.02

    def on_step(progress):
        time.sleep(pause)
        if (progress.epoch, progress.step) == (1, 3):
            flag.request()

    stopped = train(
        config(), out=tmp_path, name="t", callbacks=Callbacks(on_step=on_step), stop=flag
    )
    summary = json.loads((stopped.run_dir / "summary.json").read_text())
    assert stopped.history == [] and stopped.seconds >= 3 * pause
    assert summary["seconds"] == stopped.seconds
    resumed = resume(stopped.run_dir)
    assert resumed.history[0].seconds >= 3 * pause
    assert resumed.seconds == sum(m.seconds for m in resumed.history)


def test_a_finished_run_says_how_to_train_further(tmp_path):
    done = train(config("train.epochs=1"), out=tmp_path, name="t")
    with pytest.raises(UsageError) as caught:
        resume(done.run_dir)
    assert str(caught.value) == (
        f"run '{done.run_dir}' has already trained 1 of train.epochs=1 epochs; to train "
        f"further: needle train --resume {done.run_dir} --set train.epochs=11"
    )


def stopped_inside_epoch(tmp_path, epoch: int, step: int):
    """A run of TINY stopped (as by Ctrl-C) after `step` batches of `epoch`."""
    flag = StopFlag()

    def on_step(progress):
        if (progress.epoch, progress.step) == (epoch, step):
            flag.request()

    return train(config(), out=tmp_path, name="s", callbacks=Callbacks(on_step=on_step), stop=flag)


def test_a_stop_inside_an_epoch_keeps_what_that_epoch_needs_on_resume(tmp_path):
    run = stopped_inside_epoch(tmp_path, 3, 2).run_dir
    with pytest.raises(UsageError) as caught:
        resume(run, ["train.epochs=2"])
    assert str(caught.value) == (
        f"run '{run}' stopped inside epoch 3; train.epochs must be at least 3 (got 2)"
    )
    # the rest of the epoch must draw the batches its first steps were drawn with
    for change in ("train.batch_size=8", "train.shuffle=false"):
        with pytest.raises(UsageError) as caught:
            resume(run, [change])
        assert str(caught.value) == (
            f"run '{run}' stopped inside an epoch; its train.batch_size and train.shuffle "
            "cannot change until that epoch ends"
        )
    assert resume(run, ["train.optimizer.lr=0.01"]).status == "completed"


def test_resume_needs_a_run_folder_and_names_the_whole_override(tmp_path):
    with pytest.raises(UsageError) as caught:
        resume(tmp_path)
    assert str(caught.value) == f"'{tmp_path}' is not a run folder: it has no config.yaml"
    done = train(config("train.epochs=1"), out=tmp_path, name="t")
    with pytest.raises(UsageError) as caught:
        resume(done.run_dir, ["train..epochs=2"])
    assert str(caught.value) == (
        "--set train..epochs=2: cannot read the key path at '.epochs' (write names and list "
        "indices, such as model.layers[2].linear)"
    )


def test_resume_changes_train_settings_only(tmp_path):
    done = train(config("train.epochs=1"), out=tmp_path, name="t")
    with pytest.raises(UsageError) as caught:
        resume(done.run_dir, ["model.layers[0].linear=8"])
    assert str(caught.value) == (
        "--set model.layers[0].linear=8: a resumed run can change train.* settings and "
        "data.path (where the data is now) only; start a new run to change the data or the "
        "model"
    )
    with pytest.raises(UsageError, match="holds adam state but .* asks for sgd"):
        resume(done.run_dir, ["train.epochs=2", "train.optimizer=sgd"])


def test_divergence_names_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    # Without normalization, a huge learning rate overflows float32 within a few steps.
    text = TINY.replace("    - batchnorm1d\n", "").replace("lr: 0.02", "lr: 1.0e+30")
    with warnings.catch_warnings():
        # The overflow on the way to NaN is reported by the message, not by numpy's warnings.
        warnings.simplefilter("error")
        with pytest.raises(TrainingDiverged) as caught:
            train(config(text=text), out=tmp_path, name="t")
    message = str(caught.value)
    run = tmp_path / "t-1"
    saved = final(run)
    assert saved.epoch == 0 and saved.step == 0  # the initial state: nothing bad was saved
    assert message.startswith("the loss became nan at epoch 1, step ")
    assert message.endswith(
        f"the last good checkpoint (epoch 0) is kept in {run / CHECKPOINT_FILE}. Continue from "
        f"it with a lower rate: needle train --resume {run} --set train.optimizer.lr=1e+29"
    )
    assert "train.optimizer.lr is 1e+30" in message
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_at"][0] == 1


# A file dataset: where the data is, and whether a run can find it again, matter.
ON_FILE = TINY.replace(
    "data: {dataset: spirals, samples: 150, classes: 3}", "data: {dataset: npz, path: PATH}"
)


@pytest.fixture
def npz_data(tmp_path) -> Path:
    """`data/d.npz` under tmp_path: 150 points in 3 classes."""
    rng = np.random.default_rng(5)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "d.npz", X=rng.normal(size=(150, 2)), y=np.arange(150) % 3)
    return tmp_path / "data" / "d.npz"


def test_a_relative_data_path_is_stored_absolute_so_any_folder_can_resume(
    tmp_path, npz_data, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    text = ON_FILE.replace("PATH", "data/d.npz")
    straight = train(config(text=text), out="runs", name="straight")
    half = train(config("train.epochs=2", text=text), out="runs", name="half")
    saved = parse_config((half.run_dir / "config.yaml").read_text(), "saved.yaml")
    assert saved.data.path == str(npz_data)
    assert final(half.run_dir).config["data"]["path"] == str(npz_data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    resumed = resume(tmp_path / half.run_dir, ["train.epochs=4"])
    assert_same_state(final(tmp_path / straight.run_dir), final(resumed.run_dir))
    for target in (resumed.run_dir, resumed.checkpoint):
        assert evaluate(target).loss == straight.last.val_loss


def test_a_home_relative_data_path_is_expanded(tmp_path, npz_data, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    done = train(
        config("train.epochs=1", text=ON_FILE.replace("PATH", "~/data/d.npz")), out=tmp_path
    )
    assert done.status == "completed"
    assert final(done.run_dir).config["data"]["path"] == str(npz_data)


def test_moved_data_can_be_pointed_to_again_and_only_data_path_may_change(tmp_path, npz_data):
    straight = train(config(text=ON_FILE.replace("PATH", str(npz_data))), out=tmp_path, name="s")
    half = train(
        config("train.epochs=2", text=ON_FILE.replace("PATH", str(npz_data))), out=tmp_path
    )
    moved = npz_data.rename(tmp_path / "moved.npz")
    with pytest.raises(UsageError) as caught:
        resume(half.run_dir, ["train.epochs=4"])
    assert str(caught.value) == (
        f"{half.run_dir / 'config.yaml'}:6:9: data.path: file '{npz_data}' not found; if the "
        f"data moved: needle train --resume {half.run_dir} --set data.path=NEW_PATH"
    )
    with pytest.raises(UsageError) as caught:
        evaluate(half.run_dir)
    assert str(caught.value).endswith(
        f"data.path: file '{npz_data}' not found; if the data moved, set data.path in "
        f"{half.run_dir / 'config.yaml'} to where it is now"
    )
    with pytest.raises(UsageError) as caught:
        evaluate(half.checkpoint)
    assert str(caught.value).endswith(
        f"data.path: file '{npz_data}' not found; if the data moved, evaluate on it with "
        "--data NEW_PATH"
    )
    assert evaluate(half.checkpoint, data=moved).samples == 150  # all of it, not the split
    for key in ("data.val_fraction=0.5", "data.dataset=csv", "data=x"):
        with pytest.raises(UsageError, match="a resumed run can change train.. settings and"):
            resume(half.run_dir, [key, f"data.path={moved}"])
    resumed = resume(half.run_dir, ["train.epochs=4", f"data.path={moved}"])
    assert_same_state(final(straight.run_dir), final(resumed.run_dir))
    saved = parse_config((half.run_dir / "config.yaml").read_text(), "saved.yaml")
    assert saved.data.path == str(moved)
    assert evaluate(half.run_dir).loss == straight.last.val_loss


def raw_pixels(path: Path) -> Path:
    """150 samples of 2 raw 0..255 features in 3 classes, as uint8 images come."""
    rng = np.random.default_rng(6)
    np.savez(path, X=rng.integers(0, 256, (150, 2), dtype=np.uint8), y=np.arange(150) % 3)
    return path


@pytest.mark.parametrize("kind", ["minmax", "standard"])
def test_normalized_runs_keep_their_statistics_for_resume_and_evaluate(tmp_path, monkeypatch, kind):
    data = raw_pixels(tmp_path / "pixels.npz")
    text = ON_FILE.replace("PATH", f"'{data}', normalize: {kind}")
    straight = train(config(text=text), out=tmp_path, name="straight")
    flag = StopFlag()

    def on_step(progress):
        if (progress.epoch, progress.step) == (2, 3):
            flag.request()

    stopped = train(
        config(text=text), out=tmp_path, name="s", callbacks=Callbacks(on_step=on_step), stop=flag
    )
    saved = final(stopped.run_dir).normalization
    raw = load_data(config(text=ON_FILE.replace("PATH", f"'{data}'")))
    expected = Normalization.fit(kind, raw.train.X)
    assert saved.kind == kind
    np.testing.assert_array_equal(saved.shift, expected.shift)
    np.testing.assert_array_equal(saved.scale, expected.scale)

    def refit(*args):
        raise AssertionError("statistics recomputed instead of read from the checkpoint")

    monkeypatch.setattr(Normalization, "fit", refit)
    resumed = resume(stopped.run_dir)
    assert_same_state(final(straight.run_dir), final(resumed.run_dir))
    assert evaluate(resumed.run_dir).loss == straight.last.val_loss
    # data the run never saw gets the training statistics too: here, its raw validation split
    np.savez(tmp_path / "val.npz", X=raw.val.X, y=raw.val.y)
    on_file = evaluate(resumed.checkpoint, data=tmp_path / "val.npz")
    assert (on_file.loss, on_file.accuracy) == (straight.last.val_loss, straight.last.val_accuracy)
    np.savez(tmp_path / "wide.npz", X=np.zeros((4, 5)), y=np.zeros(4))
    with pytest.raises(UsageError, match="has 5 features per sample but the model takes 2$"):
        evaluate(resumed.checkpoint, data=tmp_path / "wide.npz")


def test_unscaled_features_warn_unless_normalized(tmp_path):
    data = raw_pixels(tmp_path / "pixels.npz")
    with pytest.warns(NeedleWarning) as caught:
        prepare(config(text=ON_FILE.replace("PATH", f"'{data}'")))
    assert [str(w.message) for w in caught] == [
        f"tiny.yaml:2:7: data.normalize: the features of '{data}' reach 255, far from the "
        "scale of 1 a network starts at; set data.normalize to minmax or standard"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(config(text=ON_FILE.replace("PATH", f"'{data}', normalize: minmax")))
        prepare(config())  # generated data is made at its scale


# -- checkpoints -----------------------------------------------------------------------------


def test_corrupt_foreign_and_mismatched_checkpoints(tmp_path):
    done = train(config("train.epochs=1"), out=tmp_path, name="t")
    path = done.run_dir / CHECKPOINT_FILE
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UsageError, match=r"^checkpoint '.*truncated.npz' is truncated or damaged"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    with pytest.raises(UsageError) as caught:
        load_checkpoint(foreign)
    assert str(caught.value) == (
        f"'{foreign}' is not a needle checkpoint (no 'needle-checkpoint/1' marker)"
    )
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, format=np.array("needle-checkpoint/1"), meta=np.array([{}], dtype=object))
    with pytest.raises(UsageError, match="holds pickled objects .array 'meta'., which needle"):
        load_checkpoint(pickled)
    with pytest.raises(UsageError, match=r"^checkpoint '.*nope.npz' not found$"):
        load_checkpoint(tmp_path / "nope.npz")
    # a checkpoint put in a run whose config describes another model
    other = train(config("train.epochs=1", "model.layers[0].linear=8"), out=tmp_path, name="o")
    (other.run_dir / CHECKPOINT_FILE).write_bytes(path.read_bytes())
    with pytest.raises(UsageError) as caught:
        evaluate(other.run_dir)
    assert str(caught.value) == (
        f"checkpoint '{other.run_dir / CHECKPOINT_FILE}' belongs to a different model: tensor "
        f"'modules.0.bias' is (1, 16) there but (1, 8) in the model "
        f"{other.run_dir / 'config.yaml'} describes"
    )
    # and one whose model has a layer this config's lacks
    text = TINY.replace("    - batchnorm1d\n", "")
    fewer = train(config("train.epochs=1", text=text), out=tmp_path, name="f")
    (fewer.run_dir / CHECKPOINT_FILE).write_bytes(path.read_bytes())
    with pytest.raises(UsageError, match=r"tensor 'modules.1.bias' is \(16,\) there but missing"):
        evaluate(fewer.run_dir)


def test_killing_a_run_at_any_moment_leaves_a_loadable_checkpoint(tmp_path):
    """SIGKILL, unlike SIGINT, gives no chance to clean up: atomic writes must do the job.
    One step per epoch, so a checkpoint is being written most of the time."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_to_yaml(config("train.epochs=100000", "train.batch_size=150")))
    for trial, delay in enumerate((0.05, 0.2, 0.35)):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "needle_cli",
                "train",
                str(cfg),
                "--out",
                str(tmp_path),
                "--quiet",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        checkpoint = tmp_path / f"c-{trial + 1}" / CHECKPOINT_FILE
        deadline = time.monotonic() + 60
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL  # it was still training when killed
        saved = load_checkpoint(checkpoint)  # never torn
        assert saved.epoch == len(saved.history)
    assert load_checkpoint(checkpoint).epoch > 0


# -- evaluation ------------------------------------------------------------------------------


def test_evaluate_gives_the_numbers_the_run_reported(tmp_path):
    done = train(config(), out=tmp_path, name="t")
    for target in (done.run_dir, done.run_dir / CHECKPOINT_FILE):
        result = evaluate(target)
        assert result.loss == done.last.val_loss
        assert result.accuracy == done.last.val_accuracy
        assert result.samples == 30 and result.epoch == 4
        assert result.confusion.sum() == 30
        assert np.trace(result.confusion) / 30 == result.accuracy


def test_evaluate_on_other_data(tmp_path):
    done = train(config("train.epochs=1"), out=tmp_path, name="t")
    X = np.random.default_rng(0).normal(size=(10, 2))
    np.savez(tmp_path / "d.npz", X=X, y=np.arange(10) % 3)
    result = evaluate(done.run_dir, data=tmp_path / "d.npz")
    assert result.samples == 10 and result.confusion.shape == (3, 3)
    np.savez(tmp_path / "wide.npz", X=np.zeros((4, 5)), y=np.zeros(4))
    with pytest.raises(UsageError) as caught:
        evaluate(done.run_dir, data=tmp_path / "wide.npz")
    assert str(caught.value) == (
        f"'{tmp_path / 'wide.npz'}' has 5 features per sample but the model takes 2"
    )
    np.savez(tmp_path / "labels.npz", X=X, y=np.arange(10) % 6)
    with pytest.raises(UsageError) as caught:
        evaluate(done.run_dir, data=tmp_path / "labels.npz")
    assert str(caught.value) == (
        f"'{tmp_path / 'labels.npz'}' has labels up to 5 but the model knows 3 classes (0 to 2)"
    )


def test_evaluate_on_a_csv_takes_its_label_column(tmp_path):
    done = train(config("train.epochs=1"), out=tmp_path, name="t")
    X = np.random.default_rng(1).normal(size=(9, 2))
    y = np.arange(9) % 3
    np.savez(tmp_path / "d.npz", X=X, y=y)
    rows = "".join(f"{float(a)!r},{float(b)!r},{c}\n" for (a, b), c in zip(X, y, strict=True))
    (tmp_path / "d.csv").write_text("x0,x1,class\n" + rows)
    with pytest.raises(UsageError) as caught:
        evaluate(done.run_dir, data=tmp_path / "d.csv")
    assert str(caught.value) == (
        f"'{tmp_path / 'd.csv'}' has no column 'label' (columns: x0, x1, class); give the "
        "label column's header with --label-column"
    )
    from_csv = evaluate(done.run_dir, data=tmp_path / "d.csv", label_column="class")
    from_npz = evaluate(done.run_dir, data=tmp_path / "d.npz")
    assert (from_csv.loss, from_csv.samples) == (from_npz.loss, 9)
    np.testing.assert_array_equal(from_csv.confusion, from_npz.confusion)
    with pytest.raises(UsageError) as caught:
        evaluate(done.run_dir, data=tmp_path / "d.npz", label_column="class")
    assert str(caught.value) == (
        f"--label-column names a column of a .csv given with --data (got '{tmp_path / 'd.npz'}')"
    )


# -- model building --------------------------------------------------------------------------

RESNET = """\
model:
  layers:
    - linear: 20
    - relu
    - residual: &block [{linear: 10}, batchnorm1d, relu, {dropout: 0.1}, {linear: 20},
                        batchnorm1d]
    - relu
    - residual: *block
    - relu
    - linear: 4
"""


def test_mlp_resnet_in_yaml_draws_what_the_course_model_draws():
    np.random.seed(11)
    built = build_model(parse_config(RESNET, "r.yaml"), (7,), 4)
    np.random.seed(11)
    course = models.MLPResNet(7, hidden_dim=20, num_blocks=2, num_classes=4)
    ours, theirs = built.parameters(), course.parameters()
    assert [p.shape for p in ours] == [p.shape for p in theirs]
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    rows = plan_model(parse_config(RESNET, "r.yaml"), (7,), 4)
    assert sum(r.params for r in rows if r.depth == 0) == sum(p.numpy().size for p in ours)


def test_layer_init_draws_exactly_the_initializer():
    text = (
        "model:\n  init: xavier_normal\n  init_args: {gain: 2.0}\n  layers:\n"
        "    - linear: {out_features: 5, init: kaiming_normal, init_args: {mode: fan_out}}\n"
        "    - linear: 3\n"
    )
    np.random.seed(0)
    model = build_model(parse_config(text, "c.yaml"), (4,), 3)
    np.random.seed(0)
    expected = [
        init.kaiming_normal(4, 5, mode="fan_out"),
        init.kaiming_normal(5, 1, mode="fan_out"),
        init.xavier_normal(5, 3, gain=2.0),
        init.xavier_normal(3, 1, gain=2.0),
    ]
    for p, e in zip(model.parameters(), expected, strict=True):
        np.testing.assert_array_equal(p.numpy().reshape(-1), e.numpy().reshape(-1))
    assert isinstance(model.modules[0], nn.Linear) and model.modules[0].bias.shape == (1, 5)


FIT_ERRORS = {
    "residual changes size": (
        "model:\n  layers:\n    - linear: 3\n    - residual:\n        - linear: 5\n",
        "c.yaml:5:9: model.layers[1].residual: the block takes 3 features and puts out 5; a "
        "residual adds its input back, so the block must end with 3",
    ),
    "output is not the classes": (
        "model:\n  layers:\n    - linear: 8\n    - relu\n    - linear: 5\n",
        "c.yaml:5:15: model.layers[2].linear.out_features: the model puts out 5 values per "
        "sample but the data has 3 classes; the last layer must put out 3",
    ),
    "norm dim disagrees": (
        "model:\n  layers:\n    - linear: 3\n    - batchnorm1d: {dim: 4}\n",
        "c.yaml:4:26: model.layers[1].batchnorm1d.dim: dim is 4 but the previous layer puts "
        "out 3 features",
    ),
    "no layer changes the size": (
        "model:\n  layers: [relu]\n",
        "c.yaml:2:11: model.layers: the model puts out 2 values per sample but the data has 3 "
        "classes; the last layer must put out 3",
    ),
}


@pytest.mark.parametrize("text, message", FIT_ERRORS.values(), ids=FIT_ERRORS)
def test_layers_that_do_not_fit_are_refused_naming_both_sides(text, message):
    with pytest.raises(UsageError) as caught:
        plan_model(parse_config(text, "c.yaml"), (2,), 3)
    assert str(caught.value) == message


# -- atomic writes ---------------------------------------------------------------------------


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.txt"
    write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_writer(path, text=True) as f:
        f.write("half of the new")
        raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


@pytest.fixture(params=[0o022, 0o077], ids=["umask 022", "umask 077"])
def umask(request):
    """Run the test under this umask (restored after)."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def assert_modes_follow(umask: int, folder: Path) -> None:
    """Every file under `folder` is rw for whom the umask allows, every folder rwx."""
    found = list(folder.rglob("*"))
    assert found
    for path in found:
        default = 0o777 if path.is_dir() else 0o666
        assert oct(stat.S_IMODE(path.stat().st_mode)) == oct(default & ~umask), path


def test_files_and_folders_needle_writes_follow_the_umask(tmp_path, umask):
    """A shared machine's umask 022 lets others read a run; 077 keeps it private. Temporary
    files (mkstemp's 0600) must not decide instead of the user."""
    done = train(config("train.epochs=1"), out=tmp_path / "runs", name="t")
    resume(done.run_dir, ["train.epochs=2"])
    write_text(tmp_path / "runs" / "note.txt", "x")
    assert_modes_follow(umask, tmp_path / "runs")


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    from needle.train.datasets import Split

    rng = np.random.default_rng(0)
    X = rng.standard_normal((23, 4)).astype(np.float32)
    y = rng.integers(0, 3, 23)
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    totals, confusion = measure_split(model, Split(X, y), batch_size=5, num_classes=3)
    predicted = (X @ model.modules[0].weight.numpy() + model.modules[0].bias.numpy()).argmax(1)
    expected = np.zeros((3, 3), dtype=np.int64)
    for true, guess in zip(y, predicted, strict=True):
        expected[true, guess] += 1
    np.testing.assert_array_equal(confusion, expected)
    assert totals.correct == np.trace(expected) and totals.size == 23
