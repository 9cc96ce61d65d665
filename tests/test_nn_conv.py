"""The convolutional modules: Conv against the nested-loop conv in NCHW with its own weights,
BatchNorm2d against numpy, the order of their random draws, Flatten, and the gradients of a
small Conv → BatchNorm2d → ReLU → Flatten → Linear model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conv_reference import conv_loops
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle import nn
from needle.errors import UsageError
from needle.gradcheck import check_module


def _images(*shape, seed=0, dtype="float32"):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _conv_nchw(layer, x):
    """The layer by its definition: NCHW → NHWC, the nested-loop conv with the layer's own
    weight and padding (k − 1)//2, plus the bias per channel, back to NCHW."""
    out = conv_loops(
        x.transpose(0, 2, 3, 1).astype(np.float64),
        layer.weight.numpy().astype(np.float64),
        layer.stride,
        (layer.kernel_size - 1) // 2,
    )
    if layer.bias is not None:
        out = out + layer.bias.numpy()
    return out.transpose(0, 3, 1, 2)


# -- the package ---------------------------------------------------------------------------------


def test_nn_is_a_package_that_exports_every_module():
    import needle.nn.basic
    import needle.nn.conv
    import needle.nn.pool

    for source in (needle.nn.basic, needle.nn.conv, needle.nn.pool):
        for name, value in vars(source).items():
            if isinstance(value, type) and value.__module__ == source.__name__:
                if not name.startswith("_"):
                    assert getattr(nn, name) is value, name
    assert ndl.nn.Module is nn.basic.Module and nn.Conv is nn.conv.Conv


# -- Conv ----------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    channels=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 2),
    bias=st.booleans(),
    batch=st.integers(1, 2),
    data=st.data(),
)
def test_conv_matches_the_nested_loop_conv_in_nchw(channels, kernel, stride, bias, batch, data):
    c_in, c_out = channels
    padding = (kernel - 1) // 2
    h, w = (data.draw(st.integers(max(1, kernel - 2 * padding), 6)) for _ in range(2))
    layer = nn.Conv(c_in, c_out, kernel, stride=stride, bias=bias)
    x = _images(batch, c_in, h, w)
    out = layer(ndl.Tensor(x, requires_grad=False))
    ho, wo = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    assert out.shape == (batch, c_out, ho, wo) and out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), _conv_nchw(layer, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_odd_kernels_at_stride_one_keep_the_image_size(kernel):
    out = nn.Conv(2, 4, kernel)(ndl.Tensor(_images(3, 2, 7, 6)))
    assert out.shape == (3, 4, 7, 6)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("c_in, c_out, k", [(3, 16, 7), (2, 5, 3), (4, 1, 2)])
def test_conv_draws_weight_then_bias(c_in, c_out, k, bias):
    np.random.seed(11)
    layer = nn.Conv(c_in, c_out, k, bias=bias)
    after = np.random.rand()

    np.random.seed(11)
    fan_in = c_in * k * k
    weight_bound = math.sqrt(2) * math.sqrt(3 / fan_in)  # kaiming_uniform's, relu gain
    weight = np.random.rand(k, k, c_in, c_out) * 2 * weight_bound - weight_bound
    if bias:
        bias_bound = 1 / math.sqrt(fan_in)
        bias_values = np.random.rand(c_out) * 2 * bias_bound - bias_bound
    assert np.random.rand() == after, "drew a different amount of randomness"

    assert layer.weight.shape == (k, k, c_in, c_out) and layer.weight.dtype == np.float32
    np.testing.assert_array_equal(layer.weight.numpy(), weight.astype(np.float32))
    if bias:
        np.testing.assert_array_equal(layer.bias.numpy(), bias_values.astype(np.float32))
        assert layer.parameters() == [layer.weight, layer.bias]
    else:
        assert layer.bias is None and layer.parameters() == [layer.weight]


def test_tuple_sizes_count_by_their_first_entry():
    np.random.seed(5)
    from_tuples = nn.Conv(2, 3, (3, 3), stride=(2, 2))
    np.random.seed(5)
    from_ints = nn.Conv(2, 3, 3, stride=2)
    assert (from_tuples.kernel_size, from_tuples.stride, from_tuples.padding) == (3, 2, 1)
    np.testing.assert_array_equal(from_tuples.weight.numpy(), from_ints.weight.numpy())


def test_conv_takes_device_and_dtype():
    layer = nn.Conv(2, 3, 3, device=ndl.cpu(), dtype="float64")
    assert layer.weight.dtype == layer.bias.dtype == np.float64
    out = layer(ndl.Tensor(_images(1, 2, 4, 4, dtype="float64"), device=ndl.cpu()))
    assert out.dtype == np.float64 and out.device == ndl.cpu()


@pytest.mark.parametrize(
    "make, shape, message",
    [
        (lambda: nn.Conv(3, 4, 3), (2, 2, 5, 5), r"NCHW images with 3 channels.*\(2, 2, 5, 5\)"),
        (lambda: nn.Conv(3, 4, 3), (3, 5, 5), r"got shape \(3, 5, 5\)"),
        (lambda: nn.BatchNorm2d(4), (2, 3, 5, 5), r"BatchNorm2d takes NCHW images with 4 channels"),
    ],
)
def test_modules_name_the_shape_they_take(make, shape, message):
    with pytest.raises(UsageError, match=message):
        make()(ndl.Tensor(np.zeros(shape, dtype=np.float32)))


@pytest.mark.parametrize(
    "args, message",
    [((0, 4, 3), r"in_channels must be an integer ≥ 1 \(got 0\)"), ((2, 4, 2.5), "kernel_size")],
)
def test_conv_refuses_bad_sizes(args, message):
    with pytest.raises(UsageError, match=message):
        nn.Conv(*args)


# -- BatchNorm2d ---------------------------------------------------------------------------------


def test_batchnorm2d_matches_numpy_and_updates_running_statistics():
    bn = nn.BatchNorm2d(3, eps=1e-3, momentum=0.2, dtype="float64")
    rng = np.random.default_rng(1)
    bn.weight.data = ndl.Tensor(rng.uniform(0.5, 2, 3))
    bn.bias.data = ndl.Tensor(rng.standard_normal(3))
    x = rng.standard_normal((4, 3, 5, 2)) * 3 + 1
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    per_channel = (slice(None), None, None)
    expected = (x - mean[per_channel]) / np.sqrt(var[per_channel] + 1e-3)
    expected = expected * bn.weight.numpy()[per_channel] + bn.bias.numpy()[per_channel]
    out = bn(ndl.Tensor(x))
    assert out.shape == x.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.2 * mean)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.8 + 0.2 * var)

    bn.eval()
    running = (x - bn.running_mean.numpy()[per_channel]) / np.sqrt(
        bn.running_var.numpy()[per_channel] + 1e-3
    )
    expected = running * bn.weight.numpy()[per_channel] + bn.bias.numpy()[per_channel]
    np.testing.assert_allclose(bn(ndl.Tensor(x)).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_batchnorm2d_and_flatten_draw_nothing():
    np.random.seed(2)
    nn.BatchNorm2d(5)
    nn.Flatten()
    nn.ReLU()
    after = np.random.rand()
    np.random.seed(2)
    assert np.random.rand() == after


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 7), (3, 2, 2), (4, 1, 1, 1, 2)])
def test_flatten_keeps_the_batch_axis(shape):
    x = _images(*shape)
    out = nn.Flatten()(ndl.Tensor(x))
    assert out.shape == (shape[0], math.prod(shape[1:]))
    np.testing.assert_array_equal(out.numpy(), x.reshape(shape[0], -1))


def test_sigmoid_matches_numpy():
    x = _images(3, 4, dtype="float64") * 4
    np.testing.assert_allclose(nn.Sigmoid()(ndl.Tensor(x)).numpy(), 1 / (1 + np.exp(-x)))


# -- a small CNN's gradients -----------------------------------------------------------------------


def test_small_cnn_gradients_through_the_model_check(device):
    np.random.seed(0)
    model = nn.Sequential(
        nn.Conv(2, 3, 3, stride=2, device=device),
        nn.BatchNorm2d(3, device=device),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 4, device=device),
    )
    X = _images(5, 2, 5, 6, seed=3)
    y = np.array([0, 1, 2, 3, 1])
    report = check_module(model, X, y, seed=1, fast=False)
    assert report.passed, report.inputs
    assert report.input_names == (
        "modules.0.weight",
        "modules.0.bias",
        "modules.1.weight",
        "modules.1.bias",
        "modules.4.weight",
        "modules.4.bias",
    )
    assert report.dtype == "float64" and report.checked == sum(p.size for p in model.parameters())
