"""needle.nn: forward passes against numpy, gradients against float64 central differences,
parameter discovery, modes, RNG order and dtype preservation."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle import init, nn
from needle.errors import UsageError
from needle.gradcheck import check_gradients


def _tensor(shape, seed=0, dtype=np.float32, scale=1.0, device=None):
    rng = np.random.default_rng(seed)
    array = (rng.standard_normal(shape) * scale).astype(dtype)
    return ndl.Tensor(array, device=device, requires_grad=False)


def _assert_module_gradients(module, x: np.ndarray, names: list[str], device=None):
    """Check d(module(x))/d(x and each named attribute) under a random cotangent, by putting
    the checker's float64 tensors in place of the module's attributes."""

    def fn(x, *values):
        for name, value in zip(names, values, strict=True):
            setattr(module, name, value)
        return module(x)

    arrays = [x] + [getattr(module, name).numpy() for name in names]
    report = check_gradients(fn, arrays, device=device)
    assert report.passed, report.to_dict()


# -- Module: parameter discovery and modes ---------------------------------------------------


class _Holder(nn.Module):
    """Parameters reachable every way the walk supports."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(2, 2)
        self.own = nn.Parameter(init.zeros(1))
        self.listed = [nn.Linear(2, 3, bias=False), (nn.Parameter(init.ones(2)), self.shared)]
        self.named = {"z": nn.BatchNorm1d(3), "a": self.shared}
        self.not_a_parameter = init.ones(4)  # a plain tensor
        self.number = 3


def test_parameters_walk_attributes_in_insertion_order_once_each():
    holder = _Holder()
    expected = [
        holder.shared.weight,
        holder.shared.bias,
        holder.own,
        holder.listed[0].weight,
        holder.listed[1][0],
        holder.named["z"].weight,
        holder.named["z"].bias,
    ]
    got = holder.parameters()
    assert [id(p) for p in got] == [id(p) for p in expected]
    assert all(isinstance(p, nn.Parameter) and isinstance(p, ndl.Tensor) for p in got)


def test_named_parameters_are_parameters_with_their_attribute_paths():
    holder = _Holder()
    named = holder.named_parameters()
    assert [id(p) for _, p in named] == [id(p) for p in holder.parameters()]
    assert [name for name, _ in named] == [
        "shared.weight",
        "shared.bias",
        "own",
        "listed.0.weight",
        "listed.1.0",
        "named.z.weight",
        "named.z.bias",
    ]
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1, bias=False))
    assert [name for name, _ in model.named_parameters()] == list(model.state_dict())


def test_named_modules_reach_every_module_once():
    holder = _Holder()
    assert [(name, id(m)) for name, m in holder.named_modules()] == [
        ("", id(holder)),
        ("shared", id(holder.shared)),
        ("listed.0", id(holder.listed[0])),
        ("named.z", id(holder.named["z"])),
    ]


def test_children_are_direct_submodules():
    holder = _Holder()
    assert holder.children() == [holder.shared, holder.listed[0], holder.named["z"]]
    seq = nn.Sequential(nn.Residual(nn.Sequential(nn.ReLU())), nn.Tanh())
    assert [type(m) for m in seq.children()] == [nn.Residual, nn.Tanh]


def test_walk_survives_a_cycle():
    outer = nn.Sequential(nn.Linear(2, 2))
    outer.modules[0].parent = outer  # a child that points back at its parent
    assert len(outer.parameters()) == 2


def test_train_and_eval_reach_every_descendant():
    holder = _Holder()
    nested = nn.Sequential(nn.Residual(nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2))), holder)
    modules = [nested, *nested.modules, nested.modules[0].fn, *nested.modules[0].fn.modules]
    modules += [holder.shared, holder.listed[0], holder.named["z"]]
    assert all(m.training for m in modules)
    assert nested.eval() is nested
    assert not any(m.training for m in modules)
    nested.train()
    assert all(m.training for m in modules)


def test_module_call_is_forward():
    class Twice(nn.Module):
        def forward(self, x, *, times=2):
            return x * times

    x = _tensor((3,))
    np.testing.assert_array_equal(Twice()(x, times=3).numpy(), x.numpy() * 3)


def test_state_dict_round_trip_includes_running_statistics():
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model(_tensor((5, 3)))  # moves the running statistics away from their start
    state = model.state_dict()
    assert set(state) == {
        "modules.0.weight",
        "modules.0.bias",
        "modules.1.weight",
        "modules.1.bias",
        "modules.1.running_mean",
        "modules.1.running_var",
    }
    np.random.seed(1)
    other = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    other.load_state_dict(state)
    for name, array in other.state_dict().items():
        np.testing.assert_array_equal(array, state[name])
    state["modules.0.weight"][:] = 0  # the loaded model owns copies
    assert np.abs(other.modules[0].weight.numpy()).sum() > 0


def test_load_state_dict_rejects_a_different_model():
    model = nn.Linear(3, 4)
    with pytest.raises(UsageError, match=r"missing \['bias'\], unexpected \['b'\]"):
        model.load_state_dict({"weight": np.zeros((3, 4)), "b": np.zeros((1, 4))})
    with pytest.raises(UsageError, match=r"'weight' has shape \(4, 3\), expected \(3, 4\)"):
        model.load_state_dict({"weight": np.zeros((4, 3)), "bias": np.zeros((1, 4))})


def test_a_rejected_state_loads_nothing():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    before = model.state_dict()
    state = {name: np.zeros_like(array) for name, array in before.items()}
    state["modules.1.bias"] = np.zeros((1, 3))  # the last tensor is the wrong shape
    with pytest.raises(UsageError, match="'modules.1.bias' has shape"):
        model.load_state_dict(state)
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(array, before[name])


# -- Linear -----------------------------------------------------------------------------------


def test_linear_draws_weight_then_bias():
    np.random.seed(3)
    layer = nn.Linear(5, 3)
    after = np.random.rand()
    np.random.seed(3)
    weight = init.kaiming_uniform(5, 3).numpy()
    bias = init.kaiming_uniform(3, 1).numpy()
    assert np.random.rand() == after
    assert layer.weight.shape == (5, 3) and layer.bias.shape == (1, 3)
    np.testing.assert_array_equal(layer.weight.numpy(), weight)
    np.testing.assert_array_equal(layer.bias.numpy(), bias.T)
    assert layer.parameters() == [layer.weight, layer.bias]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linear_draws_weight_then_bias_from_a_given_initializer(dtype):
    draw = functools.partial(init.xavier_normal, gain=2.0)
    np.random.seed(4)
    layer = nn.Linear(5, 3, dtype=dtype, initializer=draw)
    after = np.random.rand()
    np.random.seed(4)
    weight, bias = draw(5, 3, dtype=dtype).numpy(), draw(3, 1, dtype=dtype).numpy()
    assert np.random.rand() == after  # only the initializer's draws, nothing else
    assert layer.weight.dtype == layer.bias.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(layer.weight.numpy(), weight)
    np.testing.assert_array_equal(layer.bias.numpy(), bias.T)


def test_linear_without_bias_draws_only_the_weight():
    np.random.seed(3)
    layer = nn.Linear(5, 3, bias=False)
    after = np.random.rand()
    np.random.seed(3)
    init.kaiming_uniform(5, 3)
    assert np.random.rand() == after
    assert layer.bias is None and layer.parameters() == [layer.weight]


@pytest.mark.parametrize("lead", [(4,), (2, 3), (), (2, 1, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_any_leading_shape(lead, bias, device):
    layer = nn.Linear(5, 3, bias=bias, device=device)
    x = _tensor((*lead, 5), device=device)
    expected = x.numpy() @ layer.weight.numpy()
    if bias:
        expected = expected + layer.bias.numpy().reshape(3)
    out = layer(x)
    assert out.shape == (*lead, 3) and out.dtype == np.float32 and out.device == device
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_linear_accepts_a_flat_bias_assigned_later():
    layer = nn.Linear(4, 2)
    layer.bias = nn.Parameter(np.array([1.0, -2.0], dtype=np.float32))
    x = _tensor((3, 4))
    np.testing.assert_allclose(
        layer(x).numpy(), x.numpy() @ layer.weight.numpy() + [1.0, -2.0], rtol=1e-6
    )
    layer(x).sum().backward()
    assert layer.bias.grad.shape == (2,)
    np.testing.assert_allclose(layer.bias.grad.numpy(), [3.0, 3.0])


@pytest.mark.parametrize("lead", [(4,), (2, 3)])
def test_linear_gradients(lead, device):
    layer = nn.Linear(3, 2, dtype="float64", device=device)
    x = np.random.default_rng(1).standard_normal((*lead, 3))
    _assert_module_gradients(layer, x, ["weight", "bias"], device)


@settings(max_examples=25, deadline=None)
@given(
    lead=st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple),
    n_in=st.integers(1, 6),
    n_out=st.integers(1, 6),
)
def test_linear_matches_numpy_for_drawn_shapes(lead, n_in, n_out):
    layer = nn.Linear(n_in, n_out)
    x = _tensor((*lead, n_in), seed=n_in)
    expected = x.numpy() @ layer.weight.numpy() + layer.bias.numpy()[0]
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-6)


# -- parameterless layers ---------------------------------------------------------------------


def test_flatten_identity_activations():
    x = _tensor((2, 3, 4))
    a = x.numpy()
    np.testing.assert_array_equal(nn.Flatten()(x).numpy(), a.reshape(2, 12))
    assert nn.Identity()(x) is x
    np.testing.assert_array_equal(nn.ReLU()(x).numpy(), np.where(a > 0, a, 0))
    np.testing.assert_allclose(nn.Tanh()(x).numpy(), np.tanh(a), rtol=1e-6)
    np.testing.assert_allclose(nn.Sigmoid()(x).numpy(), 1 / (1 + np.exp(-a)), rtol=1e-6)


def test_sequential_and_residual_compose(device):
    first, second = nn.Linear(3, 3, device=device), nn.Linear(3, 3, device=device)
    seq = nn.Sequential(first, nn.ReLU(), second)
    assert seq.modules == (first, seq.modules[1], second)
    assert seq.parameters() == first.parameters() + second.parameters()
    x = _tensor((4, 3), device=device)
    hidden = np.maximum(x.numpy() @ first.weight.numpy() + first.bias.numpy(), 0)
    expected = hidden @ second.weight.numpy() + second.bias.numpy()
    np.testing.assert_allclose(seq(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        nn.Residual(seq)(x).numpy(), expected + x.numpy(), rtol=1e-5, atol=1e-6
    )
    assert nn.Sequential()(x) is x


# -- SoftmaxLoss ------------------------------------------------------------------------------


def _np_softmax_loss(z: np.ndarray, y: np.ndarray) -> float:
    z = z.astype(np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=1)) + z.max(axis=1)
    return float(np.mean(lse - z[np.arange(len(y)), y]))


@pytest.mark.parametrize("scale", [1.0, 50.0])
def test_softmax_loss_matches_numpy(scale, device):
    logits = _tensor((6, 4), scale=scale, device=device)
    labels = np.array([0, 3, 1, 1, 2, 3], dtype=np.uint8)
    loss = nn.SoftmaxLoss()(logits, ndl.Tensor(labels, device=device, requires_grad=False))
    assert loss.shape == () and loss.dtype == np.float32
    assert float(loss.numpy()) == pytest.approx(_np_softmax_loss(logits.numpy(), labels), 1e-5)


@pytest.mark.parametrize("dtype, rel", [(np.float32, 1e-6), (np.float64, 1e-15)])
def test_softmax_loss_of_equal_huge_logits_is_log_2(dtype, rel):
    # Two equal logits are a coin flip at any magnitude: the loss is log 2, never 0.
    logits = ndl.Tensor(np.array([[1e8, 1e8]], dtype=dtype))
    loss = nn.SoftmaxLoss()(logits, ndl.Tensor(np.array([0])))
    assert float(loss.numpy()) == pytest.approx(math.log(2), rel=rel)


def test_softmax_loss_of_confident_float32_logits_near_1e3():
    # Right and confident, so the loss is ~1e-6: forming it as lse − z_y from two rounded
    # numbers near 1e3 would leave only the ulp of 1e3 (6e-5) of it.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 64)
    z = 1000 + rng.standard_normal((64, 10))
    z[np.arange(64), y] += 15
    z = z.astype(np.float32)
    exact = _np_softmax_loss(z, y)  # float64, from the same float32 logits
    loss = nn.SoftmaxLoss()(ndl.Tensor(z), ndl.Tensor(y))
    assert loss.dtype == np.float32
    assert abs(float(loss.numpy()) - exact) < 5e-7


def test_softmax_loss_gradient(device):
    labels = np.array([2, 0, 1, 2, 2])
    y = ndl.Tensor(labels, device=device, requires_grad=False)
    logits = np.random.default_rng(4).standard_normal((5, 3))
    report = check_gradients(lambda z: nn.SoftmaxLoss()(z, y), [logits], device=device)
    assert report.passed, report.to_dict()
    # and the closed form: (softmax − one_hot) / N
    z = ndl.Tensor(logits, device=device)
    nn.SoftmaxLoss()(z, y).backward()
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p[np.arange(5), labels] -= 1
    np.testing.assert_allclose(z.grad.numpy(), p / 5, rtol=1e-10)


def test_softmax_loss_reads_the_labels_by_index():
    # The course's form multiplies by one_hot(y), an (N, k) matrix built on every step; here
    # the loss is one node (ops.cross_entropy) whose only input is the logits.
    logits = ndl.Tensor(np.random.default_rng(0).standard_normal((8, 5)))
    loss = nn.SoftmaxLoss()(logits, ndl.Tensor(np.array([0, 4, 1, 1, 2, 3, 0, 4])))
    assert loss.inputs == (logits,)
    loss.backward()
    assert logits.grad.shape == (8, 5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_loss_gives_the_composition_s_numbers_bit_for_bit(dtype):
    # The fused loss and its gradient against log_softmax, take_along_rows, summation and
    # mul_scalar composed, as SoftmaxLoss was before: the same operations in the same order.
    rng = np.random.default_rng(3)
    z = rng.standard_normal((7, 6)).astype(dtype) * 4
    labels = rng.integers(0, 6, 7)
    fused_in, composed_in = ndl.Tensor(z), ndl.Tensor(z)
    fused = nn.SoftmaxLoss()(fused_in, ndl.Tensor(labels))
    picked = ndl.ops.take_along_rows(ndl.ops.logsoftmax(composed_in), labels)
    composed = ndl.ops.mul_scalar(ndl.ops.summation(picked), -1 / 7)
    assert fused.numpy().tobytes() == composed.numpy().tobytes()
    fused.backward()
    composed.backward()
    assert fused_in.grad.numpy().dtype == np.dtype(dtype)
    assert fused_in.grad.numpy().tobytes() == composed_in.grad.numpy().tobytes()


@pytest.mark.parametrize(
    "labels, message",
    [
        ([0, 4], r"labels from 0 to 4 for logits of 4 classes \(valid: 0 to 3\)"),
        ([-1, 0], "labels from -1 to 0"),
        ([0.5, 1.0], "^SoftmaxLoss: labels must be whole numbers"),
    ],
)
def test_softmax_loss_refuses_labels_that_are_not_classes(labels, message):
    # numpy's fancy indexing would wrap -1 around and stop only at 4: the loss checks first.
    with pytest.raises(ndl.errors.UsageError, match=message):
        nn.SoftmaxLoss()(_tensor((2, 4)), ndl.Tensor(np.array(labels)))


def test_softmax_loss_takes_whole_float_labels():
    logits = _tensor((3, 4))
    as_floats = nn.SoftmaxLoss()(logits, ndl.Tensor(np.array([3.0, 0.0, 2.0])))
    as_ints = nn.SoftmaxLoss()(logits, ndl.Tensor(np.array([3, 0, 2])))
    assert float(as_floats.numpy()) == float(as_ints.numpy())


# -- BatchNorm1d ------------------------------------------------------------------------------


def _np_normalize(x, mean, var, eps, weight, bias):
    return weight * (x - mean) / np.sqrt(var + eps) + bias


def test_batchnorm_training_forward_and_running_statistics(device):
    bn = nn.BatchNorm1d(3, eps=1e-3, momentum=0.2, device=device)
    assert bn.parameters() == [bn.weight, bn.bias]
    bn.weight = nn.Parameter(np.array([1.0, 2.0, 0.5], dtype=np.float32), device=device)
    bn.bias = nn.Parameter(np.array([0.0, -1.0, 3.0], dtype=np.float32), device=device)
    running_mean, running_var = np.zeros(3), np.ones(3)
    for step in range(3):
        x = _tensor((8, 3), seed=step, scale=step + 1.0, device=device)
        a = x.numpy().astype(np.float64)
        mean, var = a.mean(axis=0), a.var(axis=0)  # biased variance
        expected = _np_normalize(a, mean, var, 1e-3, bn.weight.numpy(), bn.bias.numpy())
        out = bn(x)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)
        running_mean = 0.8 * running_mean + 0.2 * mean
        running_var = 0.8 * running_var + 0.2 * var
        np.testing.assert_allclose(bn.running_mean.numpy(), running_mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bn.running_var.numpy(), running_var, rtol=1e-5)
    for stat in (bn.running_mean, bn.running_var):
        assert not isinstance(stat, nn.Parameter)
        assert stat.op is None and not stat.requires_grad and stat.dtype == np.float32
        assert stat.device == device

    bn.eval()
    x = _tensor((5, 3), seed=9, device=device)
    expected = _np_normalize(
        x.numpy(), running_mean, running_var, 1e-3, bn.weight.numpy(), bn.bias.numpy()
    )
    np.testing.assert_allclose(bn(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean.numpy(), running_mean, rtol=1e-5, atol=1e-6)


def test_batchnorm_gradients_in_training_mode(device):
    bn = nn.BatchNorm1d(3, dtype="float64", device=device)
    bn.weight = nn.Parameter(np.array([1.0, 2.0, 0.5]), device=device)
    bn.bias = nn.Parameter(np.array([0.1, -1.0, 3.0]), device=device)
    x = np.random.default_rng(2).standard_normal((6, 3))
    _assert_module_gradients(bn, x, ["weight", "bias"], device)


@pytest.mark.parametrize("make, shape", [(nn.BatchNorm1d, (6, 3)), (nn.BatchNorm2d, (2, 3, 2, 2))])
def test_batchnorm_gradients_in_evaluation_mode(make, shape, device):
    """Evaluation normalizes by the running statistics, and the input, weight and bias
    still get their gradients (fine-tuning a model in evaluation mode)."""
    rng = np.random.default_rng(5)
    bn = make(3, dtype="float64", device=device)
    bn.running_mean = ndl.Tensor(rng.standard_normal(3), device=device, requires_grad=False)
    bn.running_var = ndl.Tensor(rng.uniform(0.5, 2, 3), device=device, requires_grad=False)
    bn.weight = nn.Parameter(np.array([1.0, 2.0, 0.5]), device=device)
    bn.bias = nn.Parameter(np.array([0.1, -1.0, 3.0]), device=device)
    bn.eval()
    _assert_module_gradients(bn, rng.standard_normal(shape), ["weight", "bias"], device)


# -- LayerNorm1d ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 5)])
def test_layernorm_forward(shape, device):
    ln = nn.LayerNorm1d(5, eps=1e-4, device=device)
    assert ln.parameters() == [ln.weight, ln.bias]
    np.testing.assert_array_equal(ln.weight.numpy(), np.ones(5))
    np.testing.assert_array_equal(ln.bias.numpy(), np.zeros(5))
    ln.weight = nn.Parameter(np.linspace(0.5, 2, 5).astype(np.float32), device=device)
    ln.bias = nn.Parameter(np.linspace(-1, 1, 5).astype(np.float32), device=device)
    x = _tensor(shape, scale=3.0, device=device)
    a = x.numpy().astype(np.float64)
    mean, var = a.mean(axis=-1, keepdims=True), a.var(axis=-1, keepdims=True)
    expected = _np_normalize(a, mean, var, 1e-4, ln.weight.numpy(), ln.bias.numpy())
    out = ln(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_layernorm_gradients(device):
    ln = nn.LayerNorm1d(4, dtype="float64", device=device)
    ln.weight = nn.Parameter(np.array([1.0, 2.0, 0.5, -1.0]), device=device)
    ln.bias = nn.Parameter(np.array([0.1, -1.0, 3.0, 0.0]), device=device)
    x = np.random.default_rng(3).standard_normal((3, 4))
    _assert_module_gradients(ln, x, ["weight", "bias"], device)


# -- Dropout ----------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5])
def test_dropout_mask_comes_from_one_randb_draw(p, device):
    x = _tensor((20, 7), device=device)
    np.random.seed(11)
    out = nn.Dropout(p)(x)
    after = np.random.rand()
    np.random.seed(11)
    keep = np.random.rand(20, 7) <= 1 - p
    assert np.random.rand() == after  # drawn even when p = 0
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), x.numpy() * keep / (1 - p), rtol=1e-6)


def test_dropout_eval_is_identity_and_draws_nothing():
    x = _tensor((4, 4))
    np.random.seed(5)
    assert nn.Dropout(0.9).eval()(x) is x
    after = np.random.rand()
    np.random.seed(5)
    assert np.random.rand() == after


def test_dropout_p_one_zeroes_everything_and_bad_p_is_refused():
    np.testing.assert_array_equal(nn.Dropout(1.0)(_tensor((3, 3))).numpy(), np.zeros((3, 3)))
    for p in (-0.1, 1.5):
        with pytest.raises(UsageError, match="Dropout"):
            nn.Dropout(p)


def test_dropout_drops_about_p():
    np.random.seed(0)
    out = nn.Dropout(0.25)(ndl.Tensor(np.ones((200, 200), dtype=np.float32)))
    dropped = float(np.mean(out.numpy() == 0))
    assert abs(dropped - 0.25) <= 6 * np.sqrt(0.25 * 0.75 / 40_000)
    np.testing.assert_allclose(np.unique(out.numpy()), [0.0, 1 / 0.75], rtol=1e-6)


# -- dtype ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda d: nn.Linear(4, 3, device=d),
        lambda d: nn.Flatten(),
        lambda d: nn.ReLU(),
        lambda d: nn.Tanh(),
        lambda d: nn.Sigmoid(),
        lambda d: nn.Identity(),
        lambda d: nn.BatchNorm1d(4, device=d),
        lambda d: nn.BatchNorm1d(4, device=d).eval(),
        lambda d: nn.LayerNorm1d(4, device=d),
        lambda d: nn.Dropout(0.2),
        lambda d: nn.Residual(nn.Sequential(nn.Linear(4, 4, device=d), nn.ReLU())),
    ],
)
def test_float32_in_float32_out(make, device):
    module = make(device)
    # Requires a gradient: parameterless modules have a graph.
    x = ndl.Tensor(_tensor((5, 4), device=device))
    out = module(x)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.device == device
    for p in module.parameters():
        assert p.dtype == np.float32 and p.grad.dtype == np.float32


def test_float64_modules_stay_float64():
    model = nn.Sequential(nn.Linear(4, 3, dtype="float64"), nn.BatchNorm1d(3, dtype="float64"))
    out = model(_tensor((5, 4), dtype=np.float64))
    assert out.dtype == np.float64
    assert all(p.dtype == np.float64 for p in model.parameters())
