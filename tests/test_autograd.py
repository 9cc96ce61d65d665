"""The autograd engine: graph order, gradient semantics, Tensor behaviour SPEC fixes."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import needle as ndl
from needle import autograd
from needle.autograd import Tensor, compute_gradient_of_variables, find_topo_sort
from needle.errors import UsageError


def test_topo_sort_is_post_order_and_deterministic():
    a = Tensor(np.ones(2))
    b = Tensor(np.ones(2))
    c = a * b
    d = c + a
    e = ndl.exp(d) + c
    order = find_topo_sort([e])
    # Post-order DFS over inputs in order: a, b, c, then d, exp(d), e.
    assert order == [a, b, c, d, e.inputs[0], e]
    assert find_topo_sort([e]) == order


def test_chain_of_ten_thousand_ops_backpropagates():
    x = Tensor(np.array([1.0, 2.0]))
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001**10_000] * 2, rtol=1e-9)


def test_grad_is_replaced_not_accumulated():
    x = Tensor(np.array([1.0, 2.0, 3.0]))
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0, 3.0])


def test_gradients_sum_over_every_use():
    x = Tensor(np.array([0.5, -1.0]))
    y = x * x + ndl.exp(x) + x
    y.backward(Tensor(np.array([1.0, 2.0])))
    np.testing.assert_allclose(
        x.grad.numpy(), np.array([1, 2]) * (2 * x.numpy() + np.exp(x.numpy()) + 1)
    )


def test_default_cotangent_is_ones_of_output_dtype():
    x = Tensor(np.ones((2, 3), dtype=np.float32))
    y = ndl.summation(x * 2.0, axes=1)
    y.backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 2.0))


def test_gradient_has_its_input_dtype_when_dtypes_mix():
    # A float32 parameter meeting float64 data: each gradient takes its own input's dtype,
    # so the course's update `p.data = p.data - lr * p.grad` keeps working.
    rng = np.random.default_rng(0)
    x32, w64 = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((2, 3))
    x, w = Tensor(x32), Tensor(w64)
    h = x * 2.0  # an intermediate float32 node
    (h * w).sum().backward(Tensor(np.array(1.0)))  # a float64 cotangent, too
    assert (x.grad.dtype, h.grad.dtype, w.grad.dtype) == (np.float32, np.float32, np.float64)
    np.testing.assert_allclose(x.grad.numpy(), 2 * w64, rtol=1e-7)
    np.testing.assert_allclose(w.grad.numpy(), 2 * x32, rtol=1e-7)
    x.data = x.data - 0.1 * x.grad
    assert x.dtype == np.float32


def test_a_cast_gradient_can_be_differentiated_again():
    # d/dx Σ x²w = 2xw (float32, cast from float64), then d/dw Σ 2xw = 2x and d/dx = 2w.
    x32 = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    w64 = np.array([0.3, 1.5, -1.0])
    x, w = Tensor(x32), Tensor(w64)
    (x * x * w).sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.requires_grad
    np.testing.assert_allclose(x.grad.numpy(), 2 * x32 * w64, rtol=1e-6)
    x.grad.sum().backward()
    assert (x.grad.dtype, w.grad.dtype) == (np.float32, np.float64)
    np.testing.assert_allclose(x.grad.numpy(), 2 * w64, rtol=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), 2 * x32, rtol=1e-7)


def test_an_integer_input_gets_a_float_gradient_not_a_truncated_one(device):
    # Integers are stored as such on cpu_numpy(); NDArray devices store them as float32.
    t = Tensor(np.array([1, 2, 3]), device=device)
    assert t.dtype.kind == ("i" if device == ndl.cpu_numpy() else "f")
    (t * 0.5).sum().backward()
    assert t.grad.dtype == np.result_type(t.dtype, 0.5)  # float64 for int64, as numpy promotes
    np.testing.assert_array_equal(t.grad.numpy(), [0.5, 0.5, 0.5])


def test_gradient_of_a_gradient():
    # d/dx (x³) = 3x², d/dx Σ 3x² = 6x.
    x = Tensor(np.array([1.0, -2.0, 0.5]))
    (x * x * x).sum().backward()
    first = x.grad
    assert first.requires_grad
    np.testing.assert_allclose(first.numpy(), 3 * x.numpy() ** 2)
    first.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.numpy())


def test_vjp_stops_at_its_inputs_and_writes_no_grad():
    # y = x·w, out = y³ + y: the vjp in y (an intermediate node) is (3y² + 1)·u; the walk
    # stops there, so x and w get nothing, and no node's .grad is written.
    x, w = Tensor(np.array([1.0, -2.0])), Tensor(np.array([0.5, 3.0]))
    y = x * w
    out = y * y * y + y
    u = Tensor(np.array([2.0, -1.0]))
    (grad_y,) = autograd.vjp([out], [u], [y])
    np.testing.assert_allclose(grad_y.numpy(), (3 * y.numpy() ** 2 + 1) * u.numpy())
    assert x.grad is None and w.grad is None and y.grad is None and out.grad is None


def test_vjp_gives_none_where_nothing_depends_and_differentiates_again():
    x, other = Tensor(np.array([1.0, -2.0, 0.5])), Tensor(np.array([4.0]))
    cube = x * x * x
    grad_x, grad_other = autograd.vjp([cube], [Tensor(np.ones(3))], [x, other])
    assert grad_other is None
    np.testing.assert_allclose(grad_x.numpy(), 3 * x.numpy() ** 2)
    (second,) = autograd.vjp([grad_x.sum()], [Tensor(np.array(1.0))], [x])
    np.testing.assert_allclose(second.numpy(), 6 * x.numpy())


def test_vjp_sums_over_outputs_and_assembles_a_tuple_input():
    # Two outputs read two elements of one tuple; the tuple's adjoint has zeros for the
    # element neither reads.
    t = ndl.split(Tensor(np.array([[1.0], [2.0], [3.0]])), 0)
    first, second = t[0] * 5.0, t[1] * t[0]
    (adjoint,) = autograd.vjp([first, second], [Tensor(np.ones(1)), Tensor(np.ones(1))], [t])
    got = [part.numpy() for part in adjoint.tuple()]
    np.testing.assert_array_equal(np.concatenate(got), [5.0 + 2.0, 1.0, 0.0])


def test_fused_vjp_gradient_is_the_gradient_of_the_vjp_of_its_composition():
    # F(x, u) = vjp of x ↦ x³ at x under u = 3x²·u; its gradient under w: in x 6x·u·w, in
    # u 3x²·w. A composition that ignores its input gives no gradient at all.
    from needle.backward import fused_vjp_gradient

    x, u, w = (Tensor(np.array(v)) for v in ([1.0, -2.0], [0.5, 3.0], [2.0, 1.0]))
    grad_x, grad_u = fused_vjp_gradient(lambda t: t * t * t, [x, u], 1, w)
    np.testing.assert_allclose(grad_x.numpy(), 6 * x.numpy() * u.numpy() * w.numpy())
    np.testing.assert_allclose(grad_u.numpy(), 3 * x.numpy() ** 2 * w.numpy())
    constant = Tensor(np.ones(2), requires_grad=False)
    assert fused_vjp_gradient(lambda t: constant, [x, u], 1, w) == (None, None)


def test_backward_of_a_constant_raises_and_keeps_every_grad():
    # x * 3's gradient is out_grad · 3, a constant: x.grad.sum() does not depend on x, so a
    # backward() there could write nothing, and x.grad silently kept the first gradient.
    x = Tensor(np.array([1.0, 2.0]))
    (x * 3).sum().backward()
    first = x.grad
    assert not first.requires_grad
    with pytest.raises(ndl.errors.UsageError, match="does not depend on any tensor"):
        first.sum().backward()
    assert x.grad is first
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
    with pytest.raises(ndl.errors.UsageError, match="requires_grad=False"):
        Tensor(np.ones(2), requires_grad=False).sum().backward()
    with autograd.no_grad():
        inside = (x * x).sum()
    with pytest.raises(ndl.errors.UsageError):
        inside.backward()


def test_backward_writes_only_the_grads_of_its_own_graph():
    # x.grad = w depends on w alone: differentiating it writes w.grad; x, outside that
    # graph, keeps its .grad.
    x, w = Tensor(np.array([1.0, 2.0])), Tensor(np.array([0.5, -1.0]))
    (x * w).sum().backward()
    x.grad.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(x.grad.numpy(), [0.5, -1.0])


def test_no_graph_without_requires_grad():
    a = Tensor(np.ones(3), requires_grad=False)
    b = ndl.exp(a) * 2.0
    assert not b.requires_grad
    assert b.op is None and b.inputs == ()


def test_intermediate_grads_are_detached_and_leaves_keep_graph():
    x = Tensor(np.array([1.0, 2.0]))
    h = ndl.exp(x)
    h.sum().backward()
    assert h.grad.op is None
    assert x.grad.requires_grad and x.grad.op is not None


def test_tensor_counter_counts_live_values():
    gc.collect()
    before = autograd.TENSOR_COUNTER
    tensors = [Tensor(np.ones(2)) for _ in range(5)]
    assert autograd.TENSOR_COUNTER == before + 5
    del tensors
    gc.collect()
    assert autograd.TENSOR_COUNTER == before


def test_tensor_counter_ignores_a_failed_construction():
    # A Tensor whose __init__ raises still reaches __del__: it must have been counted.
    gc.collect()
    before = autograd.TENSOR_COUNTER
    with pytest.raises(UsageError, match="device"):
        Tensor(np.ones(2), device="cuda")
    with pytest.raises(TypeError, match="not understood"):
        Tensor(np.ones(2), dtype="not-a-dtype")
    gc.collect()
    assert autograd.TENSOR_COUNTER == before


def test_backward_leaves_no_cycles():
    # After backward, dropping the loss and the gradients frees everything by reference
    # counting alone: no cycle waits for the garbage collector.
    w = Tensor(np.random.default_rng(0).standard_normal((4, 3)))
    x = Tensor(np.ones((2, 4)), requires_grad=False)
    gc.collect()
    gc.disable()
    try:
        before = autograd.TENSOR_COUNTER
        for _ in range(3):
            loss = ndl.logsumexp(ndl.relu(x @ w), axes=(1,)).sum()
            loss.backward()
            w.grad = None
            del loss
        assert autograd.TENSOR_COUNTER == before
    finally:
        gc.enable()


# -- Tensor surface --------------------------------------------------------------------
def test_dtype_none_keeps_input_dtype(device):
    assert Tensor(np.ones(2), device=device).dtype == np.float64
    assert Tensor(np.ones(2, dtype=np.float32), device=device).dtype == np.float32
    assert Tensor([1.0, 2.0], device=device, dtype="float32").dtype == np.float32
    integers = Tensor(np.arange(3), device=device).dtype
    if device == ndl.cpu_numpy():
        assert integers.kind == "i"
    else:  # NDArray devices store float32 and float64 only; other data becomes float32
        assert integers == np.float32


def _shares_storage(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors' arrays use the same memory: numpy's view test, or for NDArrays
    the same buffer (an NDArray's `numpy()` is a copy, so numpy cannot tell)."""
    x, y = a.cached_data, b.cached_data
    if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
        return np.shares_memory(x, y)
    return type(x) is type(y) and x._handle.ptr() == y._handle.ptr()


def test_tensor_from_tensor_shares_storage(device):
    a = Tensor(np.ones(3, dtype=np.float32), device=device)
    b = Tensor(a)
    assert b.device == device and _shares_storage(a, b)
    c = Tensor(a, dtype="float64")
    assert c.dtype == np.float64 and not _shares_storage(a, c)


def test_data_shares_storage_and_assignment_builds_no_graph(device):
    w = Tensor(np.ones(3), device=device)
    detached = w.data
    assert not detached.requires_grad and _shares_storage(detached, w)
    w.data = w.data * 0.5
    assert w.op is None and w.is_leaf()
    np.testing.assert_array_equal(w.numpy(), [0.5] * 3)


def test_data_assignment_refuses_a_non_tensor_or_another_dtype():
    w = Tensor(np.ones(3, dtype=np.float32))
    with pytest.raises(TypeError, match="must be assigned a Tensor, got ndarray"):
        w.data = np.zeros(3, dtype=np.float32)
    with pytest.raises(TypeError, match="dtype float64 does not match float32"):
        w.data = Tensor(np.zeros(3))
    np.testing.assert_array_equal(w.numpy(), np.ones(3))


def test_numpy_is_always_an_array():
    out = Tensor(np.ones(3)).sum()
    assert isinstance(out.numpy(), np.ndarray) and out.numpy().shape == ()


def test_subtraction_is_add_of_negate():
    a, b = Tensor(np.ones(2)), Tensor(np.ones(2))
    out = a - b
    assert isinstance(out.op, ndl.ops.EWiseAdd)
    assert isinstance(out.inputs[1].op, ndl.ops.Negate)
    shifted = a - 3
    assert isinstance(shifted.op, ndl.ops.AddScalar) and shifted.op.scalar == -3


@pytest.mark.parametrize(
    "expr, expected",
    [
        (lambda t: t + 2, lambda x: x + 2),
        (lambda t: 2 + t, lambda x: 2 + x),
        (lambda t: t - 2, lambda x: x - 2),
        (lambda t: 2 - t, lambda x: 2 - x),
        (lambda t: t * 3, lambda x: x * 3),
        (lambda t: 3 * t, lambda x: 3 * x),
        (lambda t: t / 4, lambda x: x / 4),
        (lambda t: 4 / t, lambda x: 4 / x),
        (lambda t: t**2, lambda x: x**2),
        (lambda t: -t, lambda x: -x),
        (lambda t: t @ t.transpose(), lambda x: x @ x.T),
        (lambda t: t.sum(axes=0), lambda x: x.sum(axis=0)),
        (lambda t: t.reshape((4, 1)), lambda x: x.reshape(4, 1)),
        (lambda t: t.broadcast_to((3, 2, 2)), lambda x: np.broadcast_to(x, (3, 2, 2))),
    ],
)
def test_operators_match_numpy(expr, expected):
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(expr(Tensor(x)).numpy(), expected(x))


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("scalar", [2, 3, 2.5])
def test_scalar_over_tensor_is_true_division(dtype, scalar, device):
    # One correctly rounded quotient with numpy's result dtype, as `Tensor / scalar` gives:
    # no integer-power error for integers, no second rounding through a reciprocal.
    t = Tensor(np.arange(1, 50).astype(dtype), device=device)
    x = t.numpy()  # as stored: NDArray devices keep integers as float32
    for out, expected in [(scalar / t, scalar / x), (t / scalar, x / scalar)]:
        assert out.dtype == expected.dtype
        np.testing.assert_array_equal(out.numpy(), expected)


def test_equality_and_hash_are_by_identity():
    a = Tensor(np.ones(2))
    b = Tensor(np.ones(2))
    assert a != b and a == a
    assert len({a: 1, b: 2}) == 2


def test_compute_gradient_of_variables_directly():
    x = Tensor(np.array([2.0]))
    y = x * x
    compute_gradient_of_variables(y, Tensor(np.array([1.0])))
    np.testing.assert_allclose(x.grad.numpy(), [4.0])


def test_device_is_the_default_and_a_name_is_refused():
    assert Tensor(np.ones(1)).device == ndl.default_device()
    with pytest.raises(UsageError, match=r"unknown device 'cuda'; valid: cpu\(\), cuda\(\)"):
        Tensor(np.ones(1), device="cuda")


def test_no_grad_builds_no_graph_and_restores():
    w = Tensor(np.ones((2, 2)))
    with autograd.no_grad():
        out = ndl.relu(w @ w) + 1.0
        with autograd.no_grad():
            pass
        inner = w * 2.0
    assert not out.requires_grad and out.op is None and not inner.requires_grad
    assert (w * 2.0).requires_grad
    with ndl.no_grad():  # the same context at top level
        assert not (w * 2.0).requires_grad


def test_misspelled_keyword_is_an_error_not_ignored():
    with pytest.raises(TypeError, match="require_grad"):
        Tensor(np.ones(2), require_grad=False)
