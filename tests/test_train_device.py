"""`train.device`: a run on the device its config names, and `devices.using_device`, the
scoped default device it is built on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import needle as ndl
from needle.backend_ndarray import NDArray
from needle.devices import DeviceError, default_device, device_named, using_device
from needle.errors import ConfigError, UsageError
from needle.train.checkpoint import load_checkpoint
from needle.train.config import parse_config
from needle.train.rundir import CHECKPOINT_FILE
from needle.train.session import prepare
from needle_cli.app import app

runner = CliRunner()

# Batch norm's running statistics and dropout's masks are made on the run's device too. SGD,
# not Adam: the gradient of the bias before a batch norm is rounding noise about 0 on either
# device, which Adam's m / √v scales up to ±lr a step (so the running means would differ).
CONFIG = """\
seed: 3
data: {{dataset: moons, samples: 120}}
model:
  layers:
    - linear: 8
    - batchnorm1d
    - relu
    - dropout: 0.1
    - linear: 2
train: {{epochs: {epochs}, batch_size: 20, optimizer: {{name: sgd, lr: 0.1}}{device}}}
"""

CUDA_MISSING = pytest.mark.skipif(ndl.cuda().enabled(), reason="this machine has a GPU")


def config_text(device: str | None = None, epochs: int = 2) -> str:
    return CONFIG.format(epochs=epochs, device="" if device is None else f", device: {device}")


def device_position(text: str) -> str:
    """ "line:column" of train.device's value in a config's text, as errors cite it."""
    lines = text.splitlines()
    line = next(i for i, row in enumerate(lines) if "device: " in row)
    return f"{line + 1}:{lines[line].index('device: ') + len('device: ') + 1}"


def train_json(path, out, *args: str) -> dict:
    result = runner.invoke(app, ["train", str(path), "--out", str(out), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_using_device_sets_the_default_and_restores_it_even_after_an_error():
    before = default_device()
    with using_device(ndl.cpu()):
        assert default_device() == ndl.cpu()
        assert ndl.Tensor([1.0]).device == ndl.cpu()
        assert isinstance(ndl.init.rand(3).cached_data, NDArray)
    assert default_device() == before
    with pytest.raises(RuntimeError), using_device(ndl.cpu()):
        raise RuntimeError("inside")
    assert default_device() == before


def test_device_named_knows_every_device_and_refuses_others():
    assert [device_named(d.name) for d in ndl.all_devices()] == ndl.all_devices()
    with pytest.raises(DeviceError, match=r"^unknown device 'gpu'; valid: cpu, cuda, cpu_numpy$"):
        device_named("gpu")
    with pytest.raises(DeviceError, match="using_device takes a device, got 'cpu'"):
        with using_device("cpu"):
            pass


@CUDA_MISSING
def test_using_device_refuses_a_device_that_is_not_enabled():
    before = default_device()
    with pytest.raises(UsageError, match=r"^cuda\(\) is not enabled: it needs CuPy"):
        with using_device(ndl.cuda()):
            pass
    assert default_device() == before


def test_a_config_naming_no_known_device_is_refused_at_its_key():
    text = config_text("gpu")
    at = device_position(text)
    with pytest.raises(ConfigError, match=rf"^c.yaml:{at}: train.device: unknown device 'gpu'"):
        parse_config(text, "c.yaml")


def test_prepare_builds_model_and_batches_on_the_configured_device():
    session = prepare(parse_config(config_text("cpu"), "c.yaml"))
    assert session.device == ndl.cpu()
    tensors = dict(session.model._named(ndl.Tensor))  # parameters and running statistics
    assert "modules.1.running_mean" in tensors
    assert {t.device for t in tensors.values()} == {ndl.cpu()}
    assert all(x.device == ndl.cpu() for x in next(iter(session.train_loader)))
    assert default_device() == ndl.cpu_numpy()  # the scope ends with prepare


def test_a_run_on_cpu_gives_the_numbers_of_a_run_on_cpu_numpy(tmp_path):
    (tmp_path / "np.yaml").write_text(config_text("cpu_numpy", epochs=3))
    (tmp_path / "nd.yaml").write_text(config_text("cpu", epochs=3))
    on_numpy = train_json(tmp_path / "np.yaml", tmp_path)
    on_ndarray = train_json(tmp_path / "nd.yaml", tmp_path)
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        assert on_ndarray[key] == pytest.approx(on_numpy[key], rel=1e-5), key
    a = load_checkpoint(tmp_path / "np-1" / CHECKPOINT_FILE).model
    b = load_checkpoint(tmp_path / "nd-1" / CHECKPOINT_FILE).model
    assert a.keys() == b.keys()
    for name in a:  # saved as numpy arrays whatever the device
        assert type(b[name]) is np.ndarray
        np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-6, err_msg=name)
    # Evaluation rebuilds the model on the default device and reads the run's numbers back.
    evaluated = runner.invoke(app, ["evaluate", on_ndarray["run_dir"], "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    loss = json.loads(evaluated.stdout.strip().splitlines()[-1])["loss"]
    assert loss == pytest.approx(on_ndarray["val_loss"], rel=1e-5)


def test_a_resumed_run_on_cpu_equals_a_straight_one(tmp_path):
    (tmp_path / "nd.yaml").write_text(config_text("cpu", epochs=2))
    first = train_json(tmp_path / "nd.yaml", tmp_path)
    again = runner.invoke(
        app, ["train", "--resume", first["run_dir"], "--set", "train.epochs=3", "--json"]
    )
    assert again.exit_code == 0, again.output
    resumed = json.loads(again.stdout.strip().splitlines()[-1])
    straight = train_json(tmp_path / "nd.yaml", tmp_path, "--set", "train.epochs=3")
    assert resumed["val_loss"] == straight["val_loss"]
    assert resumed["train_loss"] == straight["train_loss"]


@CUDA_MISSING
def test_cuda_without_a_gpu_is_one_line_at_the_key_and_writes_nothing(tmp_path):
    path = tmp_path / "gpu.yaml"
    path.write_text(text := config_text("cuda"))
    result = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {path}:{device_position(text)}: train.device: cuda is not enabled on this "
        "machine: it needs CuPy and a CUDA GPU (valid here: cpu, cpu_numpy)\n"
    )
    assert not (tmp_path / "runs").exists()
    assert default_device() == ndl.cpu_numpy()
