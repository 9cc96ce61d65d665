"""needle.models: structure, parameter counts derived from the dimensions, the order weights
are drawn in, a forward pass against numpy, and a small CNN that learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle import init, nn, optim
from needle.models import ConvBN, MLPResNet, ResidualBlock, ResNet9


def _linear_count(n_in, n_out):
    return n_in * n_out + n_out  # weight and bias


def _expected_count(dim, hidden, blocks, classes):
    half = hidden // 2
    # per block: Linear(hidden→half), norm(half), Linear(half→hidden), norm(hidden); a norm
    # (BatchNorm1d or LayerNorm1d) has a weight and a bias of its dimension.
    block = _linear_count(hidden, half) + 2 * half + _linear_count(half, hidden) + 2 * hidden
    return _linear_count(dim, hidden) + blocks * block + _linear_count(hidden, classes)


@settings(max_examples=20, deadline=None)
@given(
    dim=st.integers(1, 12),
    hidden=st.integers(2, 12),
    blocks=st.integers(0, 3),
    classes=st.integers(1, 5),
    norm=st.sampled_from([nn.BatchNorm1d, nn.LayerNorm1d]),
)
def test_parameter_count_follows_the_dimensions(dim, hidden, blocks, classes, norm):
    model = MLPResNet(dim, hidden, num_blocks=blocks, num_classes=classes, norm=norm)
    count = sum(p.size for p in model.parameters())
    assert count == _expected_count(dim, hidden, blocks, classes)


def test_default_mlpresnet_on_mnist_size():
    model = MLPResNet(784)
    assert sum(p.size for p in model.parameters()) == _expected_count(784, 100, 3, 10)


def test_structure():
    model = MLPResNet(7, hidden_dim=8, num_blocks=2, num_classes=3, drop_prob=0.3)
    kinds = [type(m) for m in model.modules]
    assert kinds == [nn.Linear, nn.ReLU, nn.Sequential, nn.Sequential, nn.Linear]
    block = model.modules[2]
    residual, relu = block.modules
    assert isinstance(residual, nn.Residual) and isinstance(relu, nn.ReLU)
    inner = residual.fn.modules
    assert [type(m) for m in inner] == [
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Dropout,
        nn.Linear,
        nn.BatchNorm1d,
    ]
    assert (inner[0].in_features, inner[0].out_features) == (8, 4)
    assert (inner[4].in_features, inner[4].out_features) == (4, 8)
    assert (inner[1].dim, inner[5].dim, inner[3].p) == (4, 8, 0.3)
    assert (model.modules[0].in_features, model.modules[-1].out_features) == (7, 3)


def test_weights_are_drawn_in_execution_order():
    np.random.seed(13)
    model = MLPResNet(6, hidden_dim=4, num_blocks=2, num_classes=3)
    after = np.random.rand()

    np.random.seed(13)
    dims = [(6, 4)] + [(4, 2), (2, 4)] * 2 + [(4, 3)]
    expected = []
    for fan_in, fan_out in dims:
        weight = init.kaiming_uniform(fan_in, fan_out).numpy()
        bias = init.kaiming_uniform(fan_out, 1).numpy().reshape(1, fan_out)
        expected.append((weight, bias))
    assert np.random.rand() == after

    linears = [p for p in model.parameters() if p.ndim == 2]
    assert len(linears) == 2 * len(dims)
    for k, (weight, bias) in enumerate(expected):
        np.testing.assert_array_equal(linears[2 * k].numpy(), weight)
        np.testing.assert_array_equal(linears[2 * k + 1].numpy(), bias)


def _np_linear(layer, x):
    return x @ layer.weight.numpy() + layer.bias.numpy()


def _np_batchnorm_train(bn, x):
    return (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + bn.eps) * bn.weight.numpy()


@pytest.mark.parametrize("norm", [nn.BatchNorm1d, nn.LayerNorm1d])
def test_residual_block_forward_matches_numpy(norm):
    np.random.seed(2)
    block = ResidualBlock(5, 3, norm=norm, drop_prob=0.0)
    lin1, norm1, _, _, lin2, norm2 = block.modules[0].fn.modules

    def np_norm(layer, x):
        if norm is nn.BatchNorm1d:
            return _np_batchnorm_train(layer, x)
        mean, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
        return (x - mean) / np.sqrt(var + layer.eps)

    x = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    hidden = np.maximum(np_norm(norm1, _np_linear(lin1, x.astype(np.float64))), 0)
    expected = np.maximum(x + np_norm(norm2, _np_linear(lin2, hidden)), 0)
    out = block(ndl.Tensor(x, requires_grad=False))
    assert out.shape == (6, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_mlpresnet_forward_backward_float32():
    np.random.seed(0)
    model = MLPResNet(10, hidden_dim=8, num_blocks=2, num_classes=4)
    x = ndl.Tensor(np.random.randn(5, 10).astype(np.float32), requires_grad=False)
    out = model(x)
    assert out.shape == (5, 4) and out.dtype == np.float32
    y = ndl.Tensor(np.array([0, 1, 2, 3, 0], dtype=np.uint8), requires_grad=False)
    nn.SoftmaxLoss()(out, y).backward()
    for p in model.parameters():
        assert p.grad is not None and p.grad.shape == p.shape and p.grad.dtype == np.float32


def test_eval_is_deterministic_and_draws_nothing():
    np.random.seed(0)
    model = MLPResNet(10, hidden_dim=8, drop_prob=0.5).eval()
    x = ndl.Tensor(np.random.randn(4, 10).astype(np.float32), requires_grad=False)
    np.random.seed(5)
    first, second = model(x).numpy(), model(x).numpy()
    after = np.random.rand()
    np.random.seed(5)
    assert np.random.rand() == after
    np.testing.assert_array_equal(first, second)


# -- ResNet9 -----------------------------------------------------------------------------------

# SPEC-hw4's layer list: ("conv_bn", in, out, k, stride), ("residual", channels) for two
# ConvBN(channels, channels, 3, 1), ("linear", in, out).
RESNET9_LAYERS = [
    ("conv_bn", 3, 16, 7, 4),
    ("conv_bn", 16, 32, 3, 2),
    ("residual", 32),
    ("conv_bn", 32, 64, 3, 2),
    ("conv_bn", 64, 128, 3, 2),
    ("residual", 128),
    ("linear", 128, 128),
    ("linear", 128, 10),
]


def _resnet9_draws():
    """(shape, uniform bound) of every drawn parameter in construction order, from the
    layer list: per ConvBN the conv weight (k, k, in, out), bound √2·√(3/(in·k²)), then its
    bias (out,), bound 1/√(in·k²); per Linear the weight (in, out), bound √2·√(3/in), then
    its bias (out, 1), bound √2·√(3/out) (the course's fan_in = out)."""
    convs = []
    for layer in RESNET9_LAYERS:
        if layer[0] == "conv_bn":
            convs.append(layer[1:])
        elif layer[0] == "residual":
            convs += [(layer[1], layer[1], 3, 1)] * 2
    draws = []
    for c_in, c_out, k, _ in convs:
        fan_in = c_in * k * k
        draws.append(((k, k, c_in, c_out), math.sqrt(2) * math.sqrt(3 / fan_in)))
        draws.append(((c_out,), 1 / math.sqrt(fan_in)))
    for _, n_in, n_out in (layer for layer in RESNET9_LAYERS if layer[0] == "linear"):
        draws.append(((n_in, n_out), math.sqrt(2) * math.sqrt(3 / n_in)))
        draws.append(((n_out, 1), math.sqrt(2) * math.sqrt(3 / n_out)))
    return convs, draws


def test_resnet9_parameter_count_follows_the_layer_list():
    convs, draws = _resnet9_draws()
    # Every ConvBN adds BatchNorm2d's weight and bias, one entry per output channel each.
    expected = sum(math.prod(shape) for shape, _ in draws) + sum(
        2 * c_out for _, c_out, _, _ in convs
    )
    assert sum(p.size for p in ResNet9().parameters()) == expected


def test_resnet9_draws_its_weights_in_layer_order():
    np.random.seed(21)
    model = ResNet9()
    after = np.random.rand()

    np.random.seed(21)
    _, draws = _resnet9_draws()
    expected = [np.random.rand(*shape) * 2 * bound - bound for shape, bound in draws]
    assert np.random.rand() == after, "drew a different amount of randomness"

    # The drawn parameters are the conv weights and biases (ndim 4 and the conv bias right
    # after one) and the Linear ones; BatchNorm2d's weights (ones) and biases (zeros) are not.
    params = model.parameters()
    drawn = [
        p
        for i, p in enumerate(params)
        if p.ndim == 4 or (i and params[i - 1].ndim == 4) or p.ndim == 2
    ]
    assert len(drawn) == len(expected)
    for p, values in zip(drawn, expected, strict=True):
        np.testing.assert_array_equal(p.numpy(), values.astype(np.float32).reshape(p.shape))


def test_resnet9_on_cifar_sized_images():
    np.random.seed(0)
    model = ResNet9(dtype="float64")
    assert [type(m) for m in model.modules[:3]] == [nn.Sequential, nn.Sequential, nn.Residual]
    x = ndl.Tensor(np.random.default_rng(0).random((2, 3, 32, 32)), requires_grad=False)
    out = model(x)
    assert out.shape == (2, 10) and out.dtype == np.float64
    nn.SoftmaxLoss()(out, ndl.Tensor(np.array([3, 7]))).backward()
    for p in model.parameters():
        assert p.grad is not None and p.grad.shape == p.shape


def test_a_tiny_cnn_learns_to_tell_stripes_apart():
    """Vertical against horizontal bright stripes in noise: 30 steps of SGD on the batch
    bring the loss well down."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 32)
    images = rng.standard_normal((32, 1, 6, 6)) * 0.5
    where = rng.integers(0, 6, 32)
    for i, (label, k) in enumerate(zip(labels, where, strict=True)):
        if label:
            images[i, 0, k, :] += 2.0
        else:
            images[i, 0, :, k] += 2.0
    X = ndl.Tensor(images.astype(np.float32), requires_grad=False)
    y = ndl.Tensor(labels, requires_grad=False)

    np.random.seed(1)
    model = nn.Sequential(ConvBN(1, 4, 3, 1), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    opt = optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.SoftmaxLoss()
    losses = []
    for _ in range(30):
        opt.reset_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.numpy()))
    assert losses[-1] < 0.25 * losses[0], losses
    assert all(np.isfinite(losses))
