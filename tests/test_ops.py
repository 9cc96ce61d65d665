"""Registry-driven op tests: every registered op, forward against numpy and gradient through
the checker, over its settings and over hypothesis-drawn shapes and parameters.

Adding an op to the registry adds it here; it only needs a numpy reference below. An op
that returns a TensorTuple (split) is compared element by element, its reference a tuple.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conv_reference import conv_loops, dilate_loops, pool_loops, undilate_loops
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import needle as ndl
from needle.autograd import compute_gradient_of_variables
from needle.gradcheck import check_gradients, check_op
from needle.ops import REGISTRY


def _axes(axes):
    return tuple(axes) if isinstance(axes, list) else axes


def _np_logsumexp(z, axes):
    # Reference in float64 with the max shift done independently of needle.
    z64 = z.astype(np.float64)
    m = np.max(z64, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(z64 - m), axis=axes, keepdims=True)) + m
    return np.squeeze(out, axis=axes) if axes is not None else out.reshape(())


def _np_softmax(z, axes):
    e = np.exp(z - np.max(z, axis=axes, keepdims=True))
    return e / np.sum(e, axis=axes, keepdims=True)


def _np_lstm_gates(z, c):
    """The LSTM cell from its definition, on the gate blocks i, f, g, o of z."""
    i, f, g, o = np.split(z, 4, axis=1)
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    c_next = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c_next), c_next


def _np_lstm_layer(z_input, w_hh, h, c):
    """The layer from its definition: z_t = z_input[t] + h·W_hh, then the cell, t = 1 … T."""
    outputs = []
    for z in z_input:
        h, c = _np_lstm_gates(z + h @ w_hh, c)
        outputs.append(h)
    return np.stack(outputs), h, c


def _np_rnn_layer(z_input, w_hh, h, nonlinearity):
    """h_t = act(z_input[t] + h_{t−1}·W_hh), t = 1 … T."""
    act = np.tanh if nonlinearity == "tanh" else (lambda x: np.maximum(x, 0))
    outputs = []
    for z in z_input:
        h = act(z + h @ w_hh)
        outputs.append(h)
    return np.stack(outputs), h


def _np_transpose(a, axes):
    if axes is None:
        return np.swapaxes(a, -1, -2)
    return np.swapaxes(a, *axes)


def _np_sum_to_shape(a, shape):
    """Each output entry sums the entries of `a` that broadcasting would copy it to."""
    out = np.zeros(shape)
    lead = a.ndim - len(shape)
    for index in np.ndindex(a.shape):
        source = tuple(0 if n == 1 else i for i, n in zip(index[lead:], shape, strict=True))
        out[source] += a[index]
    return out


# The numpy meaning of every registered op: (inputs, params) -> array.
NUMPY_REFERENCE = {
    "add": lambda x, p: x[0] + x[1],
    "add_scalar": lambda x, p: x[0] + p["scalar"],
    "multiply": lambda x, p: x[0] * x[1],
    "mul_scalar": lambda x, p: x[0] * p["scalar"],
    "power": lambda x, p: x[0] ** x[1],
    "power_scalar": lambda x, p: x[0] ** p["scalar"],
    "divide": lambda x, p: x[0] / x[1],
    "divide_scalar": lambda x, p: x[0] / p["scalar"],
    "rdivide_scalar": lambda x, p: p["scalar"] / x[0],
    "negate": lambda x, p: -x[0],
    "log": lambda x, p: np.log(x[0]),
    "exp": lambda x, p: np.exp(x[0]),
    "relu": lambda x, p: x[0] * (x[0] > 0),
    "tanh": lambda x, p: np.tanh(x[0]),
    "sigmoid": lambda x, p: 1 / (1 + np.exp(-x[0])),
    "transpose": lambda x, p: _np_transpose(x[0], p["axes"]),
    "permute": lambda x, p: np.transpose(x[0], p["axes"]),
    "reshape": lambda x, p: x[0].reshape(p["shape"]),
    "broadcast_to": lambda x, p: np.broadcast_to(x[0], p["shape"]),
    "summation": lambda x, p: np.sum(x[0], axis=_axes(p["axes"])),
    "sum_to_shape": lambda x, p: _np_sum_to_shape(x[0], p["shape"]),
    "matmul": lambda x, p: x[0] @ x[1],
    "logsumexp": lambda x, p: _np_logsumexp(x[0], _axes(p["axes"])),
    "logsoftmax": lambda x, p: x[0] - _np_logsumexp(x[0], (1,))[:, None],
    "softmax": lambda x, p: _np_softmax(x[0], _axes(p["axes"])),
    "flip": lambda x, p: np.flip(x[0], _axes(p["axes"])),
    "dilate": lambda x, p: dilate_loops(x[0], p["axes"], p["dilation"]),
    "undilate": lambda x, p: undilate_loops(x[0], p["axes"], p["dilation"]),
    "conv": lambda x, p: conv_loops(x[0], x[1], p["stride"], p["padding"]),
    "conv_nchw": lambda x, p: conv_loops(
        x[0].transpose(0, 2, 3, 1), x[1], p["stride"], p["padding"]
    ).transpose(0, 3, 1, 2),
    "stack": lambda x, p: np.stack(x, p["axis"]),
    "split": lambda x, p: tuple(np.moveaxis(x[0], p["axis"], 0)),
    "maxpool2d": lambda x, p: pool_loops(x[0], p["kernel"], p["stride"], np.max),
    "avgpool2d": lambda x, p: pool_loops(x[0], p["kernel"], p["stride"], np.mean),
    "standardize": lambda x, p: _np_standardize(x[0], _axes(p["axes"]), p["eps"]),
    "normalize": lambda x, p: _np_normalize(x, p["eps"], p["axis"]),
    "lstm_gates": lambda x, p: _np_lstm_gates(*x),
    "lstm_layer": lambda x, p: _np_lstm_layer(*x),
    "rnn_layer": lambda x, p: _np_rnn_layer(*x, p["nonlinearity"]),
    "gather_rows": lambda x, p: np.stack([x[0][i] for i in p["indices"]]),
    "take_along_rows": lambda x, p: np.array([x[0][k, i] for k, i in enumerate(p["indices"])]),
    "cross_entropy": lambda x, p: np.mean(
        [_np_logsumexp(x[0][k], (0,)) - x[0][k, i] for k, i in enumerate(p["indices"])]
    ),
}


def _np_standardize(x, axes, eps):
    """(x − mean) / √(var + eps) by numpy's own mean and (biased) var."""
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def _np_normalize(inputs, eps, axis):
    """(x − mean) / √(var + eps) · scale + shift, the four (C,) arrays laid along `axis`."""
    x, *per_group = inputs
    along = [1] * x.ndim
    along[axis] = x.shape[axis]
    mean, var, scale, shift = (a.reshape(along) for a in per_group)
    return (x - mean) / np.sqrt(var + eps) * scale + shift


def _parts(value):
    """An op's result as a tuple: a TensorTuple's elements, else the one tensor (or array)."""
    if isinstance(value, ndl.TensorTuple):
        return value.tuple()
    return value if isinstance(value, tuple) else (value,)


def _backward(out, device=None, seed=None):
    """Backpropagate from `out` (a Tensor or a TensorTuple) under a cotangent per element:
    standard normal from `seed`, or ones without one."""
    rng = None if seed is None else np.random.default_rng(seed)
    grads = [
        ndl.Tensor(
            np.ones(part.shape) if rng is None else rng.standard_normal(part.shape),
            device=device or part.device,
            dtype=part.dtype,
        )
        for part in _parts(out)
    ]
    tuple_out = isinstance(out, ndl.TensorTuple)
    compute_gradient_of_variables(out, ndl.make_tuple(*grads) if tuple_out else grads[0])


CASES = [
    pytest.param(name, setting, id=f"{name}-{i}")
    for name, spec in sorted(REGISTRY.items())
    for i, setting in enumerate(spec.settings)
]


def test_every_registered_op_has_a_numpy_reference():
    assert set(NUMPY_REFERENCE) == set(REGISTRY)


def test_every_spec_op_is_registered_and_exported():
    spec_ops = {
        "add", "add_scalar", "multiply", "mul_scalar", "power", "power_scalar", "divide",
        "divide_scalar", "negate", "log", "exp", "relu", "transpose", "reshape", "broadcast_to",
        "summation", "matmul", "logsoftmax", "logsumexp", "tanh", "sigmoid",
    }  # fmt: skip
    assert spec_ops <= set(REGISTRY)
    for name, spec in REGISTRY.items():
        assert getattr(ndl, name) is spec.function
        assert getattr(ndl.ops, spec.op_class.__name__) is spec.op_class


def _forward_matches(name, params, inputs, dtype, device=None):
    spec = REGISTRY[name]
    params = spec.resolve_params(params)
    arrays = [x.astype(dtype) for x in inputs]
    out = spec.call(params, *[ndl.Tensor(a, device=device) for a in arrays])
    expected = _parts(NUMPY_REFERENCE[name]([a.astype(np.float64) for a in arrays], params))
    assert out.device == (device or ndl.default_device())
    assert len(_parts(out)) == len(expected)
    tol = 1e-12 if dtype == "float64" else 1e-5
    for part, reference in zip(_parts(out), expected, strict=True):
        assert part.shape == np.shape(reference)
        assert part.dtype == np.dtype(dtype), f"{name}: {dtype} in, {part.dtype} out"
        np.testing.assert_allclose(part.numpy(), reference, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,setting", CASES)
def test_forward_against_numpy(name, setting, dtype, device):
    spec = REGISTRY[name]
    inputs = spec.sample_inputs(setting.params, rng=np.random.default_rng(1), shapes=setting.shapes)
    _forward_matches(name, setting.params, inputs, dtype, device)


def _forward_and_backward(name, params, inputs, device, seed):
    """The output and every input's gradient under a random cotangent, on `device`, as
    numpy arrays."""
    spec = REGISTRY[name]
    leaves = [ndl.Tensor(x, device=device) for x in inputs]
    out = spec.call(spec.resolve_params(params), *leaves)
    _backward(out, device, seed)
    assert out.device == device and all(leaf.grad.device == device for leaf in leaves)
    return [part.numpy() for part in _parts(out)] + [leaf.grad.numpy() for leaf in leaves]


def _same_on_every_cpu_storage(name, params, inputs, seed):
    """cpu() (NDArrays) computes the forward pass and every gradient that cpu_numpy() does.
    The gradients of cpu_numpy() are checked against central differences elsewhere."""
    expected = _forward_and_backward(name, params, inputs, ndl.cpu_numpy(), seed)
    got = _forward_and_backward(name, params, inputs, ndl.cpu(), seed)
    names = [f"forward {i}" for i in range(len(expected) - len(inputs))]
    names += [f"grad {i}" for i in range(len(inputs))]
    for what, e, g in zip(names, expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12, err_msg=f"{name} {what}")


@pytest.mark.parametrize("name,setting", CASES)
def test_ndarray_storage_matches_numpy_forward_and_backward(name, setting):
    spec = REGISTRY[name]
    inputs = spec.sample_inputs(setting.params, rng=np.random.default_rng(6), shapes=setting.shapes)
    _same_on_every_cpu_storage(name, setting.params, inputs, seed=7)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,setting", CASES)
def test_gradient_through_checker(name, setting, dtype):
    report = check_op(name, setting.params, shapes=setting.shapes, dtype=dtype, seed=3)
    assert report.passed, report.inputs


@pytest.mark.parametrize("name,setting", CASES)
def test_second_order_gradient(name, setting):
    report = check_op(name, setting.params, shapes=setting.shapes, order=2, seed=4)
    assert report.passed, report.inputs


@pytest.mark.parametrize("name,setting", CASES)
def test_gradients_keep_float32(name, setting, device):
    spec = REGISTRY[name]
    inputs = spec.sample_inputs(
        setting.params, rng=np.random.default_rng(2), shapes=setting.shapes, dtype=np.float32
    )
    leaves = [ndl.Tensor(x, device=device) for x in inputs]
    out = spec.call(setting.params, *leaves)
    _backward(out)
    for leaf in leaves:
        assert leaf.grad.dtype == np.float32, name
        assert leaf.grad.shape == leaf.shape


@pytest.mark.parametrize("name", sorted(REGISTRY))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_random_cases(name, seed):
    """Hypothesis draws the case: the registry turns a seed into shapes, axes and scalars."""
    spec = REGISTRY[name]
    rng = np.random.default_rng(seed)
    params, shapes = spec.random_case(rng)
    inputs = spec.sample_inputs(params, rng=rng, shapes=shapes)
    _forward_matches(name, params, inputs, "float64")
    report = check_op(name, params, shapes=shapes, seed=seed)
    assert report.passed, (params, shapes, report.inputs)
    _same_on_every_cpu_storage(name, params, inputs, seed)


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    data=st.data(),
)
def test_summation_and_logsumexp_over_any_axes(shape, data):
    ndim = len(shape)
    axes = data.draw(
        st.one_of(
            st.none(),
            st.integers(-ndim, ndim - 1),
            st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple),
        )
    )
    x = np.random.default_rng(0).standard_normal(shape)
    np.testing.assert_allclose(ndl.summation(ndl.Tensor(x), axes).numpy(), np.sum(x, axis=axes))
    np.testing.assert_allclose(
        ndl.logsumexp(ndl.Tensor(x), axes).numpy(), _np_logsumexp(x, axes), rtol=1e-12
    )
    report = check_gradients(lambda t: ndl.logsumexp(t, axes), [x], seed=1)
    assert report.passed


# -- LogSumExp and LogSoftmax stability -------------------------------------------------
@pytest.mark.parametrize("axes", [None, 1, (1,), -1, (0, 1), 0])
def test_logsumexp_huge_magnitudes_float32(axes):
    z = np.array([[1e30, -1e30, 3e29], [-2e30, -1e30, -3e30]], dtype=np.float32)
    x = ndl.Tensor(z)
    out = ndl.logsumexp(x, axes)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out.numpy()))
    np.testing.assert_allclose(out.numpy(), _np_logsumexp(z, _axes(axes)), rtol=1e-6)
    out.backward()
    grad = x.grad.numpy()
    assert grad.dtype == np.float32 and np.all(np.isfinite(grad))
    # The gradient is the softmax over the reduced axes: it sums to 1 along them.
    np.testing.assert_allclose(grad.sum(axis=axes), np.ones_like(out.numpy()), rtol=1e-6)


def test_logsumexp_with_minus_inf_entries():
    z = np.array([[-np.inf, 0.0, 1.0], [2.0, -np.inf, -np.inf]], dtype=np.float32)
    x = ndl.Tensor(z)
    out = ndl.logsumexp(x, axes=(1,))
    np.testing.assert_allclose(out.numpy(), [np.log(1 + np.e), 2.0], rtol=1e-6)
    out.backward()
    expected = np.array([[0, 1 / (1 + np.e), np.e / (1 + np.e)], [1, 0, 0]])
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)


def test_logsumexp_all_minus_inf_row_is_minus_inf():
    out = ndl.logsumexp(ndl.Tensor(np.full((2, 3), -np.inf)), axes=1)
    assert np.all(out.numpy() == -np.inf)


@pytest.mark.parametrize(
    "shape, axes", [((2, 0), 1), ((2, 0), None), ((0,), None), ((3, 0, 2), (1, 2)), ((0, 3), 1)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_over_nothing_is_minus_inf(shape, axes, dtype):
    # log of an empty sum: as summation over no entries is 0, log Σ exp over them is −inf.
    z = np.zeros(shape, dtype=dtype)
    x = ndl.Tensor(z)
    out = ndl.logsumexp(x, axes)
    total = ndl.summation(ndl.Tensor(z), axes).numpy()
    assert out.dtype == dtype and out.shape == total.shape
    np.testing.assert_array_equal(out.numpy(), np.full(total.shape, -np.inf))
    out.backward()
    assert x.grad.shape == shape and x.grad.dtype == dtype


def test_logsumexp_ties_at_the_maximum():
    z = np.array([[5.0, 5.0, 5.0, 1.0]], dtype=np.float32)
    x = ndl.Tensor(z)
    out = ndl.logsumexp(x, axes=(1,))
    np.testing.assert_allclose(out.numpy(), [5 + np.log(3 + np.exp(-4.0))], rtol=1e-6)
    out.backward()
    weights = np.exp(z[0] - z[0].max())
    np.testing.assert_allclose(x.grad.numpy()[0], weights / weights.sum(), rtol=1e-6)
    report = check_gradients(lambda t: ndl.logsumexp(t, axes=(1,)), [z.astype(np.float64)])
    assert report.passed and not report.inputs[0].nondifferentiable


def test_logsoftmax_stable_at_huge_magnitudes():
    z = np.array([[1e30, 0.0, -1e30], [1.0, 2.0, 3.0]], dtype=np.float32)
    x = ndl.Tensor(z)
    out = ndl.logsoftmax(x)
    assert out.dtype == np.float32 and np.all(np.isfinite(out.numpy()[1]))
    np.testing.assert_allclose(out.numpy()[0], [0.0, -1e30, -2e30], rtol=1e-6)
    out.backward(ndl.Tensor(np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)))
    assert np.all(np.isfinite(x.grad.numpy()))


def _np_logsoftmax(z):
    """(z − m) − log Σ exp(z − m) over axis 1, in float64 from the exactly upcast input."""
    shifted = z.astype(np.float64) - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def test_logsoftmax_of_equal_huge_entries_is_minus_log_k():
    # float64: 1e16 − lse(1e16, 1e16) rounds to 0; the shifted form is −log 2 exactly.
    out = ndl.logsoftmax(ndl.Tensor(np.array([[1e16, 1e16]])))
    np.testing.assert_array_equal(out.numpy(), [[-math.log(2), -math.log(2)]])
    # float32: a row of −1e30 is uniform, log(1/4) each; with a cotangent of ones the
    # gradient 1 − 4 · softmax is 0 (the unshifted form gave 0 and −3).
    x = ndl.Tensor(np.full((1, 4), -1e30, dtype=np.float32))
    out = ndl.logsoftmax(x)
    np.testing.assert_allclose(out.numpy(), np.full((1, 4), -math.log(4)), rtol=1e-7)
    out.backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), np.zeros((1, 4)), atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    small=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 3), st.integers(1, 5)),
        elements=st.floats(-10, 10),
    ),
    offset=st.sampled_from([0.0, 1e3, -1e3, 1e8, 1e16, 1e30, -1e30]),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_logsoftmax_is_accurate_at_any_offset(small, offset, dtype):
    """Values and gradient to a few ulps of the float64 reference, however far the logits
    are from 0 (the rows are shifted by `offset`, then rounded to `dtype`)."""
    z = (small + offset).astype(dtype)
    reference = _np_logsoftmax(z)
    x = ndl.Tensor(z)
    out = ndl.logsoftmax(x)
    tol = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(out.numpy(), reference, rtol=tol, atol=tol)
    cotangent = np.random.default_rng(0).standard_normal(z.shape).astype(dtype)
    out.backward(ndl.Tensor(cotangent))
    # d/dz of Σ c · logsoftmax(z) = c − softmax(z) · Σ_j c_j, row by row.
    expected = cotangent - np.exp(reference) * cotangent.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=10 * tol, atol=10 * tol)


# -- Op details SPEC fixes -------------------------------------------------------------
def test_relu_gradient_at_zero_is_zero():
    x = ndl.Tensor(np.array([-1.0, 0.0, 2.0]))
    ndl.relu(x).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 1.0])


def test_divide_scalar_accepts_one_element_array():
    x = ndl.Tensor(np.arange(4, dtype=np.float32))
    out = ndl.divide_scalar(x, np.array([2.0]))
    assert out.dtype == np.float32 and out.shape == (4,)
    np.testing.assert_allclose(out.numpy(), np.arange(4) / 2)


@pytest.mark.parametrize("scalar", [0, -1, 0.5, -1.5, 3])
def test_power_scalar_any_exponent(scalar):
    x = np.array([0.5, 1.0, 2.0])
    t = ndl.Tensor(x)
    ndl.power_scalar(t, scalar).backward()
    np.testing.assert_allclose(t.grad.numpy(), scalar * x ** (scalar - 1) if scalar else 0 * x)


@pytest.mark.parametrize("shape", [(), (1,), (3,), (1, 3)])
def test_broadcast_to_from_small_shapes(shape):
    x = ndl.Tensor(np.random.default_rng(0).standard_normal(shape))
    out = ndl.broadcast_to(x, (2, 3))
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(x.numpy(), (2, 3)))
    out.backward()
    assert x.grad.shape == shape
    np.testing.assert_allclose(x.grad.numpy(), np.full(shape, 6 / max(1, int(np.prod(shape)))))


def test_python_scalars_never_upcast_float32():
    x = ndl.Tensor(np.ones((2, 2), dtype=np.float32))
    exprs = [x + 1.5, 1.5 + x, x - 2.0, 2.0 - x, x * 3.0, 3.0 * x, x / 3.0, 3.0 / x, x**2.5, -x]
    exprs += [x + np.float64(1.0), x * np.float64(2.0), x / np.float64(3.0)]
    for out in exprs:
        assert out.dtype == np.float32


@pytest.mark.parametrize(
    "axes", [(0, 2), [0, 2], np.array([0, 2]), (np.int64(0), -1), -1, np.int32(1)]
)
def test_axes_in_any_sequence_or_integer_form(axes):
    # normalize_axes caches its answers: ops store lists and arrays (unhashable) as tuples.
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    axis = tuple(axes) if isinstance(axes, (tuple, list, np.ndarray)) else axes
    for function, reference in [(ndl.summation, np.sum), (ndl.logsumexp, None)]:
        out = function(ndl.Tensor(x), axes=axes).numpy()
        if reference is not None:
            np.testing.assert_allclose(out, reference(x, axis=axis))
        else:
            expected = np.log(np.sum(np.exp(x), axis=axis))
            np.testing.assert_allclose(out, expected)


@pytest.mark.parametrize(
    "shapes",
    [((3, 4), (4, 5), (1, 5)), ((3, 4), (4, 5), (3, 5)), ((2, 3, 4), (4, 5), (5,))],
)
def test_matmul_addend_is_the_product_plus_it(shapes, device):
    # One node for a @ b + c: bit for bit the product and add it replaces, and gradients in
    # all three inputs against central differences.
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    a, b, c = (ndl.Tensor(x, device=device) for x in arrays)
    fused = ndl.matmul(a, b, addend=c)
    assert fused.inputs == (a, b, c)
    composed = ndl.add(ndl.matmul(a, b), c)
    assert fused.numpy().tobytes() == composed.numpy().tobytes()
    report = check_gradients(
        lambda x, w, v: ndl.matmul(x, w, addend=v),
        [x.astype(np.float64) for x in arrays],
        device=device,
    )
    assert report.passed, report.to_dict()


@pytest.mark.parametrize("addend", [(3, 4), (5, 2, 4), (2, 2, 4)])
def test_matmul_addend_that_would_widen_the_product_is_refused(addend):
    # Added into the product, the addend must broadcast to the product's (2, 4): a wider
    # result would leave the gradients' products without a matching shape.
    a, b = ndl.Tensor(np.ones((2, 3), np.float32)), ndl.Tensor(np.ones((3, 4), np.float32))
    pattern = rf"addend of shape \({', '.join(map(str, addend))}\) does not broadcast to"
    with pytest.raises(ndl.errors.UsageError, match=pattern):
        ndl.matmul(a, b, addend=ndl.Tensor(np.ones(addend, np.float32)))


def test_matmul_addend_of_a_wider_dtype_promotes_and_differentiates():
    a, b = ndl.Tensor(np.ones((2, 3), np.float32)), ndl.Tensor(np.ones((3, 4), np.float32))
    c = ndl.Tensor(np.ones((1, 4)))
    wide = ndl.matmul(a, b, addend=c)  # float64: numpy's add, not into the float32 product
    assert wide.dtype == np.float64 and np.all(wide.numpy() == 4)
    wide.sum().backward()
    assert a.grad.dtype == np.float32 and np.all(a.grad.numpy() == 4)
    assert c.grad.shape == (1, 4) and np.all(c.grad.numpy() == 2)


def test_float64_stays_float64():
    x = ndl.Tensor(np.ones((2, 2)))
    assert (x * 2.0).dtype == np.float64
    assert ndl.logsumexp(x, 1).dtype == np.float64


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x: ndl.summation(x, axes=2), "axis 2 is out of range"),
        (lambda x: ndl.logsumexp(x, axes=(0, 0)), "repeat an axis"),
        (lambda x: ndl.reshape(x, (5,)), "cannot reshape"),
        (lambda x: ndl.broadcast_to(x, (4, 4)), "cannot broadcast"),
        (lambda x: ndl.sum_to_shape(x, (2,)), "cannot sum an input of shape"),
        (lambda x: ndl.sum_to_shape(x, (1, 2, 3)), "cannot sum an input of shape"),
        (lambda x: ndl.matmul(x, x), "matmul shapes do not fit"),
        (lambda x: ndl.matmul(ndl.summation(x, 0), x), "matmul needs inputs with at least 2 axes"),
        (lambda x: ndl.transpose(ndl.summation(x, 0)), "transpose needs at least 2 axes"),
        (lambda x: ndl.transpose(x, (0, 1, 1)), "transpose swaps exactly two axes"),
        (lambda x: ndl.transpose(x, (0, 2)), "axis 2 is out of range"),
        (lambda x: ndl.logsoftmax(ndl.summation(x, 0)), r"logsoftmax takes a 2-D input"),
        (lambda x: ndl.divide_scalar(x, np.ones(2)), r"1-element array, got shape \(2,\)"),
        (lambda x: ndl.take_along_rows(x, [0, 1, 2]), r"3 indices for an input of shape \(2, 3\)"),
        (lambda x: ndl.take_along_rows(x, [0, 3]), "indices from 0 to 3 for an input of 3 col"),
        (lambda x: ndl.take_along_rows(x, [0.5, 1]), "indices must be a flat sequence of int"),
        (lambda x: ndl.cross_entropy(x, [0, 1, 2]), r"3 labels for logits of shape \(2, 3\)"),
        (lambda x: ndl.cross_entropy(x, [0, 3]), "labels from 0 to 3 for logits of 3 classes"),
        (lambda x: ndl.cross_entropy(ndl.Tensor(np.ones((0, 3))), []), "no row to average"),
    ],
)
def test_shape_errors_name_the_problem(call, message):
    with pytest.raises(ndl.errors.UsageError, match=message):
        call(ndl.Tensor(np.ones((2, 3))))


@pytest.mark.parametrize("order", [1, 2])
def test_cross_entropy_grad_differentiates_in_its_out_grad_too(order):
    # The loss's order-2 check holds its out_grad constant; here g is an input, so the
    # gradient's gradient in g (this op at g = 1, summed against v) is checked as well.
    rng = np.random.default_rng(8)
    labels = [2, 0, 1, 2]
    z, g = rng.uniform(-0.5, 0.5, (4, 3)), np.array(0.7)
    report = check_gradients(
        lambda a, b: ndl.ops.CrossEntropyGrad(labels)(a, b), [g, z], order=order
    )
    assert report.passed, report.inputs


# (name, its cell's steps, gates, state arrays): the two recurrent layers, and the rnn's
# activations.
RECURRENCES = {
    "lstm": (ndl.lstm_layer, "LSTM_STEPS", 4, 2),
    "rnn-tanh": (lambda *t: ndl.rnn_layer(*t, "tanh"), ("RNN_STEPS", "tanh"), 1, 1),
    "rnn-relu": (lambda *t: ndl.rnn_layer(*t, "relu"), ("RNN_STEPS", "relu"), 1, 1),
}


def _steps(where):
    from needle.ops import recurrence

    if isinstance(where, tuple):
        return getattr(recurrence, where[0])[where[1]]
    return getattr(recurrence, where)


def _recurrence_inputs(rng, kind, steps, batch, hidden, dtype=np.float64):
    _, _, gates, states = RECURRENCES[kind]
    shapes = [(steps, batch, gates * hidden), (hidden, gates * hidden)]
    return [rng.standard_normal(s).astype(dtype) for s in shapes + [(batch, hidden)] * states]


def _forward_and_gradients(layer, arrays, cotangents, device):
    inputs = [ndl.Tensor(a, device=device, requires_grad=True) for a in arrays]
    outputs = layer(*inputs)
    outputs = outputs.tuple() if isinstance(outputs, ndl.TensorTuple) else outputs
    total = None
    for out, u in zip(outputs, cotangents, strict=True):
        term = (out * ndl.Tensor(u, device=device)).sum()
        total = term if total is None else total + term
    total.backward()
    return [o.numpy() for o in outputs], [x.grad.numpy() for x in inputs]


@pytest.mark.parametrize("kind", list(RECURRENCES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_recurrent_layer_is_the_composition_it_fuses(kind, dtype, device):
    # One node each way for T steps of matmul(addend=) and the cell's op: the same bits
    # forward and in every gradient but W_hh's, whose one product sums the T step products
    # in another order (so: to within the rounding of a sum of T terms).
    from needle.ops.recurrence import unrolled

    layer, where, _, states = RECURRENCES[kind]
    rng = np.random.default_rng(10)
    arrays = _recurrence_inputs(rng, kind, 5, 3, 4, dtype)
    shapes = [(5, 3, 4)] + [(3, 4)] * states
    cotangents = [rng.standard_normal(s).astype(dtype) for s in shapes]
    fused = _forward_and_gradients(layer, arrays, cotangents, device)
    composed = _forward_and_gradients(
        lambda *t: unrolled(_steps(where), *t), arrays, cotangents, device
    )
    pairs = list(zip(fused[0] + fused[1], composed[0] + composed[1], strict=True))
    w_hh_grad = len(fused[0]) + 1
    for k, (got, want) in enumerate(pairs):
        assert got.dtype == want.dtype == dtype
        if k == w_hh_grad:
            eps = np.finfo(dtype).eps
            np.testing.assert_allclose(got, want, rtol=0, atol=20 * eps * np.abs(want).max())
        else:
            assert got.tobytes() == want.tobytes(), k


@pytest.mark.parametrize("kind", list(RECURRENCES))
@pytest.mark.parametrize("order", [1, 2])
def test_recurrence_grad_differentiates_in_its_cotangents_too(kind, order):
    # The layer's order-2 check holds its cotangents constant; here they are inputs, so the
    # gradient's gradient in them (the layer's forward-mode derivative) is checked as well,
    # and at order 2 the third derivative of the layer.
    _, where, _, states = RECURRENCES[kind]
    rng = np.random.default_rng(11)
    arrays = _recurrence_inputs(rng, kind, 2, 2, 1)
    arrays += [rng.standard_normal(s) for s in [(2, 2, 1)] + [(2, 1)] * states]
    if kind == "rnn-relu":  # away from relu's kink at 0
        arrays[0] = np.abs(arrays[0]) + 0.5
    grad_op = ndl.ops.RecurrenceGrad(_steps(where))
    report = check_gradients(lambda *t: grad_op(*t), arrays, order=order)
    assert report.passed, report.inputs


@pytest.mark.parametrize(
    "shapes",
    [
        [(0, 2, 8), (2, 8), (2, 2), (2, 2)],  # no step
        [(3, 2, 8), (2, 4), (2, 2), (2, 2)],  # W_hh not (H, 4H)
        [(3, 2, 6), (2, 8), (2, 2), (2, 2)],  # z_input not 4H wide
        [(3, 2, 8), (2, 8), (3, 2), (3, 2)],  # another batch
        [(3, 2, 8), (2, 8), (2, 2), (2, 3)],  # h0 and c0 differ
        [(2, 8), (2, 8), (2, 2), (2, 2)],  # z_input without a time axis
    ],
)
def test_lstm_layer_refuses_shapes_that_do_not_fit(shapes):
    tensors = [ndl.Tensor(np.ones(shape)) for shape in shapes]
    with pytest.raises(ndl.errors.UsageError, match=r"lstm_layer: inputs of shapes .* T ≥ 1"):
        ndl.lstm_layer(*tensors)


@pytest.mark.parametrize(
    "shapes",
    [[(3, 2, 4), (2, 2), (2, 2)], [(3, 2, 2), (2, 2), (3, 2)], [(3, 2, 2), (2, 2), (2, 3)]],
)
def test_rnn_layer_refuses_shapes_that_do_not_fit(shapes):
    tensors = [ndl.Tensor(np.ones(shape)) for shape in shapes]
    with pytest.raises(ndl.errors.UsageError, match=r"rnn_layer: inputs of shapes .* \(H, H\)"):
        ndl.rnn_layer(*tensors)


def test_rnn_layer_refuses_an_unknown_nonlinearity():
    tensors = [ndl.Tensor(np.ones(shape)) for shape in [(3, 2, 2), (2, 2), (2, 2)]]
    with pytest.raises(ndl.errors.UsageError, match="unknown nonlinearity 'sigmoid'"):
        ndl.rnn_layer(*tensors, "sigmoid")


def _reused_cases():
    from needle.ops.recurrence import LSTM_STEPS, RNN_STEPS

    return {
        "conv": (lambda: ndl.ops.Conv(1, 1), [(2, 4, 4, 2), (3, 3, 2, 2)]),
        "conv_nchw": (
            lambda: ndl.ops.Conv(2, 1, channels_first=True),
            [(2, 2, 5, 5), (3, 3, 2, 3)],
        ),
        "lstm_gates": (lambda: ndl.ops.LSTMGates(), [(2, 8), (2, 2)]),
        "batch_norm": (lambda: ndl.ops.Standardize((0,)), [(4, 3), (3,), (3,)]),
        "cross_entropy": (lambda: ndl.ops.CrossEntropy([0, 2, 1]), [(3, 3)]),
        "lstm_layer": (lambda: ndl.ops.Recurrence(LSTM_STEPS), [(3, 2, 8), (2, 8), (2, 2), (2, 2)]),
        "rnn_layer": (lambda: ndl.ops.Recurrence(RNN_STEPS["tanh"]), [(3, 2, 2), (2, 2), (2, 2)]),
    }


@pytest.mark.parametrize("case", list(_reused_cases()))
def test_an_op_object_called_twice_differentiates_each_call(case):
    # Ops that keep forward arrays for their gradient keep them per call: an op object
    # used for two nodes gives each node its own gradient, the one a fresh object gives.
    make, shapes = _reused_cases()[case]
    rng = np.random.default_rng(12)

    def inputs():
        return [ndl.Tensor(rng.standard_normal(shape)) for shape in shapes]

    def first_output(value):
        return value.tuple()[0] if isinstance(value, ndl.TensorTuple) else value

    first, second = inputs(), inputs()
    op = make()
    out = first_output(op(*first))
    again = first_output(op(*second))  # the same object, on other arrays
    np.testing.assert_array_equal(again.numpy(), first_output(make()(*second)).numpy())
    cotangent = rng.standard_normal(out.shape)
    (out * ndl.Tensor(cotangent)).sum().backward()
    reused = [x.grad.numpy() for x in first]
    fresh_out = first_output(make()(*first))
    (fresh_out * ndl.Tensor(cotangent)).sum().backward()
    for got, want in zip(reused, [x.grad.numpy() for x in first], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("with_x_hat", [False, True])
def test_group_sum_computed_and_differentiated_on_its_own(with_x_hat):
    # Batch norm's backward hands GroupSum its value; computed here instead, against numpy,
    # and its gradient in every input against central differences.
    rng = np.random.default_rng(9)
    arrays = [rng.standard_normal((2, 3, 4))] * (2 if with_x_hat else 1)
    arrays = [a + i for i, a in enumerate(arrays)]
    expected = np.prod(arrays, axis=0).sum(axis=(0, 2))
    out = ndl.ops.GroupSum((0, 2))(*[ndl.Tensor(a) for a in arrays])
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    report = check_gradients(lambda *t: ndl.ops.GroupSum((0, 2))(*t), arrays, order=2)
    assert report.passed, report.inputs
