"""Devices and storages: a Tensor's data follows its device (numpy arrays on cpu_numpy(),
NDArrays on cpu() and cuda()); modules, optimizers and the DataLoader compute the same
numbers on every storage; cuda() runs through CuPy's API (a numpy-backed fake here); mixed
devices and a disabled cuda() fail with one clear line; NEEDLE_BACKEND picks the default.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_backend_ndarray import cupy_as, fake_cupy  # noqa: F401 - cupy_as is a fixture

import needle as ndl
import needle.backend_ndarray as nd
from needle import init, nn, optim
from needle.backend_ndarray import array_api, ndarray_api, numpy_api
from needle.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


# -- Tensor on a device ------------------------------------------------------------------------


def test_storage_follows_the_device(device):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = ndl.Tensor(x, device=device)
    kind = np.ndarray if device == ndl.cpu_numpy() else nd.NDArray
    assert type(t.cached_data) is kind and t.device == device and str(t.device) == repr(device)
    assert isinstance(t.numpy(), np.ndarray) and np.array_equal(t.numpy(), x)
    assert t.dtype == np.float32 and t.shape == (2, 3) and len(t) == 2
    x[0, 0] = 99  # the tensor holds a copy of the caller's array
    assert t.numpy()[0, 0] == 0


@pytest.mark.parametrize("source", ["numpy", "ndarray", "tensor", "list"])
def test_tensor_takes_every_kind_of_array(source, device):
    values = [[1.0, 2.0], [3.0, 4.0]]
    given = {
        "numpy": lambda: np.array(values),
        "ndarray": lambda: nd.array(values, dtype="float64"),
        "tensor": lambda: ndl.Tensor(values, device=ndl.cpu_numpy()),
        "list": lambda: values,
    }[source]()
    t = ndl.Tensor(given, device=device, dtype="float64")
    assert t.device == device and np.array_equal(t.numpy(), values)


def test_an_ndarray_keeps_its_device_and_a_tensor_shares_its_storage():
    a = nd.array(np.ones(3))
    assert ndl.Tensor(a).device == ndl.cpu()
    t = ndl.Tensor(a)
    assert ndl.Tensor(t).cached_data is t.cached_data  # same device, same dtype: shared


def test_to_moves_between_storages_and_keeps_values():
    x = RNG.standard_normal((3, 4))
    t = ndl.Tensor(x, device=ndl.cpu_numpy(), dtype="float64")
    assert t.to(ndl.cpu_numpy()) is t
    on_nd = t.to(ndl.cpu())
    back = on_nd.to(ndl.cpu_numpy())
    assert on_nd.device == ndl.cpu() and back.device == ndl.cpu_numpy()
    assert np.array_equal(back.numpy(), x) and on_nd.requires_grad


def test_ndarray_devices_store_floats():
    labels = ndl.Tensor(np.array([0, 2, 1], dtype=np.uint8), device=ndl.cpu())
    assert labels.dtype == np.float32 and np.array_equal(labels.numpy(), [0, 2, 1])
    mask = init.randb(4, device=ndl.cpu())
    assert mask.dtype == np.float32 and set(mask.numpy()) <= {0.0, 1.0}


def test_ops_on_two_devices_fail_with_one_line():
    a = ndl.Tensor(np.ones(3), device=ndl.cpu_numpy())
    b = ndl.Tensor(np.ones(3), device=ndl.cpu())
    mixed = r"inputs on different devices \(cpu\(\) and cpu_numpy\(\)\)"
    with pytest.raises(UsageError, match=mixed) as e:
        a + b
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="different devices"):
        ndl.stack([a, b], 0)
    with pytest.raises(UsageError, match="set on one on"):
        a.data = b


def test_cuda_without_cupy_is_disabled_and_refuses_tensors(cupy_as):  # noqa: F811
    cupy_as(None)
    assert not ndl.cuda().enabled() and ndl.cuda() in ndl.all_devices()
    with pytest.raises(UsageError, match=r"cuda\(\) is not enabled: it needs CuPy and a CUDA GPU"):
        ndl.Tensor(np.ones(2), device=ndl.cuda())


# -- every op computes through its device's namespace -------------------------------------------


def test_both_namespaces_define_every_name():
    for module in (numpy_api, ndarray_api):
        missing = [name for name in array_api.NAMES if not hasattr(module, name)]
        assert not missing, (module.__name__, missing)
    assert nd.api(np.ones(2)) is numpy_api and nd.api(nd.array([1.0])) is ndarray_api
    assert ndl.cpu().api is ndarray_api and ndl.cpu_numpy().api is numpy_api


@pytest.mark.parametrize("values_shape", [(3,), (1, 3), (2, 3)])
def test_add_into_broadcasts_its_values_in_both_namespaces(values_shape):
    # A bias row added into a product (matmul's addend, conv's bias) in place.
    rng = np.random.default_rng(13)
    out = rng.standard_normal((4, 2, 3)).astype(np.float32)
    values = rng.standard_normal(values_shape).astype(np.float32)
    index = (slice(1, 3), slice(None), slice(None))
    expected = out.copy()
    expected[index] += values
    for module, make in ((numpy_api, np.array), (ndarray_api, nd.array)):
        target = make(out.copy())
        module.add_into(target, index, make(values))
        np.testing.assert_array_equal(module.to_numpy(target), expected)


@pytest.mark.parametrize("name", ["add", "subtract", "multiply"])
def test_elementwise_out_is_numpys_in_both_namespaces(name):
    """A spent temporary given as `out=` (standardize's) gets the result written in, by the
    kernel itself, and is what comes back, as numpy's out= does, also when it is the first
    operand; NDArray refuses an out of another shape or dtype, or a view that is not compact."""
    rng = np.random.default_rng(14)
    a = rng.standard_normal((6, 4)).astype(np.float32)
    b = rng.standard_normal((4,)).astype(np.float32)
    expected = getattr(np, name)(a, b)
    for module, make in ((numpy_api, np.array), (ndarray_api, nd.array)):
        out = make(np.zeros_like(a))
        result = getattr(module, name)(make(a), make(b), out=out)
        assert result is out
        np.testing.assert_array_equal(module.to_numpy(out), expected)
        first = make(a.copy())
        assert getattr(module, name)(first, make(b), out=first) is first
        np.testing.assert_array_equal(module.to_numpy(first), expected)
    op = getattr(ndarray_api, name)
    for wrong, message in [
        (nd.array(np.zeros((6, 1), np.float32)), "result is float32, of shape \\(6, 4\\)"),
        (nd.array(np.zeros((6, 4)), dtype="float64"), "out= is a float64 array"),
        (nd.array(np.zeros((6, 8), np.float32))[:, :4], "out= must be compact"),
    ]:
        with pytest.raises(nd.ShapeError, match=message):
            op(nd.array(a), nd.array(b), out=wrong)


# What needle.ops may take from numpy: types, dtypes and shape arithmetic, never a function
# of device data (an NDArray reaching one fails; a CuPy array would be copied to the host).
NUMPY_IN_OPS = {"integer", "ndarray", "generic", "dtype", "result_type", "prod", "random", "size",
                "shape", "asarray"}  # fmt: skip


def test_ops_call_no_numpy_function_on_arrays():
    for path in sorted((ROOT / "needle" / "ops").glob("*.py")):
        if path.name in ("registry.py", "conv_cases.py"):  # test cases, drawn on the host
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "np":
                assert node.attr in NUMPY_IN_OPS, f"{path.name}:{node.lineno} np.{node.attr}"


# -- modules: the same numbers on cpu() as on cpu_numpy() --------------------------------------


def _ids(*shape, high):
    return lambda rng: rng.integers(0, high, shape).astype(np.float64)


def _normal(*shape):
    return lambda rng: rng.standard_normal(shape)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


MODULES = {
    "linear": (lambda d: nn.Linear(5, 3, device=d, dtype="float64"), [_normal(4, 5)]),
    "mlp-residual-layernorm": (
        lambda d: nn.Sequential(
            nn.Linear(5, 6, device=d, dtype="float64"),
            nn.Residual(nn.Sequential(nn.LayerNorm1d(6, device=d, dtype="float64"), nn.Tanh())),
            nn.Sigmoid(),
            nn.Dropout(0.3),
        ),
        [_normal(4, 5)],
    ),
    "batchnorm1d": (lambda d: nn.BatchNorm1d(5, device=d, dtype="float64"), [_normal(6, 5)]),
    "conv-batchnorm2d": (
        lambda d: nn.Sequential(
            nn.Conv(2, 3, 3, stride=2, device=d, dtype="float64"),
            nn.BatchNorm2d(3, device=d, dtype="float64"),
            nn.Flatten(),
        ),
        [_normal(2, 2, 5, 5)],
    ),
    "rnn": (lambda d: nn.RNN(3, 4, num_layers=2, device=d, dtype="float64"), [_normal(5, 2, 3)]),
    "lstm": (lambda d: nn.LSTM(3, 4, device=d, dtype="float64"), [_normal(5, 2, 3)]),
    "embedding": (lambda d: nn.Embedding(7, 3, device=d, dtype="float64"), [_ids(4, 2, high=7)]),
    "transformer": (
        lambda d: nn.Transformer(
            8, 6, 2, num_head=2, dim_head=3, sequence_len=6, dropout=0.2, device=d, dtype="float64"
        ),
        [_normal(5, 2, 8)],
    ),
}


def _module_run(name, device):
    """Forward and backward (a random cotangent) of a seeded module on `device`: its output,
    each parameter's and each input's gradient, its plain tensors after (running stats)."""
    make, inputs = MODULES[name]
    with init.seeded(0):
        module = make(device)
    rng = np.random.default_rng(1)
    arrays = [draw(rng) for draw in inputs]
    leaves = [ndl.Tensor(a, device=device, dtype="float64") for a in arrays]
    with init.seeded(2):  # dropout's masks
        out = _first(module(*leaves))
    cotangent = ndl.Tensor(rng.standard_normal(out.shape), device=device, dtype="float64")
    (out * cotangent).sum().backward()
    assert out.device == device and all(p.device == device for p in module.parameters())
    grads = [p.grad.numpy() for p in module.parameters()]
    grads += [leaf.grad.numpy() for leaf in leaves if name != "embedding"]
    return [out.numpy(), *grads, *module.state_dict().values()]


@pytest.mark.parametrize("name", MODULES)
def test_modules_compute_the_same_on_every_cpu_storage(name):
    expected = _module_run(name, ndl.cpu_numpy())
    got = _module_run(name, ndl.cpu())
    assert len(got) == len(expected) > 2
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12, err_msg=f"{name} item {i}")


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
        lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.01),
        lambda ps: optim.AdamW(ps, lr=0.01),
    ],
    ids=["sgd", "adam", "adamw"],
)
def test_training_steps_match_across_storages(make):
    """Three steps of a small classifier from a DataLoader on each device: the same losses,
    weights and optimizer state."""
    x = RNG.standard_normal((12, 4)).astype(np.float32)
    y = RNG.integers(0, 3, 12).astype(np.uint8)
    results = []
    for device in (ndl.cpu_numpy(), ndl.cpu()):
        with init.seeded(0):
            model = nn.Sequential(nn.Linear(4, 5, device=device), nn.ReLU(),
                                  nn.Linear(5, 3, device=device))  # fmt: skip
        opt = make(model.parameters())
        loader = ndl.data.DataLoader(ndl.data.NDArrayDataset(x, y), batch_size=4, device=device)
        losses = []
        for batch, labels in loader:
            assert batch.device == labels.device == device
            opt.reset_grad()
            loss = nn.SoftmaxLoss()(model(batch), labels)
            loss.backward()
            opt.step()
            losses.append(float(loss.numpy()))
        state = opt.state_dict()
        buffers = [a for name in opt._per_param for a in state[name].values()]
        assert all(isinstance(a, np.ndarray) for a in buffers)
        results.append((losses, [p.numpy() for p in model.parameters()], buffers))
    (losses_np, weights_np, state_np), (losses_nd, weights_nd, state_nd) = results
    np.testing.assert_allclose(losses_nd, losses_np, rtol=1e-5)
    for got, expected in zip(weights_nd + state_nd, weights_np + state_np, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_state_dicts_load_across_storages():
    with init.seeded(0):
        source = nn.Linear(3, 2, device=ndl.cpu_numpy())
    target = nn.Linear(3, 2, device=ndl.cpu())
    target.load_state_dict(source.state_dict())
    assert target.weight.device == ndl.cpu()
    assert np.array_equal(target.weight.numpy(), source.weight.numpy())


# -- cuda(): the same model through CuPy's API ---------------------------------------------------


def test_a_model_trains_on_cuda_through_cupy_as_on_cpu_numpy(cupy_as):  # noqa: F811
    cupy_as(fake_cupy(1))
    gpu = ndl.cuda()
    assert gpu.enabled()
    x = RNG.standard_normal((6, 2, 3))
    results = []
    for device in (ndl.cpu_numpy(), gpu):
        with init.seeded(0):
            model = nn.LSTM(3, 4, device=device, dtype="float64")
            head = nn.Linear(4, 2, device=device, dtype="float64")
        out = head(model(ndl.Tensor(x, device=device, dtype="float64"))[0])
        ops_out = ndl.logsumexp(out, axes=2).sum()
        ops_out.backward()
        assert out.device == device and model.parameters()[0].grad.device == device
        results.append([out.numpy()] + [p.grad.numpy() for p in model.parameters()])
    for got, expected in zip(*reversed(results), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


# -- NEEDLE_BACKEND --------------------------------------------------------------------------


def _python(code, backend):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "NEEDLE_BACKEND": backend}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_needle_backend_picks_the_default_device():
    code = (
        "import numpy as np, needle as ndl\n"
        "t = ndl.Tensor(np.ones((2, 2)))\n"
        "print(ndl.BACKEND, ndl.default_device(), t.device, type(t.cached_data).__name__)\n"
    )
    assert _python(code, "nd").stdout.split() == ["nd", "cpu()", "cpu()", "NDArray"]
    assert _python(code, "np").stdout.split() == ["np", "cpu_numpy()", "cpu_numpy()", "ndarray"]
    bad = _python(code, "torch")
    assert bad.returncode != 0 and "NEEDLE_BACKEND='torch' is not a backend; valid: np, nd" in (
        bad.stderr
    )


def test_course_hw4_style_code_runs_under_nd():
    """What hw3/4 code does under NEEDLE_BACKEND=nd: NDArray data, `.numpy()`, `.size`, a
    conv layer and an optimizer step, on the default device."""
    code = (
        "import numpy as np, needle as ndl, needle.nn as nn\n"
        "from needle import backend_ndarray as nd\n"
        "x = ndl.Tensor(nd.array(np.random.randn(2, 3, 6, 6)), device=ndl.cpu())\n"
        "assert isinstance(x.cached_data, nd.NDArray) and x.cached_data.size == 216\n"
        "model = nn.Sequential(nn.Conv(3, 4, 3, device=ndl.cpu()), nn.Flatten(),\n"
        "                      nn.Linear(144, 2, device=ndl.cpu()))\n"
        "loss = nn.SoftmaxLoss()(model(x), ndl.Tensor([0, 1]))\n"
        "loss.backward()\n"
        "ndl.optim.Adam(model.parameters(), lr=0.1).step()\n"
        "print(loss.device, type(model.parameters()[0].cached_data).__name__)\n"
    )
    result = _python(code, "nd")
    assert result.stdout.split() == ["cpu()", "NDArray"], result.stderr


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    data=st.data(),
)
def test_numpy_namespace_pad_is_numpy_pad(shape, data):
    widths = [tuple(data.draw(st.tuples(st.integers(0, 3), st.integers(0, 3)))) for _ in shape]
    a = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    got = numpy_api.pad(a, widths)
    np.testing.assert_array_equal(got, np.pad(a, widths))
    assert got.dtype == a.dtype


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 3),
    channels=st.integers(1, 6),
    side=st.sampled_from([5, 24, 40]),
    flipped=st.booleans(),
    pad=st.integers(0, 3),
)
def test_padding_images_seen_through_a_transpose_is_numpy_pad(n, channels, side, flipped, pad):
    """NCHW images seen as NHWC (the last axis short and strided) are padded a channel at a
    time from 4096 entries up: the same array as numpy's pad, at every size around that."""
    nchw = np.random.default_rng(channels * side).standard_normal((n, channels, side, side))
    if flipped:
        nchw = nchw[:, ::-1, :, ::-1]
    a = nchw.astype(np.float32).transpose(0, 2, 3, 1)
    widths = [(0, 0), (pad, pad + 1), (pad, pad), (0, 0)]
    got = numpy_api.pad(a, widths)
    np.testing.assert_array_equal(got, np.pad(a, widths))
    assert got.flags.c_contiguous


def test_device_names_are_known_without_importing_cupy(tmp_path):
    """Reading a training config and finding cpu or cpu_numpy by name never imports CuPy:
    on a machine with it, that import (and CUDA's start) costs a second before a CPU run."""
    fake = tmp_path / "cupy"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import builtins\nbuiltins.CUPY_IMPORTED = True\nraise ImportError('fake')\n"
    )
    code = (
        "import builtins\n"
        "from needle.train.config import DEVICE_NAMES\n"
        "from needle.devices import device_named\n"
        "print(DEVICE_NAMES, device_named('cpu'), device_named('cpu_numpy'))\n"
        "print(getattr(builtins, 'CUPY_IMPORTED', False))\n"
        "device_named('cuda').enabled()\n"  # only asking for cuda itself imports it
        "print(getattr(builtins, 'CUPY_IMPORTED', False))\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "('cpu', 'cuda', 'cpu_numpy') cpu() cpu_numpy()",
        "False",
        "True",
    ]
