"""Robustness (issue 6): bad input, interruptions and untrusted files.

Each test here covers a case the per-module tests do not; docs/robustness.md lists every
case of the issue with the message a user sees and the test that checks it. What the tests
hold to: one line on stderr naming the culprit and what would be valid, exit 2 for usage
and config errors and 1 for run-time failures, no traceback, nothing lost, nothing executed.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import errno
import gzip
import hashlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml
from cli_contract import one_line_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_datasets import make_mnist
from typer.testing import CliRunner

from needle import download as download_module
from needle import init
from needle.data import write_idx
from needle.errors import NeedleError, UsageError
from needle.fileio import TEMP_PREFIX, read_npz
from needle.train import datasets, session, signals
from needle.train import runner as training
from needle.train.checkpoint import load_checkpoint
from needle.train.config import DATASETS, parse_config
from needle.train.layers import LAYER_TYPES
from needle.train.optimizers import OPTIMIZERS
from needle.train.rundir import CHECKPOINT_FILE
from needle.train.schema import json_schema
from needle.train.source import read_yaml
from needle_cli import errors
from needle_cli.app import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

TINY = """\
seed: 2
data: {dataset: moons, samples: 60}
model:
  layers:
    - linear: 6
    - relu
    - linear: 2
train: {epochs: 1, batch_size: 12}
"""


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def config_file(folder: Path, data: str, layers: str = "[{linear: 2}]") -> Path:
    """A config training on `data` (a YAML mapping) with `layers`."""
    path = folder / "c.yaml"
    path.write_text(f"data: {data}\nmodel: {{layers: {layers}}}\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished one-epoch run folder (copy it before changing it)."""
    out = tmp_path_factory.mktemp("trained")
    return training.train(parse_config(TINY, "tiny.yaml"), out=out, name="tiny").run_dir


def copy_run(run_dir: Path, to: Path) -> Path:
    to.mkdir()
    for file in run_dir.iterdir():
        (to / file.name).write_bytes(file.read_bytes())
    return to


# -- files that are not what they claim ------------------------------------------------------


def _npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


NOT_NPZ = {
    "an .npy renamed": (_npy_bytes(), "is a single .npy array, not an .npz archive of arrays"),
    "a pickle": (pickle.dumps({"X": [1]}), "is a Python pickle, which needle never loads"),
    "an html page": (b"<html>404</html>", "is not an .npz file (it does not start like a zip)"),
    "empty": (b"", "is not an .npz file (it does not start like a zip)"),
    "a cut archive": (b"PK\x03\x04\x14\x00", "is truncated or damaged (File is not a zip file)"),
}


@pytest.mark.parametrize("content, problem", NOT_NPZ.values(), ids=NOT_NPZ)
def test_a_file_that_is_not_an_npz_is_named_for_what_it_is(tmp_path, content, problem):
    path = tmp_path / "d.npz"
    path.write_bytes(content)
    config = config_file(tmp_path, f"{{dataset: npz, path: '{path}'}}")
    assert one_line_error(run("train", config, "--dry-run"), 2) == f"'{path}' {problem}"
    assert one_line_error(run("evaluate", path), 2) == f"checkpoint '{path}' {problem}"


def test_a_damaged_archive_member_is_reported(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.arange(200.0).reshape(100, 2), y=np.zeros(100))
    raw = bytearray(path.read_bytes())
    raw[300] ^= 0xFF  # inside X's data: the zip's CRC no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises(UsageError) as caught:
        read_npz(path)
    assert str(caught.value) == f"'{path}' is truncated or damaged (Bad CRC-32 for file 'X.npy')"


NO_DATA = {
    "no samples": (
        dict(X=np.zeros((0, 2)), y=np.zeros(0)),
        " holds no samples (X has shape (0, 2))",
    ),
    "no features": (
        dict(X=np.zeros((4, 0)), y=np.zeros(4)),
        ": X has no features (got shape (4, 0))",
    ),
}


@pytest.mark.parametrize("arrays, problem", NO_DATA.values(), ids=NO_DATA)
def test_an_npz_without_samples_or_features(tmp_path, arrays, problem):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    config = config_file(tmp_path, f"{{dataset: npz, path: '{path}'}}")
    assert one_line_error(run("train", config, "--dry-run"), 2) == f"'{path}'{problem}"


def test_an_mnist_folder_with_an_empty_split_or_empty_images(tmp_path):
    def folder(name, **sizes):
        arrays = make_mnist(tmp_path / name, gzip=False)
        for role, shape in sizes.items():
            images = np.zeros(shape, dtype=np.uint8)
            stem = {"train": "train", "val": "t10k"}[role]
            write_idx(tmp_path / name / f"{stem}-images-idx3-ubyte", images)
            labels = arrays[f"{role}_labels"][: shape[0]]
            write_idx(tmp_path / name / f"{stem}-labels-idx1-ubyte", labels)
        return tmp_path / name

    def error(path):
        config = config_file(tmp_path, f"{{dataset: mnist, path: '{path}'}}", "[{linear: 10}]")
        return one_line_error(run("train", config, "--dry-run"), 2)

    empty = folder("empty", val=(0, 28, 28))
    assert error(empty) == f"'{empty / 't10k-images-idx3-ubyte'}' holds no images"
    blank = folder("blank", train=(12, 0, 28))
    assert error(blank) == (
        f"'{blank / 'train-images-idx3-ubyte'}' holds images of 0×28 pixels; an image needs at "
        "least one"
    )
    mixed = folder("mixed", val=(5, 14, 14))
    assert error(mixed) == (
        f"'{mixed}': the train images have 784 pixels each but the t10k images have 196; both "
        "splits must come from one dataset"
    )


def test_an_mnist_file_that_is_not_idx_says_how_an_idx_file_starts(tmp_path):
    # An HTML error page saved under an MNIST file's name: "<htm" is 0x3c68746d.
    make_mnist(tmp_path / "m", gzip=False)
    page = tmp_path / "m" / "train-labels-idx1-ubyte"
    page.write_bytes(b"<html>404 not found</html>")
    config = config_file(tmp_path, f"{{dataset: mnist, path: '{tmp_path / 'm'}'}}")
    assert one_line_error(run("train", config, "--dry-run"), 2) == (
        f"idx file '{page}' has magic number 0x3c68746d, which is not idx: the first two bytes "
        "must be 00, the third a type code (08, 09, 0b, 0c, 0d, 0e), the fourth the number of "
        "dimensions, as in 0x00000803 (MNIST images)"
    )


def test_a_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("label,a\n0,1\n1,2\n0,3\n1,4\n", encoding="utf-8-sig")  # as Excel saves it
    result = run(
        "train", config_file(tmp_path, f"{{dataset: csv, path: '{path}'}}"), "--dry-run", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[-1])["data"]["in_features"] == 1


# -- checkpoints from elsewhere --------------------------------------------------------------


def _meta(arrays):
    return json.loads(str(arrays["meta"]))


def _set_meta(arrays, **changes):
    meta = _meta(arrays)
    meta.update(changes)
    arrays["meta"] = np.array(json.dumps(meta))


def _drop_meta(arrays, key):
    meta = _meta(arrays)
    del meta[key]
    arrays["meta"] = np.array(json.dumps(meta))


def _first_model_array(arrays):
    return next(name for name in sorted(arrays) if name.startswith("model/"))


def _normalized(arrays, shift, scale):
    """Make the checkpoint claim minmax statistics `shift`, `scale` in its config too."""
    meta = _meta(arrays)
    meta["config"]["data"]["normalize"] = meta["normalize"] = "minmax"
    arrays.update({"meta": np.array(json.dumps(meta)), "normalize/shift": shift})
    arrays["normalize/scale"] = scale


TAMPERED = {
    "metadata not json": (
        lambda a: a.update(meta=np.array("{")),
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    ),
    "metadata a list": (
        lambda a: a.update(meta=np.array("[]")),
        "its metadata is not a JSON object",
    ),
    "no epoch": (lambda a: _drop_meta(a, "epoch"), "no entry 'epoch'"),
    "epoch a string": (
        lambda a: _set_meta(a, epoch="1"),
        "epoch must be a whole number ≥ 0 (got '1')",
    ),
    "no classes": (
        lambda a: _set_meta(a, num_classes=0),
        "num_classes must be a whole number ≥ 1 (got 0)",
    ),
    "nan weights": (
        lambda a: a[_first_model_array(a)].fill(np.nan),
        "array 'model/modules.0.bias' must hold finite numbers",
    ),
    "text weights": (
        lambda a: a.update({_first_model_array(a): np.array(["x"] * 6)}),
        "array 'model/modules.0.bias' must hold finite numbers",
    ),
    "rng state cut short": (
        lambda a: a.update({"rng/keys": a["rng/keys"][:10]}),
        "'rng' is not a numpy RNG state: index 10 is out of bounds for axis 0 with size 10",
    ),
    "optimizer counter": (
        lambda a: _set_meta(a, optimizer_scalars={"t": "five"}),
        "optimizer_scalars must map names to finite numbers",
    ),
    "stopped mid-epoch without its state": (
        lambda a: _set_meta(a, step=2),
        "it stopped inside an epoch but lacks that epoch's state",
    ),
    "statistics its config does not ask for": (
        lambda a: _set_meta(a, normalize="standard"),
        "its config asks for data.normalize: none but it holds statistics for standard",
    ),
    "a zero scale": (
        lambda a: _normalized(a, np.zeros(2), np.array([1.0, 0.0])),
        "the normalization statistics must be finite, every scale > 0",
    ),
    "statistics of other features": (
        lambda a: _normalized(a, np.zeros(3), np.ones(3)),
        "normalize/shift must hold 2 numbers, one per feature",
    ),
    "history of strings": (
        lambda a: _set_meta(a, history=[{"epoch": 1, "train_loss": "low"}]),
        "history[0] must map names to finite numbers",
    ),
}


@pytest.mark.parametrize("tamper, reason", TAMPERED.values(), ids=TAMPERED)
def test_a_tampered_checkpoint_is_refused_before_use(trained, tmp_path, tamper, reason):
    run_dir = copy_run(trained, tmp_path / "run")
    path = run_dir / CHECKPOINT_FILE
    arrays = read_npz(path)
    tamper(arrays)
    np.savez(path, **arrays)
    message = f"checkpoint '{path}' is corrupt or incomplete ({reason})"
    assert one_line_error(run("evaluate", run_dir), 2) == message
    assert (
        one_line_error(run("train", "--resume", run_dir, "--set", "train.epochs=3"), 2) == message
    )


def test_optimizer_state_that_does_not_fit_is_refused_on_resume(trained, tmp_path):
    run_dir = copy_run(trained, tmp_path / "run")
    path = run_dir / CHECKPOINT_FILE
    arrays = read_npz(path)
    arrays["optim/m/0"] = np.zeros((3, 3))
    np.savez(path, **arrays)
    result = run("train", "--resume", run_dir, "--set", "train.epochs=3")
    assert one_line_error(result, 2) == (
        f"checkpoint '{path}' is corrupt or incomplete (Adam state 'm' for parameter 0 has "
        "shape (3, 3), but the parameter has shape (2, 6))"
    )


def test_resume_given_a_file_says_it_takes_a_run_folder(tmp_path):
    config = config_file(tmp_path, "{dataset: moons}")
    assert one_line_error(run("train", "--resume", config), 2) == (
        f"'{config}' is a file; --resume takes a run folder, such as runs/quickstart-1 (to start "
        "a run from a config: needle train CONFIG)"
    )


def test_a_config_and_resume_together_say_not_both(trained, tmp_path):
    config = config_file(tmp_path, "{dataset: moons}")
    assert one_line_error(run("train", config, "--resume", trained), 2) == (
        "give a CONFIG file to start a run or --resume RUN_DIR to continue one, not both"
    )
    assert one_line_error(run("train"), 2) == (
        "give a CONFIG file to start a run, or --resume RUN_DIR to continue one"
    )


def test_evaluate_suggests_a_label_column_it_can_take(trained, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x0,x1,class\n0.5,0.1,1\n-0.2,0.3,0\n")
    message = one_line_error(run("evaluate", trained, "--data", data), 2)
    assert message.endswith("give the label column's header with --label-column")
    result = run("evaluate", trained, "--data", data, "--label-column", "class", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["samples"] == 2


def test_unscaled_features_get_one_warning_line_and_normalize_quiets_it(tmp_path):
    data = tmp_path / "pixels.npz"
    np.savez(data, X=np.arange(40, dtype=np.uint8).reshape(20, 2) * 6, y=np.arange(20) % 2)
    config = config_file(tmp_path, f"{{dataset: npz, path: '{data}'}}")
    warning = (
        f"warning: {config}:1:7: data.normalize: the features of '{data}' reach 234, far from "
        "the scale of 1 a network starts at; set data.normalize to minmax or standard\n"
    )
    for args in (["--dry-run", "--json"], ["--out", tmp_path / "runs", "--quiet"]):
        result = run("train", config, *args)
        assert (result.exit_code, result.stderr) == (0, warning), result.output
        normalized = run("train", config, *args, "--set", "data.normalize=minmax")
        assert (normalized.exit_code, normalized.stderr) == (0, ""), normalized.output


# -- configs: nesting, registries, memory ---------------------------------------------------


def test_a_config_nested_too_deeply_is_refused_where_it_gets_deep(tmp_path):
    deep = tmp_path / "deep.yaml"  # past needle's limit, within PyYAML's stack
    deep.write_text("model:\n  layers: " + "[" * 64 + "]" * 64 + "\n")
    assert one_line_error(run("train", deep), 2) == (
        f"{deep}:2:74: the config nests more than 64 levels deep"  # at the 65th level
    )
    abyss = tmp_path / "abyss.yaml"  # so deep that PyYAML itself runs out of stack
    levels = sys.getrecursionlimit()  # PyYAML takes at least one frame per level
    abyss.write_text("model: " + "[" * levels + "]" * levels + "\n")
    message = one_line_error(run("train", abyss), 2)
    assert message.startswith(f"{abyss}:1:") and message.endswith(
        ": the config nests more than 64 levels deep"
    )


def test_layers_initializers_and_optimizers_come_from_registries_never_imports(
    tmp_path, monkeypatch
):
    """A config names things; it never imports them. Import paths are unknown names, listed
    against the registries, and nothing they name is imported."""
    imported = []
    real_import = builtins.__import__

    def recording_import(name, *args, **kwargs):
        imported.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", recording_import)
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  init: colorsys.rgb_to_hsv\n  layers: [torch.nn.Linear]\n"
        "train: {optimizer: torch.optim.SGD}\n"
    )
    result = run("train", config, "--dry-run")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        f"error: {config}:2:9: model.init: unknown initializer 'colorsys.rgb_to_hsv'; valid: "
        + ", ".join(sorted(init.INITIALIZERS)),
        f"error: {config}:3:12: model.layers[0]: unknown layer type 'torch.nn.Linear'; valid: "
        + ", ".join(LAYER_TYPES),
        f"error: {config}:4:20: train.optimizer.name: unknown optimizer 'torch.optim.SGD'; "
        "valid: " + ", ".join(sorted(OPTIMIZERS)),
    ]
    assert imported  # the recorder saw the command's own imports
    assert not [name for name in imported if name.startswith(("colorsys", "torch"))]


def test_running_out_of_memory_names_the_config_key_and_exits_1(tmp_path, monkeypatch):
    # Real allocations of that size would depend on the machine; numpy's MemoryError is
    # raised where it would be.
    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 7.28 TiB for an array")

    config = tmp_path / "c.yaml"
    config.write_text(TINY)
    with monkeypatch.context() as patch:
        moons = dataclasses.replace(datasets.DATASET_TYPES["moons"], load=no_memory)
        patch.setitem(datasets.DATASET_TYPES, "moons", moons)
        assert one_line_error(run("train", config, "--set", "data.samples=10000000000"), 1) == (
            "--set data.samples=10000000000: data.samples: not enough memory for the data "
            "(Unable to allocate 7.28 TiB for an array)"
        )
    monkeypatch.setattr(session, "build_model", no_memory)
    assert one_line_error(run("train", config, "--set", "model.layers[0].linear=9000000"), 1) == (
        "--set model.layers[0].linear=9000000: model.layers[0].linear.out_features: not enough "
        "memory for a model of 45,000,002 parameters, 27,000,000 of them in this layer (Unable "
        "to allocate 7.28 TiB for an array)"
    )
    assert not (tmp_path / "runs").exists()


# -- the CLI's last line of defence -----------------------------------------------------------


def _probe(error: BaseException) -> typer.Typer:
    """A one-command app, handled like `needle`, whose command raises `error`."""
    probe = typer.Typer(cls=errors.NeedleGroup)

    @probe.command()
    def fail() -> None:
        raise error

    @probe.command()
    def other() -> None:
        pass

    return probe


def test_out_of_memory_anywhere_is_one_line_exit_1():
    result = runner.invoke(_probe(MemoryError("Unable to allocate 3 GiB")), ["fail"])
    assert one_line_error(result, 1) == "not enough memory (Unable to allocate 3 GiB)"


def test_a_bug_whose_trace_cannot_be_saved_still_says_what_it_was(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(blocker / "tmp"))  # a folder inside a file
    result = runner.invoke(_probe(RuntimeError("boom")), ["fail"])
    assert result.exit_code == 1
    assert result.stderr == (
        "internal error (this is a bug in needle); RuntimeError: boom; the full trace could not "
        f"be saved: cannot write '{blocker / 'tmp' / errors.CRASH_TRACE_NAME}': Not a directory\n"
    )


# -- nothing lost: every write is atomic -----------------------------------------------------


def test_every_file_needle_writes_is_first_written_under_a_temporary_name(tmp_path, monkeypatch):
    """Record every file opened for writing while needle trains, resumes, evaluates, writes
    idx files, downloads and saves a crash trace: each must be a temporary name (which
    `needle.fileio` then renames into place)."""
    written: list[Path] = []
    real_open, real_os_open = builtins.open, os.open

    def note(file, writing: bool) -> None:
        if writing and isinstance(file, (str, os.PathLike)):
            path = Path(file)
            if tmp_path in path.parents:
                written.append(path)

    def recording_open(file, mode="r", *args, **kwargs):
        note(file, any(c in mode for c in "wax+"))
        return real_open(file, mode, *args, **kwargs)

    def recording_os_open(path, flags, *args, **kwargs):
        note(path, bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", recording_open)
    monkeypatch.setattr(io, "open", recording_open)  # what pathlib's Path.open calls
    monkeypatch.setattr(os, "open", recording_os_open)  # what tempfile.mkstemp calls
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where crash traces go

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    first = run("train", config, "--out", tmp_path / "runs", "--quiet")
    assert first.exit_code == 0, first.output
    run_dir = tmp_path / "runs" / "tiny-1"
    assert run("train", "--resume", run_dir, "--set", "train.epochs=2").exit_code == 0
    assert run("evaluate", run_dir).exit_code == 0
    write_idx(tmp_path / "labels.idx", np.arange(5, dtype=np.uint8))
    served = tmp_path / "served"
    served.mkdir()
    sums = {}
    for name in download_module.SHA256["mnist"]:
        (served / name).write_bytes(gzip.compress(name.encode()))
        sums[name] = hashlib.sha256((served / name).read_bytes()).hexdigest()
    monkeypatch.setitem(download_module.SHA256, "mnist", sums)
    mirror = served.as_uri() + "/"
    assert (
        run("data", "download", "mnist", "--to", tmp_path / "m", "--mirror", mirror).exit_code == 0
    )
    assert runner.invoke(_probe(RuntimeError("boom")), ["fail"]).exit_code == 1

    final = {path.name for path in written if not path.name.startswith(TEMP_PREFIX)}
    test_setup = {"tiny.yaml", *sums}  # this test's own writes, not needle's
    assert final <= test_setup, f"written in place, not atomically: {final - test_setup}"
    for name in ("checkpoint.npz", "metrics.csv", "metrics.jsonl", "summary.json", "config.yaml"):
        assert any(path.name.startswith(f"{TEMP_PREFIX}{name}.") for path in written), name
    for name in ("labels.idx", errors.CRASH_TRACE_NAME, *sums):
        assert any(path.name.startswith(f"{TEMP_PREFIX}{name}.") for path in written), name
    assert not list(tmp_path.rglob(f"{TEMP_PREFIX}*"))  # every temporary was renamed


# Methods that write a file (Path.write_text, np.savez, ...); with `open` in a writing mode
# and os.replace/os.rename, only needle/fileio.py may call them, or code inside
# `with atomic_writer(...)`. (needle.fileio's own write_text is a plain name, not a method.)
_WRITE_METHODS = {"write_text", "write_bytes", "save", "savez", "savez_compressed", "tofile"}


def _writes_outside_atomic_writer(tree: ast.AST) -> list[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and any(
            isinstance(item.context_expr, ast.Call)
            and getattr(item.context_expr.func, "id", None) == "atomic_writer"
            for item in node.items
        ):
            inside.update(id(child) for child in ast.walk(node))
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or id(node) in inside:
            continue
        func = node.func
        method = func.attr if isinstance(func, ast.Attribute) else None
        if method in _WRITE_METHODS or (
            method in ("replace", "rename") and getattr(func.value, "id", None) == "os"
        ):
            lines.append(node.lineno)
        elif method == "open" or getattr(func, "id", None) == "open":
            # open(path, mode) and os.open(path, flags); Path(...).open(mode)
            position = 0 if method == "open" and getattr(func.value, "id", None) != "os" else 1
            if position and node.args and ast.unparse(node.args[0]) == "os.devnull":
                continue  # writing there keeps nothing (train's detach from a closed terminal)
            mode = next((kw.value for kw in node.keywords if kw.arg == "mode"), None)
            if mode is None and len(node.args) > position:
                mode = node.args[position]
            reading = mode is None or (  # no mode: "r"
                isinstance(mode, ast.Constant) and set(str(mode.value)) <= set("rbt")
            )
            if not reading:
                lines.append(node.lineno)  # a writing mode, or one this check cannot read
    return lines


def test_no_code_writes_a_file_except_through_fileio():
    """The static half of the test above: calls that write files appear only in
    needle/fileio.py or inside `with atomic_writer(...)`."""
    sources = sorted((ROOT / "needle").rglob("*.py")) + sorted((ROOT / "needle_cli").rglob("*.py"))
    found = {
        str(path.relative_to(ROOT)): lines
        for path in sources
        if path.name != "fileio.py"
        and (lines := _writes_outside_atomic_writer(ast.parse(path.read_text())))
    }
    assert found == {}
    # the check itself finds what it looks for
    probe = (
        "open(p, 'w')\nPath(p).write_text('x')\nnp.save(p, a)\nos.replace(a, b)\n"
        "p.open('ab')\nos.open(p, os.O_WRONLY)\nopen(p)\np.open('rb', newline='')\n"
        "write_text(p, 'x')\nos.open(os.devnull, os.O_WRONLY)\n"
    )
    assert _writes_outside_atomic_writer(ast.parse(probe)) == [1, 2, 3, 4, 5, 6]
    assert (
        _writes_outside_atomic_writer(ast.parse("with atomic_writer(p) as f:\n    np.savez(f)\n"))
        == []
    )


UNWRITABLE = {
    "runs folder": (
        ["train", "{config}", "--out", "{blocker}/runs"],
        "cannot create the runs folder '{blocker}/runs': Not a directory",
    ),
    "download folder": (
        ["data", "download", "mnist", "--to", "{blocker}/mnist"],
        "cannot create folder '{blocker}/mnist': Not a directory",
    ),
}


@pytest.mark.parametrize("args, message", UNWRITABLE.values(), ids=UNWRITABLE)
def test_a_folder_that_cannot_be_made_is_one_line_exit_1(tmp_path, args, message):
    # Root ignores read-only permissions; a folder inside a regular file stops everyone.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    fill = {"config": config, "blocker": blocker}
    result = run(*(arg.format(**fill) for arg in args))
    assert one_line_error(result, 1) == message.format(**fill)


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(trained, tmp_path, monkeypatch):
    run_dir = copy_run(trained, tmp_path / "run")
    before = (run_dir / CHECKPOINT_FILE).read_bytes()
    real_replace = os.replace

    def disk_full(src, dst):
        if Path(dst).name == CHECKPOINT_FILE:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_full)
    result = run("train", "--resume", run_dir, "--set", "train.epochs=2", "--quiet")
    assert one_line_error(result, 1) == (
        f"cannot write '{run_dir / CHECKPOINT_FILE}': No space left on device"
    )
    assert (run_dir / CHECKPOINT_FILE).read_bytes() == before
    assert load_checkpoint(run_dir / CHECKPOINT_FILE).epoch == 1
    assert not list(run_dir.glob(f"{TEMP_PREFIX}*"))


def test_write_idx_into_a_missing_folder_is_a_needle_error(tmp_path):
    with pytest.raises(NeedleError) as caught:
        write_idx(tmp_path / "nowhere" / "x.idx", np.zeros(3, dtype=np.uint8))
    assert str(caught.value) == (
        f"cannot write '{tmp_path / 'nowhere' / 'x.idx'}': No such file or directory"
    )


# -- kill -9 in the middle of writing a checkpoint --------------------------------------------

# Run `needle train` with np.savez slowed down at the third checkpoint (after epoch 2): half
# of it is written to the temporary file, then the process says so and waits to be killed.
_HALF_WRITTEN_CHECKPOINT = """
import io, sys, time
from pathlib import Path
import numpy as np
from needle.train import runner
from needle_cli.app import main

savez, calls, writing = np.savez, [], []
save_checkpoint = runner.save_checkpoint

def noting_the_file(path, checkpoint):
    writing.append(Path(path).name)
    try:
        return save_checkpoint(path, checkpoint)
    finally:
        writing.pop()

def half_then_wait(file, **arrays):
    if writing[-1] != "checkpoint.npz":  # best.npz: not counted
        return savez(file, **arrays)
    calls.append(1)
    if len(calls) < 3:
        return savez(file, **arrays)
    whole = io.BytesIO()
    savez(whole, **arrays)
    file.write(whole.getvalue()[: len(whole.getvalue()) // 2])
    file.flush()
    print("half written", flush=True)
    time.sleep(60)

np.savez = half_then_wait
runner.save_checkpoint = noting_the_file
sys.argv = ["needle", "train", *sys.argv[1:]]
main()
"""


def test_kill_9_while_a_checkpoint_is_written_leaves_the_previous_one(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY.replace("epochs: 1", "epochs: 3"))
    proc = subprocess.Popen(
        [sys.executable, "-c", _HALF_WRITTEN_CHECKPOINT, config, "--out", tmp_path, "--quiet"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if line != "half written\n":
            proc.kill()
            pytest.fail(f"the run never reached its third checkpoint: {proc.communicate()[1]}")
        run_dir = tmp_path / "tiny-1"
        (temporary,) = run_dir.glob(f"{TEMP_PREFIX}{CHECKPOINT_FILE}.*")
        assert temporary.stat().st_size > 0  # the kill lands in the middle of the write
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.communicate()
    survivor = load_checkpoint(run_dir / CHECKPOINT_FILE)
    assert (survivor.epoch, survivor.step, len(survivor.history)) == (1, 0, 1)
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1  # never ahead of it
    # resuming removes the half-written file and ends where an uninterrupted run ends
    resumed = run("train", "--resume", run_dir, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert not list(run_dir.glob(f"{TEMP_PREFIX}*"))
    straight = training.train(parse_config(config.read_text(), "s.yaml"), out=tmp_path, name="s")
    ours, theirs = load_checkpoint(run_dir / CHECKPOINT_FILE), load_checkpoint(straight.checkpoint)
    assert ours.epoch == theirs.epoch == 3
    for name in theirs.model:
        np.testing.assert_array_equal(ours.model[name], theirs.model[name], err_msg=name)


# -- mutated configs: never a traceback, never exit 0 when invalid ----------------------------

# The reference config uses every key and layer type; fewer samples keep each dry run quick.
VALID = yaml.safe_load((ROOT / "configs" / "reference.yaml").read_text())
VALID["data"]["samples"] = 120
SCHEMA = json_schema()
NAMES = sorted({*LAYER_TYPES, *init.INITIALIZERS, *OPTIMIZERS, *DATASETS, "fan_in", "relu"})
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),  # sizes stay small: every draw is built
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(NAMES),
    st.lists(st.integers(-1, 5), max_size=3),
    st.dictionaries(st.sampled_from(["p", "gain", "x"]), st.integers(-1, 2), max_size=2),
)


def _paths(data, prefix=()):
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return
    for key, value in items:
        yield prefix + (key,)
        yield from _paths(value, prefix + (key,))


def _written_layer(name):
    """A layer of type `name` in each written form, its settings drawn from VALUES."""
    settings = [field for field in LAYER_TYPES[name].model_fields if field != "type"]
    return st.one_of(
        st.just(name),
        VALUES.map(lambda value: {name: value}),  # a short form, or a wrong one
        st.dictionaries(st.sampled_from([*settings, "x"]), VALUES, max_size=3).map(
            lambda mapping: {name: mapping}
        ),
    )


# Any registered layer type, so that a new one is fuzzed as soon as it is registered.
WRITTEN_LAYERS = st.sampled_from(list(LAYER_TYPES)).flatmap(_written_layer)


@st.composite
def mutated_configs(draw):
    """The valid config with one to three keys dropped or renamed, values replaced, or layers
    of any registered type put in."""
    data = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 3))):
        model = data.get("model")
        layers = model.get("layers") if isinstance(model, dict) else None
        if isinstance(layers, list) and draw(st.integers(0, 3)) == 0:
            layers.insert(draw(st.integers(0, len(layers))), draw(WRITTEN_LAYERS))
            continue
        paths = list(_paths(data))
        if not paths:
            break
        *parents, last = draw(st.sampled_from(paths))
        node = data
        for part in parents:
            node = node[part]
        kind = draw(st.sampled_from(["drop", "rename", "value"]))
        if kind == "drop":
            del node[last]
        elif kind == "rename" and isinstance(node, dict):
            node[f"{last}{draw(st.sampled_from(['x', 's', '_']))}"] = node.pop(last)
        else:
            node[last] = draw(VALUES)
    return data


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=mutated_configs())
def test_mutated_configs_never_crash_and_are_refused_when_invalid(tmp_path, data):
    """The JSON Schema `needle schema` publishes is the judge: a config it rejects must be
    refused (exit 2, one `error:` line per mistake); one it accepts may still be refused for
    what a schema cannot say (layers that do not fit, moons with 3 classes)."""
    jsonschema = pytest.importorskip("jsonschema")
    config = tmp_path / "m.yaml"
    config.write_text(yaml.safe_dump(data))
    loaded, _ = read_yaml(config.read_text(), "m.yaml")  # judge what needle will read
    valid = jsonschema.Draft202012Validator(SCHEMA).is_valid(loaded)
    result = run("train", config, "--dry-run", "--json")  # JSON: no time spent on tables
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert result.exit_code in (0, 2), result.output
    if not valid:
        assert result.exit_code == 2, f"an invalid config was accepted: {loaded}"
    if result.exit_code == 2:
        assert result.stdout == ""
        assert all(line.startswith("error: ") for line in result.stderr.splitlines())
    else:
        assert json.loads(result.stdout)["parameters"] > 0


# -- signals: a second Ctrl-C, a closed terminal ------------------------------------------------


def test_each_stop_signal_asks_once_and_a_second_one_stops_at_once():
    assert {signal.SIGINT, signal.SIGTERM, signal.SIGHUP} == set(signals.STOP_SIGNALS)
    before = {sig: signal.getsignal(sig) for sig in signals.STOP_SIGNALS}
    flag, heard = signals.StopFlag(), []

    def note(signum):
        heard.append((signum, flag.forced))

    with signals.stop_on_signals(flag, on_signal=note):
        signal.raise_signal(signal.SIGHUP)
        assert (flag.signum, flag.forced, heard) == (signal.SIGHUP, None, [(signal.SIGHUP, None)])
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert (flag.signum, flag.forced) == (signal.SIGHUP, signal.SIGINT)
    assert heard[1:] == [(signal.SIGINT, signal.SIGINT)]  # told before it stops at once
    assert {sig: signal.getsignal(sig) for sig in signals.STOP_SIGNALS} == before


# Trains with file writes that, once a stop is asked for, say so and hang: the second Ctrl-C
# lands while the run saves (its checkpoint in the middle of an epoch, its summary at the end
# of one), as it would on a big model or a slow disk.
_SLOW_STOP_SAVE = """
import sys, time
from needle.train import rundir, runner, signals
from needle_cli.app import main

request, stopping = signals.StopFlag.request, []

def request_and_note(self, signum):
    stopping.append(signum)
    request(self, signum)

def slowly_once_stopping(write):
    def slow(*args):
        if stopping:
            print("saving", flush=True)
            time.sleep(60)
        write(*args)
    return slow

signals.StopFlag.request = request_and_note
runner.save_checkpoint = slowly_once_stopping(runner.save_checkpoint)
rundir.write_text = slowly_once_stopping(rundir.write_text)
sys.argv = ["needle", "train", *sys.argv[1:]]
main()
"""


def test_a_second_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path):
    config = tmp_path / "long.yaml"
    config.write_text(TINY.replace("epochs: 1", "epochs: 100000"))
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_STOP_SAVE, config, "--out", tmp_path],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stdout:  # wait until two epochs are saved
            if line.startswith("epoch 2/"):
                break
        proc.send_signal(signal.SIGINT)
        for line in proc.stdout:
            if line == "saving\n":
                break
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    run_dir = tmp_path / "long-1"
    kept = load_checkpoint(run_dir / CHECKPOINT_FILE)  # the stop's own save never happened
    assert kept.step == 0 and kept.epoch >= 2
    assert proc.returncode == 130, stderr
    assert stderr.splitlines() == [
        "Ctrl-C: stopping after this step to save a checkpoint (Ctrl-C again stops at once)",
        f"stopped at once by a second Ctrl-C; kept the last checkpoint, after epoch {kept.epoch},"
        f" in {run_dir / CHECKPOINT_FILE}",
        f"resume with: needle train --resume {run_dir}",
    ]
    resumed = run("train", "--resume", run_dir, "--set", f"train.epochs={kept.epoch + 1}")
    assert resumed.exit_code == 0, resumed.output


def train_in_a_terminal(
    tmp_path: Path, samples: int = 60, **streams
) -> tuple[subprocess.Popen, int]:
    """A long run of TINY on `samples` points with stdout (and whatever else `streams` sends
    there) on a pseudo-terminal 120 columns wide; returns the process and the terminal's
    side to read."""
    import fcntl
    import pty
    import struct
    import termios

    config = tmp_path / "long.yaml"
    config.write_text(
        TINY.replace("epochs: 1", "epochs: 100000").replace("samples: 60", f"samples: {samples}")
    )
    terminal, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "needle_cli", "train", config, "--out", tmp_path],
        cwd=ROOT,
        stdout=side,
        **{name: side if where == "terminal" else where for name, where in streams.items()},
        env={**env, "TERM": "xterm", "PYTHONUNBUFFERED": "1"},
    )
    os.close(side)
    return proc, terminal


def read_until(terminal: int, pattern: bytes, count: int = 1) -> bytes:
    """What the terminal shows until `pattern` (a regular expression) has shown `count` times."""
    import re

    shown = b""
    while len(re.findall(pattern, shown)) < count:
        shown += os.read(terminal, 65536)
    return shown


def test_ctrl_c_in_a_terminal_leaves_no_bar_behind(tmp_path):
    import re

    from test_cli_train import BAR_TEXT, screen

    # 1,334 steps an epoch: Ctrl-C lands while a bar is on the screen, as it mostly would
    proc, terminal = train_in_a_terminal(tmp_path, samples=20000, stderr="terminal")
    try:
        shown = read_until(terminal, rb"epoch 3/100000 [^ ]")  # two epochs' lines, a bar
        assert b"samples/s" in shown
        proc.send_signal(signal.SIGINT)
        while True:  # until the process is gone and the terminal reads as closed
            try:
                more = os.read(terminal, 65536)
            except OSError:
                break
            if not more:
                break
            shown += more
    finally:
        os.close(terminal)
    assert proc.wait(timeout=60) == 130
    lines = screen(re.sub(r"\x1b\[[0-9;]*m", "", shown.decode()))  # colours off
    assert not [line for line in lines if re.search(BAR_TEXT, line)], lines
    run_dir = tmp_path / "long-1"
    # what stays: what trains, a line per epoch done, then what Ctrl-C did
    assert lines[0].startswith(f"training {run_dir}: ")
    assert len(lines) >= 6 and all(line.startswith("epoch ") for line in lines[1:-3])
    assert lines[-3] == (
        "Ctrl-C: stopping after this step to save a checkpoint (Ctrl-C again stops at once)"
    )
    saved_to = re.escape(str(run_dir / CHECKPOINT_FILE))
    assert re.fullmatch(
        rf"stopped at epoch \d+, step \d+; checkpoint saved to {saved_to}", lines[-2]
    )
    assert lines[-1] == f"resume with: needle train --resume {run_dir}"


def test_closing_the_terminal_saves_the_run_like_sigterm(tmp_path):
    # stderr to a pipe, where a log of it would go: it outlives the terminal
    proc, terminal = train_in_a_terminal(tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        assert b"samples/s" in read_until(terminal, b"train loss", 2)
        # The hangup first, then the terminal goes: the other order races the signal against
        # the bar's next redraw. Either way, nothing may be written to the terminal after it.
        proc.send_signal(signal.SIGHUP)
        said = proc.stderr.readline()
    finally:
        os.close(terminal)
    _, stderr = proc.communicate(timeout=60)
    assert said == (
        "SIGHUP: stopping after this step to save a checkpoint (SIGHUP again stops at once)\n"
    )
    assert proc.returncode == 129, stderr
    run_dir = tmp_path / "long-1"
    assert stderr.splitlines()[-1] == f"resume with: needle train --resume {run_dir}"
    assert "Traceback" not in stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    saved = load_checkpoint(run_dir / CHECKPOINT_FILE)
    assert summary["status"] == "interrupted"
    assert summary["stopped_at"] in ([saved.epoch + 1, saved.step], [saved.epoch, 4])
