"""The pooling modules against their definitions (window by window, in NCHW), the tie rule
of max pooling, Conv's keyword-only padding, and the gradients of a model with pools."""

from __future__ import annotations

import numpy as np
import pytest
from conv_reference import conv_loops, pool_loops
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle import nn
from needle.errors import UsageError
from needle.gradcheck import check_module, check_op


def _images(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _nchw_pool(x, kernel, stride, reduce):
    return pool_loops(x.transpose(0, 2, 3, 1), kernel, stride, reduce).transpose(0, 3, 1, 2)


@settings(max_examples=25, deadline=None)
@given(
    kernel=st.integers(1, 3),
    stride=st.one_of(st.none(), st.integers(1, 3)),
    size=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    channels=st.integers(1, 3),
    which=st.sampled_from(["max", "avg"]),
)
def test_window_pools_match_their_definition(kernel, stride, size, channels, which):
    h, w = kernel + size[0], kernel + size[1]
    layer_type, reduce = (nn.MaxPool2d, np.max) if which == "max" else (nn.AvgPool2d, np.mean)
    x = _images(2, channels, h, w)
    out = layer_type(kernel, stride)(ndl.Tensor(x))
    np.testing.assert_allclose(out.numpy(), _nchw_pool(x, kernel, stride, reduce), rtol=1e-12)


def test_global_avgpool_is_the_mean_over_pixels_and_its_gradient_checks():
    x = _images(3, 4, 5, 2)
    out = nn.GlobalAvgPool2d()(ndl.Tensor(x))
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out.numpy(), x.mean(axis=(2, 3)), rtol=1e-12)
    model = nn.Sequential(nn.GlobalAvgPool2d(), nn.Linear(4, 3))
    assert check_module(model, x, np.array([0, 2, 1]), seed=0, fast=False).passed


def test_a_tie_sends_the_gradient_to_the_first_entry_in_row_major_order():
    window = np.array([[1.0, 3.0], [3.0, 3.0]])  # three entries tie at the maximum
    x = ndl.Tensor(window.reshape(1, 2, 2, 1))
    ndl.maxpool2d(x, 2).backward()
    np.testing.assert_array_equal(x.grad.numpy().reshape(2, 2), [[0.0, 1.0], [0.0, 0.0]])
    # Overlapping windows each route their own out_grad: both pick the shared middle 3.
    x = ndl.Tensor(np.array([1.0, 3.0, 3.0]).reshape(1, 1, 3, 1))
    with pytest.raises(UsageError, match="kernel size 2 is larger than the input 1×3"):
        ndl.maxpool2d(x, 2, 1)
    row = ndl.Tensor(np.array([[1.0, 3.0, 3.0], [0.0, 0.0, 0.0]]).reshape(1, 2, 3, 1))
    ndl.maxpool2d(row, 2, 1).backward()
    np.testing.assert_array_equal(row.grad.numpy().reshape(2, 3), [[0, 2, 0], [0, 0, 0]])


@pytest.mark.parametrize("name", ["maxpool2d", "avgpool2d"])
@pytest.mark.parametrize("kernel, stride", [(2, None), (3, 1), (2, 3)])
def test_pool_gradients_at_orders_one_and_two(name, kernel, stride):
    report = check_op(name, {"kernel": kernel, "stride": stride}, order=2, seed=5)
    assert report.passed, report.inputs


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: nn.MaxPool2d(0), r"maxpool2d: kernel must be an integer ≥ 1 \(got 0\)"),
        (lambda: nn.AvgPool2d(2, stride=1.5), r"avgpool2d: stride must be an integer ≥ 1"),
    ],
)
def test_pools_refuse_bad_sizes(make, message):
    with pytest.raises(UsageError, match=message):
        make()


@pytest.mark.parametrize("layer", [nn.MaxPool2d(2), nn.AvgPool2d(2), nn.GlobalAvgPool2d()])
def test_pools_name_the_shape_they_take(layer):
    with pytest.raises(UsageError, match=r"NCHW images \(N, C, H, W\); got shape \(2, 8\)"):
        layer(ndl.Tensor(np.zeros((2, 8))))


def test_pools_hold_no_parameters():
    for layer in (nn.MaxPool2d(2), nn.AvgPool2d(3, 1), nn.GlobalAvgPool2d()):
        assert layer.parameters() == []


# -- Conv's padding ------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel, padding, stride", [(3, 0, 1), (3, 2, 2), (1, 1, 1), (4, 0, 2)])
def test_conv_padding_is_the_nested_loop_convs(kernel, padding, stride):
    layer = nn.Conv(2, 3, kernel, stride=stride, padding=padding, dtype="float64")
    x = _images(2, 2, 6, 5)
    expected = (
        conv_loops(x.transpose(0, 2, 3, 1), layer.weight.numpy(), stride, padding)
        + layer.bias.numpy()
    )
    out = layer(ndl.Tensor(x))
    np.testing.assert_allclose(out.numpy(), expected.transpose(0, 3, 1, 2), rtol=1e-10)


def test_conv_padding_changes_no_draw():
    np.random.seed(4)
    default = nn.Conv(3, 5, 3)
    np.random.seed(4)
    padded = nn.Conv(3, 5, 3, padding=0)
    assert padded.padding == 0 and default.padding == 1
    for a, b in zip(default.parameters(), padded.parameters(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_conv_refuses_a_negative_padding():
    with pytest.raises(UsageError, match=r"padding must be an integer ≥ 0 \(got -1\)"):
        nn.Conv(2, 3, 3, padding=-1)


def test_small_cnn_with_pools_gradients_check():
    np.random.seed(0)
    model = nn.Sequential(
        nn.Conv(2, 3, 3, dtype="float64"),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.AvgPool2d(2, 1),
        nn.GlobalAvgPool2d(),
        nn.Linear(3, 4, dtype="float64"),
    )
    X = _images(3, 2, 6, 6, seed=3)
    report = check_module(model, X, np.array([0, 1, 3]), seed=1, fast=False)
    assert report.passed, report.inputs
