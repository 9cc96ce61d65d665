"""torch_conv_step.py hands PyTorch needle's weights: in PyTorch's layouts they compute what
needle's layers do, by PyTorch's definitions written in numpy (no torch needed). With torch
installed, PyTorch's steps from those weights follow the float64 floor's for two steps."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import needle as ndl
from needle import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
torch_conv_step = pytest.importorskip("torch_conv_step")


def torch_conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int, padding: int):
    """PyTorch's Conv2d by its definition: out[n, o, i, j] = bias[o] +
    Σ_{c, a, b} weight[o, c, a, b] · x_padded[n, c, i·stride + a, j·stride + b]."""
    k = weight.shape[2]
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (padded.shape[2] - k) // stride + 1
    wo = (padded.shape[3] - k) // stride + 1
    out = np.empty((x.shape[0], weight.shape[0], ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = padded[:, :, i * stride : i * stride + k, j * stride : j * stride + k]
            out[:, :, i, j] = np.einsum("ncab,ocab->no", patch, weight) + bias
    return out


@pytest.mark.parametrize("kernel, stride", [(3, 1), (3, 2), (5, 2), (2, 1)])
def test_conv_weight_in_torch_layout_computes_needle_conv(kernel, stride):
    np.random.seed(kernel * 10 + stride)
    conv = nn.Conv(3, 5, kernel, stride=stride)
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6)).astype(np.float32)
    weight = torch_conv_step.conv_weight_to_torch(conv.weight.numpy())
    assert weight.shape == (5, 3, kernel, kernel)
    expected = torch_conv2d(x.astype(np.float64), weight, conv.bias.numpy(), stride, conv.padding)
    np.testing.assert_allclose(conv(ndl.Tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_conv_weight_from_torch_undoes_to_torch():
    # Four different sizes, so any wrong axis order changes the shape or the values.
    weight = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    to_torch = torch_conv_step.conv_weight_to_torch(weight)
    np.testing.assert_array_equal(torch_conv_step.conv_weight_from_torch(to_torch), weight)


def test_linear_weight_in_torch_layout_computes_needle_linear():
    np.random.seed(2)
    linear = nn.Linear(6, 4)
    x = np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)
    weight = torch_conv_step.linear_weight_to_torch(linear.weight.numpy())
    assert weight.shape == (4, 6)
    expected = x @ weight.T + linear.bias.numpy().reshape(-1)  # PyTorch's y = x Wᵀ + b
    np.testing.assert_allclose(linear(ndl.Tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_torch_steps_follow_the_float64_floor():
    torch = pytest.importorskip("torch")
    step, inputs, errors = torch_conv_step.torch_side("tiny", 4)  # checks the first step
    assert errors["loss_err"] <= torch_conv_step.LOSS_RTOL
    _, floor_step, _, batches = torch_conv_step.conv_step.setup("tiny", 4)
    reference = floor_step.reference
    reference(*batches[0])
    second = reference(*batches[1])  # both sides start it from their first SGD update
    assert isinstance(inputs[1][0], torch.Tensor)
    assert abs(step(*inputs[1]) - second) <= torch_conv_step.LOSS_RTOL * abs(second)
