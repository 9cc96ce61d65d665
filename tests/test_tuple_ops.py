"""Tuple ops: stack and split against numpy, their gradients against float64 central
differences on both CPU storages (any count of inputs and composed functions here; the
registry's settings in tests/test_ops.py), and the TensorTuple API."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle.errors import UsageError
from needle.gradcheck import check_gradients

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


# Hypothesis tests take the CPU devices as a parameter (it refuses function-scoped fixtures).
ON_EVERY_CPU = pytest.mark.parametrize("device", [ndl.cpu_numpy(), ndl.cpu()], ids=str)


@ON_EVERY_CPU
@settings(max_examples=25, deadline=None)
@given(shape=shapes, count=st.integers(1, 4), data=st.data())
def test_stack_matches_numpy_and_its_gradient_is_checked(shape, count, data, device):
    ndim = len(shape) + 1
    axis = data.draw(st.integers(-ndim, ndim - 1), label="axis")
    rng = np.random.default_rng(count)
    arrays = [rng.standard_normal(shape) for _ in range(count)]
    out = ndl.stack([ndl.Tensor(a, device=device) for a in arrays], axis)
    assert out.device == device
    np.testing.assert_array_equal(out.numpy(), np.stack(arrays, axis))
    report = check_gradients(lambda *ts: ndl.stack(ts, axis), arrays, seed=count, device=device)
    assert report.passed, report.inputs


@ON_EVERY_CPU
@settings(max_examples=25, deadline=None)
@given(shape=shapes.filter(len), data=st.data())
def test_split_matches_numpy_and_its_gradient_is_checked(shape, data, device):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    a = np.random.default_rng(len(shape)).standard_normal(shape)
    parts = ndl.split(ndl.Tensor(a, device=device), axis)
    expected = [np.squeeze(p, axis) for p in np.split(a, a.shape[axis], axis)]
    assert len(parts) == len(expected)
    for part, want in zip(parts.tuple(), expected, strict=True):
        np.testing.assert_array_equal(part.numpy(), want)

    def weighted_squares(t):
        # Each part weighted differently: a gradient sent to the wrong part cannot pass.
        return sum((p * p * float(i + 1) for i, p in enumerate(ndl.split(t, axis).tuple())))

    report = check_gradients(weighted_squares, [a], seed=5, device=device)
    assert report.passed, report.inputs


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_stack_and_split_second_order(axis):
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal((2, 3)) for _ in range(3)]
    report = check_gradients(lambda *ts: ndl.stack(ts, axis) ** 3, arrays, order=2, seed=1)
    assert report.passed, report.inputs

    def cubes_of_split(t):
        parts = ndl.split(t, axis).tuple()
        return ndl.stack([p**3 for p in parts[::-1]], 0)

    report = check_gradients(cubes_of_split, [rng.standard_normal((2, 3, 2))], order=2, seed=2)
    assert report.passed, report.inputs


def test_elements_nothing_reads_get_zero_gradient():
    a = np.random.default_rng(0).standard_normal((4, 3))
    report = check_gradients(lambda t: ndl.tanh(ndl.split(t, 0)[2]), [a], seed=3)
    assert report.passed
    x = ndl.Tensor(a)
    ndl.split(x, 0)[2].sum().backward()
    expected = np.zeros_like(a)
    expected[2] = 1
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_tuple_get_item_gradient_as_an_op_matches_the_backward_pass():
    """The backward pass adds a read's adjoint to one element directly; the op's own gradient
    (zeros elsewhere) must say the same."""
    a = ndl.Tensor(np.arange(6.0).reshape(3, 2))
    parts = ndl.split(a, 0)
    read = parts[1]
    out_grad = ndl.Tensor(np.array([5.0, 7.0]))
    (grad,) = read.op.gradient_as_tuple(out_grad, read)
    assert isinstance(grad, ndl.TensorTuple)
    want = [np.zeros(2), np.array([5.0, 7.0]), np.zeros(2)]
    for got, expected in zip(grad.tuple(), want, strict=True):
        np.testing.assert_array_equal(got.numpy(), expected)
    read.backward(out_grad)
    np.testing.assert_array_equal(a.grad.numpy(), np.stack(want))


def test_gradients_keep_float32():
    xs = [ndl.Tensor(np.ones((2, 3), dtype=np.float32)) for _ in range(2)]
    parts = ndl.split(ndl.stack(xs, 1), 0)
    (parts[0] * 2.0).sum().backward()
    assert all(x.grad.dtype == np.float32 for x in xs)
    np.testing.assert_array_equal(xs[1].grad.numpy(), [[2, 2, 2], [0, 0, 0]])


def test_tensor_tuple_api():
    a, b = ndl.Tensor(np.ones(2)), ndl.Tensor(np.arange(2.0))
    t = ndl.make_tuple(a, b)
    assert len(t) == 2
    assert t[0] is a and t[-1] is b  # reading a tuple just made folds to its tensors
    assert t.tuple() == (a, b)
    total = t + ndl.make_tuple(b, a)
    assert isinstance(total, ndl.TensorTuple)
    for got in total.tuple():
        np.testing.assert_array_equal(got.numpy(), [1.0, 2.0])
    detached = t.detach()
    assert detached.op is None and not detached.requires_grad
    assert detached.cached_data[1] is b.cached_data
    unfolded = ndl.ops.TupleGetItem(1)(t, fold_const=False)
    assert unfolded.op is not None
    np.testing.assert_array_equal(unfolded.numpy(), b.numpy())
    assert ndl.ops.tuple_get_item(t, 0) is a
    constant = ndl.TensorTuple([np.zeros(3), a])
    assert len(constant) == 2 and not constant.requires_grad


def test_a_tensor_tuple_iterates_and_unpacks_like_a_tuple():
    # `for x in split(...)` and `a, b = split(...)`: Python iterates by __getitem__ until an
    # IndexError, and an out-of-range index is a UsageError here, so iteration is its own.
    x = ndl.Tensor(np.arange(6.0).reshape(3, 2))
    parts = ndl.split(x, 0)
    rows = list(parts)
    assert len(rows) == 3 and all(isinstance(r, ndl.Tensor) for r in rows)
    first, second, third = parts
    np.testing.assert_array_equal(third.numpy(), [4.0, 5.0])
    (first * 2 + second).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2.0, 2.0], [1.0, 1.0], [0.0, 0.0]])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ndl.split(ndl.Tensor(np.ones((2, 3))), 0)[2], "index 2 is out of range"),
        (lambda: ndl.split(ndl.Tensor(np.ones((2, 3))), 2), "axis 2 is out of range"),
        (lambda: ndl.stack([ndl.Tensor(np.ones(2))], 2), "axis 2 is out of range"),
        (lambda: ndl.stack([ndl.Tensor(np.ones(2)), ndl.Tensor(np.ones(3))], 0), "one shape"),
        (lambda: ndl.stack([], 0), "at least one tensor"),
        (lambda: ndl.make_tuple(ndl.Tensor(np.ones(2))) + ndl.make_tuple(), "as many"),
        (lambda: ndl.tuple_get_item(ndl.Tensor(np.ones(2)), 0), "needs a TensorTuple"),
    ],
)
def test_mistakes_are_usage_errors(call, message):
    with pytest.raises(UsageError, match=message):
        call()
