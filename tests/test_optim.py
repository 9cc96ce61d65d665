"""needle.optim: SGD, Adam and AdamW against numpy re-implementations of their update formulas,
the no-graph / no-mutation / dtype guarantees, and state_dict round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle import nn, optim
from needle.backend_ndarray import api
from needle.errors import UsageError


def _problem(seed=0):
    """A Linear layer on a fixed small classification batch."""
    np.random.seed(seed)
    layer = nn.Linear(4, 3)
    rng = np.random.default_rng(seed)
    X = ndl.Tensor(rng.standard_normal((8, 4)).astype(np.float32), requires_grad=False)
    y = ndl.Tensor(rng.integers(0, 3, 8).astype(np.uint8), requires_grad=False)
    return layer, X, y


def _backward(layer, X, y, opt):
    opt.reset_grad()
    nn.SoftmaxLoss()(layer(X), y).backward()
    return [p.grad.numpy().astype(np.float64) for p in layer.parameters()]


def _set_grads(params, grads):
    for p, g in zip(params, grads, strict=True):
        p.grad = ndl.Tensor(np.asarray(g, dtype=p.dtype), requires_grad=False)


def test_sgd_momentum_weight_decay_three_steps_match_numpy():
    layer, X, y = _problem()
    lr, momentum, wd = 0.5, 0.9, 0.01
    opt = optim.SGD(layer.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    params = [p.numpy().astype(np.float64) for p in layer.parameters()]
    u = [np.zeros_like(p) for p in params]
    for _ in range(3):
        grads = _backward(layer, X, y, opt)
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            g = g + wd * p
            u[i] = momentum * u[i] + (1 - momentum) * g
            params[i] = p - lr * u[i]
        opt.step()
        for p, expected in zip(layer.parameters(), params, strict=True):
            assert p.dtype == np.float32
            np.testing.assert_allclose(p.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_adam_three_steps_match_numpy():
    layer, X, y = _problem(1)
    lr, b1, b2, eps, wd = 0.1, 0.8, 0.95, 1e-6, 0.02
    opt = optim.Adam(layer.parameters(), lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd)
    params = [p.numpy().astype(np.float64) for p in layer.parameters()]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, 4):
        grads = _backward(layer, X, y, opt)
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            g = g + wd * p
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            params[i] = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        opt.step()
        assert opt.t == t
        for p, expected in zip(layer.parameters(), params, strict=True):
            assert p.dtype == np.float32
            np.testing.assert_allclose(p.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_adamw_three_steps_match_numpy():
    layer, X, y = _problem(2)
    lr, b1, b2, eps, wd = 0.1, 0.8, 0.95, 1e-6, 0.3
    opt = optim.AdamW(layer.parameters(), lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd)
    params = [p.numpy().astype(np.float64) for p in layer.parameters()]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, 4):
        grads = _backward(layer, X, y, opt)
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            # Decoupled: the moments see the loss gradient only; the decay acts on p directly.
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            params[i] = p - lr * (m_hat / (np.sqrt(v_hat) + eps) + wd * p)
        opt.step()
        assert opt.t == t
        for p, expected in zip(layer.parameters(), params, strict=True):
            assert p.dtype == np.float32
            np.testing.assert_allclose(p.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_adamw_decay_is_not_adam_s_l2_penalty():
    # With a zero loss gradient, AdamW only shrinks p by (1 − lr·wd) per step. Adam's L2
    # term wd·p goes through the moments instead: normalized by √v_hat, its first step moves
    # every entry by lr whatever its size.
    w0 = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    lr, wd = 0.01, 0.1
    a, b = nn.Parameter(w0.copy()), nn.Parameter(w0.copy())
    adamw = optim.AdamW([a], lr=lr, weight_decay=wd)
    adam = optim.Adam([b], lr=lr, weight_decay=wd)
    for step in range(1, 4):
        for p, opt in ((a, adamw), (b, adam)):
            _set_grads([p], [np.zeros(3)])
            opt.step()
        np.testing.assert_allclose(a.numpy(), w0 * (1 - lr * wd) ** step, rtol=1e-6)
        if step == 1:
            np.testing.assert_allclose(b.numpy(), w0 - lr * np.sign(w0), rtol=1e-6)
    assert np.all(np.abs(a.numpy() - b.numpy()) > 0.02)
    # Without decay the two are the same optimizer, bit for bit.
    layer_a, X, y = _problem(3)
    layer_b, _, _ = _problem(3)
    plain_w = optim.AdamW(layer_a.parameters(), lr=0.05, weight_decay=0.0)
    plain = optim.Adam(layer_b.parameters(), lr=0.05)
    for _ in range(2):
        for layer, opt in ((layer_a, plain_w), (layer_b, plain)):
            _backward(layer, X, y, opt)
            opt.step()
    for pa, pb in zip(layer_a.parameters(), layer_b.parameters(), strict=True):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy())


def test_adam_first_step_moves_each_entry_by_about_lr():
    # With bias correction, m_hat/√v_hat = g/|g| on the first step: a signed step of lr.
    p = nn.Parameter(np.array([1.0, -2.0, 3.0], dtype=np.float32))
    _set_grads([p], [[0.5, -3.0, 1e-3]])
    optim.Adam([p], lr=0.1, eps=0.0).step()
    np.testing.assert_allclose(p.numpy(), [0.9, -1.9, 2.9], rtol=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    lr=st.floats(0, 2),
    momentum=st.floats(0, 0.99),
    wd=st.floats(0, 0.5),
    seed=st.integers(0, 1000),
)
def test_sgd_two_steps_for_drawn_hyperparameters(lr, momentum, wd, seed):
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal((3, 2))
    g1, g2 = rng.standard_normal((2, 3, 2))
    p = nn.Parameter(w0.astype(np.float32))
    opt = optim.SGD([p], lr=lr, momentum=momentum, weight_decay=wd)
    w, u = w0.astype(np.float32).astype(np.float64), 0.0
    for g in (g1, g2):
        g32 = g.astype(np.float32)
        _set_grads([p], [g32])
        opt.step()
        u = momentum * u + (1 - momentum) * (g32 + wd * w)
        w = w - lr * u
        np.testing.assert_allclose(p.numpy(), w, rtol=1e-5, atol=1e-5)


def test_plain_sgd_keeps_no_momentum_buffer():
    layer, X, y = _problem()
    opt = optim.SGD(layer.parameters(), lr=0.1)
    before = [p.numpy().copy() for p in layer.parameters()]
    grads = _backward(layer, X, y, opt)
    opt.step()
    assert opt.u == {}
    for p, w, g in zip(layer.parameters(), before, grads, strict=True):
        np.testing.assert_allclose(p.numpy(), w - 0.1 * g, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, lr=0.1, weight_decay=0.1),
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.5, weight_decay=0.1),
        lambda ps: optim.Adam(ps, weight_decay=0.1),
        lambda ps: optim.AdamW(ps, weight_decay=0.1),
    ],
)
def test_step_builds_no_graph_and_mutates_nothing_it_does_not_own(make):
    layer, X, y = _problem()
    opt = make(layer.parameters())
    _backward(layer, X, y, opt)
    old_arrays = [p.cached_data for p in layer.parameters()]
    old_values = [p.numpy().copy() for p in layer.parameters()]
    grads = [p.grad for p in layer.parameters()]
    grad_values = [g.numpy().copy() for g in grads]
    opt.step()
    for p, old, value, grad, grad_value in zip(
        layer.parameters(), old_arrays, old_values, grads, grad_values, strict=True
    ):
        assert p.op is None and p.inputs == () and p.requires_grad
        assert p.cached_data is not old  # a new array, not written into the old one
        np.testing.assert_array_equal(api(old).to_numpy(old), value)
        assert p.grad is grad
        np.testing.assert_array_equal(grad.numpy(), grad_value)
        assert not np.array_equal(p.numpy(), value)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW])
def test_numpy_float64_hyperparameters_keep_float32(cls):
    p = nn.Parameter(np.ones(3, dtype=np.float32))
    opt = cls([p], lr=np.float64(0.1), weight_decay=np.float64(0.1))
    for _ in range(2):
        _set_grads([p], [[1.0, 2.0, 3.0]])
        opt.step()
        assert p.dtype == np.float32


def test_reset_grad_and_parameters_without_grad_are_skipped():
    a = nn.Parameter(np.ones(2, dtype=np.float32))
    b = nn.Parameter(np.ones(2, dtype=np.float32))
    opt = optim.Adam([a, b], lr=0.1)
    _set_grads([a], [[1.0, 1.0]])
    opt.step()
    np.testing.assert_array_equal(b.numpy(), [1.0, 1.0])
    assert 1 not in opt.m and opt.t == 1
    opt.reset_grad()
    assert a.grad is None and b.grad is None


# -- state_dict --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, lr=0.3, momentum=0.9, weight_decay=0.01),
        lambda ps: optim.Adam(ps, lr=0.05, weight_decay=0.01),
        lambda ps: optim.AdamW(ps, lr=0.05, weight_decay=0.1),
    ],
    ids=["sgd", "adam", "adamw"],
)
def test_state_dict_resumes_exactly(make):
    layer, X, y = _problem()
    opt = make(layer.parameters())
    for _ in range(2):
        _backward(layer, X, y, opt)
        opt.step()
    state = opt.state_dict()
    weights = layer.state_dict()
    for buffers in (v for v in state.values() if isinstance(v, dict)):
        assert sorted(buffers) == [0, 1]
        assert all(type(a) is np.ndarray for a in buffers.values())

    resumed_layer, _, _ = _problem(seed=5)
    resumed_layer.load_state_dict(weights)
    resumed = make(resumed_layer.parameters())
    resumed.load_state_dict(state)
    for _ in range(2):
        for model, o in ((layer, opt), (resumed_layer, resumed)):
            _backward(model, X, y, o)
            o.step()
    for a, b in zip(layer.parameters(), resumed_layer.parameters(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_adam_state_dict_contents_and_copying():
    p = nn.Parameter(np.ones(2, dtype=np.float32))
    opt = optim.Adam([p])
    _set_grads([p], [[1.0, -1.0]])
    opt.step()
    state = opt.state_dict()
    assert set(state) == {"m", "v", "t"} and state["t"] == 1
    np.testing.assert_allclose(state["m"][0], [0.1, -0.1], rtol=1e-6)
    np.testing.assert_allclose(state["v"][0], [0.001, 0.001], rtol=1e-6)
    state["m"][0][:] = 7  # a copy: the optimizer is unaffected
    assert opt.state_dict()["m"][0][0] == pytest.approx(0.1)


def test_load_state_dict_rejects_mismatches():
    p = nn.Parameter(np.ones(2, dtype=np.float32))
    opt = optim.SGD([p], momentum=0.9)
    with pytest.raises(UsageError, match=r"unknown entries \['m'\]"):
        opt.load_state_dict({"m": {}})
    with pytest.raises(UsageError, match="refers to parameter 3, but there are 1"):
        opt.load_state_dict({"u": {3: np.zeros(2)}})
    with pytest.raises(UsageError, match=r"shape \(3,\), but the parameter has shape \(2,\)"):
        opt.load_state_dict({"u": {0: np.zeros(3)}})
    adam = optim.Adam([p])
    with pytest.raises(UsageError):
        adam.load_state_dict({"t": 4, "m": {1: np.zeros(2)}})
    assert adam.t == 0  # nothing was loaded from the rejected state


def test_a_rejected_state_leaves_every_buffer_as_it_was():
    p = nn.Parameter(np.ones(2, dtype=np.float32))
    opt = optim.Adam([p])
    _set_grads([p], [[1.0, -1.0]])
    opt.step()
    before = opt.state_dict()
    with pytest.raises(UsageError, match="'v' for parameter 0 has shape"):
        opt.load_state_dict({"t": 9, "m": {0: np.zeros(2)}, "v": {0: np.zeros(3)}})
    after = opt.state_dict()
    assert after["t"] == before["t"]
    for name in ("m", "v"):
        np.testing.assert_array_equal(after[name][0], before[name][0])


def test_loaded_buffers_take_the_parameter_dtype():
    p = nn.Parameter(np.ones(2, dtype=np.float32))
    opt = optim.SGD([p], momentum=0.5, lr=1.0)
    opt.load_state_dict({"u": {"0": [2.0, 4.0]}})  # e.g. after a JSON round trip
    assert np.dtype(opt.u[0].dtype) == np.float32  # an NDArray's dtype is its name
    _set_grads([p], [[0.0, 0.0]])
    opt.step()
    np.testing.assert_allclose(p.numpy(), [0.0, -1.0])


def test_defaults_are_the_course_s():
    sgd, adam = optim.SGD([]), optim.Adam([])
    assert (sgd.lr, sgd.momentum, sgd.weight_decay) == (0.01, 0.0, 0.0)
    assert (adam.lr, adam.beta1, adam.beta2, adam.weight_decay, adam.t) == (0.01, 0.9, 0.999, 0, 0)
    assert math.isclose(adam.eps, 1e-8)


def test_adamw_defaults_are_adam_s_with_pytorch_s_decay():
    adamw = optim.AdamW([])
    assert (adamw.lr, adamw.beta1, adamw.beta2, adamw.weight_decay) == (0.01, 0.9, 0.999, 0.01)
    assert math.isclose(adamw.eps, 1e-8) and adamw.t == 0
