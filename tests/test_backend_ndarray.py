"""needle.backend_ndarray against numpy: every view, copy, write, op and reduction, over
hypothesis-drawn shapes, axes, slices and permutations; the tiled matmul kernel on tile
layouts built here from their definition; the devices, with and without CuPy.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import types
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import needle.backend_ndarray as nd
from needle.backend_ndarray import device as device_module
from needle.errors import NeedleError, UsageError

ROOT = Path(__file__).resolve().parents[1]
KERNELS = device_module.NUMPY_KERNELS
T = KERNELS.__tile_size__

examples = settings(max_examples=30, deadline=None)

# -- strategies: shapes, axes, slices and values are drawn, so failures shrink to them ----------

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


def values(shape, low=-10.0, high=10.0):
    return hnp.arrays(np.float32, shape, elements=st.floats(low, high, width=32))


@st.composite
def arrays(draw, shape=None, **bounds):
    return draw(values(draw(shapes) if shape is None else shape, **bounds))


@st.composite
def index_for(draw, shape):
    """One index per axis: an int (possibly negative) or a slice with a step > 0."""
    index = []
    for n in shape:
        if draw(st.booleans()):
            index.append(draw(st.integers(-n, n - 1)))
        else:
            bound = st.none() | st.integers(-n - 2, n + 2)
            index.append(slice(draw(bound), draw(bound), draw(st.none() | st.integers(1, 3))))
    return tuple(index)


def numpy_index(index, shape):
    """The numpy index meaning the same elements without dropping axes: i is i:i+1."""
    return tuple(
        slice(i % n, i % n + 1) if isinstance(i, int) else i
        for i, n in zip(index, shape, strict=True)
    )


@st.composite
def views(draw):
    """(numpy array, the same as an NDArray) where the NDArray is a non-compact view: a
    permutation of a slice of a bigger base."""
    shape = draw(shapes)
    base = draw(values(tuple(n + 2 for n in shape)))
    order = draw(st.permutations(range(len(shape))))
    inner = tuple(slice(1, 1 + n) for n in shape)
    return base[inner].transpose(order), nd.array(base)[inner].permute(order)


# -- construction, numpy(), layout --------------------------------------------------------------


@examples
@given(arrays())
def test_round_trip_and_compact_layout(x):
    a = nd.array(x)
    assert np.array_equal(a.numpy(), x) and a.numpy() is not a.numpy()
    assert (a.shape, a.ndim, a.size, a.dtype) == (x.shape, x.ndim, x.size, "float32")
    assert a.strides == tuple(s // x.itemsize for s in x.strides) and a.is_compact()
    assert a.device == nd.cpu() and a.compact() is a


def test_dtypes_default_to_float32_and_float64_is_kept():
    x64 = np.arange(6.0).reshape(2, 3)
    assert nd.NDArray(x64).dtype == nd.array(x64).dtype == nd.empty((2,)).dtype == "float32"
    assert nd.full((2,), 1.5).dtype == nd.cpu().randn(2).dtype == "float32"
    a64 = nd.array(x64, dtype="float64")
    assert a64.dtype == "float64" and np.array_equal(a64.numpy(), x64)
    a32 = nd.array(x64)
    assert (a32 + a64).dtype == (a64 @ a32.permute((1, 0))).dtype == "float64"
    assert (a32 * 0.1).dtype == "float32" and (a64 * 0.1).dtype == "float64"
    assert a64[0, :].dtype == a64.permute((1, 0)).compact().dtype == nd.NDArray(a64).dtype
    with pytest.raises(UsageError, match="'int64' is not supported; valid: float32, float64"):
        nd.array(x64, dtype="int64")


def test_copies_do_not_share_storage_and_subclasses_stay_subclasses():
    class Tagged(nd.NDArray):
        pass

    a = Tagged(np.ones((2, 2)))
    copy = nd.NDArray(a)
    assert copy._handle.ptr() != a._handle.ptr()
    a[0, 0] = 5.0
    assert copy.numpy()[0, 0] == 1.0
    assert isinstance(a + 1, Tagged) and isinstance(a[0, :], Tagged)


# -- views: same buffer, same ptr(), numpy's elements --------------------------------------------


@examples
@given(st.data())
def test_permute_is_a_view(data):
    x = data.draw(arrays())
    order = data.draw(st.permutations(range(x.ndim)))
    a = nd.array(x)
    b = a.permute(order)
    assert np.array_equal(b.numpy(), x.transpose(order))
    assert b._handle.ptr() == a._handle.ptr()


@examples
@given(st.data())
def test_getitem_is_a_view_that_keeps_every_axis(data):
    x = data.draw(arrays())
    index = data.draw(index_for(x.shape))
    a = nd.array(x)
    view = a[index]
    assert np.array_equal(view.numpy(), x[numpy_index(index, x.shape)])
    assert view.ndim == x.ndim and view._handle.ptr() == a._handle.ptr()


@examples
@given(st.data())
def test_broadcast_to_gives_stride_zero(data):
    shape = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple))
    x = data.draw(values(shape))
    lead = data.draw(st.lists(st.integers(1, 3), max_size=2).map(tuple))
    target = lead + tuple(data.draw(st.integers(1, 3)) if n == 1 else n for n in shape)
    a = nd.array(x)
    b = nd.broadcast_to(a, target)
    assert np.array_equal(b.numpy(), np.broadcast_to(x, target))
    assert b._handle.ptr() == a._handle.ptr()
    assert all(s == 0 for s in b.strides[: len(lead)])
    assert all(s == 0 for s, n in zip(b.strides[len(lead) :], shape, strict=True) if n == 1)


@examples
@given(st.data())
def test_reshape_of_a_compact_array_is_a_view(data):
    x = data.draw(arrays())
    split = data.draw(st.sampled_from([d for d in range(1, x.size + 1) if x.size % d == 0]))
    a = nd.array(x)
    b = nd.reshape(a, (split, x.size // split))
    assert np.array_equal(b.numpy(), x.reshape(split, -1))
    assert b._handle.ptr() == a._handle.ptr()


@examples
@given(st.integers(1, 12), st.integers(1, 4))
def test_as_strided_matches_numpy(size, window):
    x = np.arange(size + window, dtype=np.float32)
    a = nd.array(x)
    b = a.as_strided((size, window), (1, 1))  # sliding windows
    expected = np.lib.stride_tricks.as_strided(x, (size, window), (x.itemsize, x.itemsize))
    assert np.array_equal(b.numpy(), expected) and b._handle.ptr() == a._handle.ptr()


@examples
@given(views())
def test_compact_copies_a_view_into_row_major(pair):
    x, view = pair
    compact = view.compact()
    assert np.array_equal(compact.numpy(), x) and compact.is_compact()
    assert not view.is_compact() and compact._handle.ptr() != view._handle.ptr()
    assert compact.strides == nd.NDArray.compact_strides(x.shape)


def test_ptr_names_the_buffer():
    a = nd.array(np.zeros((4, 4)))
    views_of_a = [a[1:, :], a.permute((1, 0)), a.reshape((16,)), nd.broadcast_to(a, (2, 4, 4))]
    assert {v._handle.ptr() for v in views_of_a} == {a._handle.ptr()}
    assert isinstance(a._handle.ptr(), int) and a._handle.size == 16
    assert a[1:, :].compact()._handle.ptr() != a._handle.ptr()
    assert nd.cpu().Array(3).ptr() != nd.cpu().Array(3).ptr()


# -- writes through views ----------------------------------------------------------------------


@examples
@given(st.data())
def test_setitem_writes_through_a_view(data):
    x = data.draw(arrays())
    index = data.draw(index_for(x.shape))
    a = nd.array(x)
    strides, ptr = a.strides, a._handle.ptr()
    target = x[numpy_index(index, x.shape)]
    if data.draw(st.booleans()):
        new = data.draw(values(target.shape))
        a[index] = nd.array(new)
    else:
        new = data.draw(st.floats(-5, 5, width=32))
        a[index] = new
    expected = x.copy()
    expected[numpy_index(index, x.shape)] = new
    assert np.array_equal(a.numpy(), expected)
    assert (a.strides, a._handle.ptr()) == (strides, ptr)


@examples
@given(st.data())
def test_setitem_on_a_permuted_view_reaches_the_base(data):
    x = data.draw(arrays())
    order = data.draw(st.permutations(range(x.ndim)))
    a = nd.array(x)
    view = a.permute(order)
    index = data.draw(index_for(view.shape))
    view[index] = -1.0
    expected = x.copy()
    expected.transpose(order)[numpy_index(index, view.shape)] = -1.0
    assert np.array_equal(a.numpy(), expected)


def test_flat_writes_are_seen_by_later_ops():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    a = nd.array(x)
    transposed = a.permute((1, 0))
    a.flat[5] += 0.5  # the course's gradient check perturbs inputs like this
    x.flat[5] += 0.5
    assert np.array_equal((a * 1.0).numpy(), x) and np.array_equal(transposed.numpy(), x.T)
    tail = a[1:, :]  # a non-compact view: flat walks its own elements
    tail.flat[0] = 100.0
    assert a.numpy()[1, 0] == 100.0 and a.numpy().sum() == x.sum() - x[1, 0] + 100.0
    assert [tail.flat[j] for j in range(tail.size)] == list(tail.numpy().ravel())


def test_fill_fills_only_the_view():
    a = nd.array(np.zeros((3, 3)))
    a[1:, 1:].fill(2.0)
    expected = np.zeros((3, 3))
    expected[1:, 1:] = 2.0
    assert np.array_equal(a.numpy(), expected)


# -- elementwise ops ---------------------------------------------------------------------------

BINARY = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "maximum": lambda a, b: nd.maximum(a, b) if isinstance(a, nd.NDArray) else np.maximum(a, b),
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
}

# small integers make equal elements (and so every comparison branch) common
operand_values = st.integers(-3, 3).map(float) | st.floats(-4, 4, width=32)
nonzero = operand_values.filter(lambda v: abs(v) > 0.25)


@pytest.mark.parametrize("op", BINARY)
@examples
@given(st.data())
def test_binary_ops_against_numpy(op, data):
    shape = data.draw(shapes)
    elements = nonzero if op == "/" else operand_values
    x = data.draw(hnp.arrays(np.float32, shape, elements=elements))
    y = data.draw(hnp.arrays(np.float32, shape, elements=elements))
    s = data.draw(elements)
    f = BINARY[op]
    a, b = nd.array(x).permute(tuple(reversed(range(len(shape))))), nd.array(y.T.copy())
    x, y = x.T, y.T  # a is a non-compact view, b compact: both paths of compact()
    expected = {"array": f(x, y), "scalar": f(x, np.float32(s))}
    got = {"array": f(a, b), "scalar": f(a, s)}
    if op in "+-*/":
        expected["reflected"] = f(np.float32(s), x)
        got["reflected"] = f(s, a)
    for case, value in got.items():
        assert value.dtype == "float32", case
        np.testing.assert_allclose(value.numpy(), expected[case], rtol=1e-6, err_msg=case)


UNARY = {
    "neg": (lambda a: -a, lambda x: -x, operand_values),
    "log": (nd.log, np.log, st.floats(0.125, 100, width=32)),
    "exp": (nd.exp, np.exp, st.floats(-20, 20, width=32)),
    "tanh": (nd.tanh, np.tanh, st.floats(-5, 5, width=32)),
    "**2": (lambda a: a**2, lambda x: x**2, operand_values),
    "**0.5": (lambda a: a**0.5, lambda x: x**0.5, st.floats(0, 9, width=32)),
    "**-1": (lambda a: a**-1, lambda x: x**-1.0, nonzero),
}


@pytest.mark.parametrize("name", UNARY)
@examples
@given(st.data())
def test_unary_ops_against_numpy(name, data):
    ours, reference, elements = UNARY[name]
    x = data.draw(hnp.arrays(np.float32, data.draw(shapes), elements=elements))
    got = ours(nd.array(x))
    assert got.dtype == "float32"
    np.testing.assert_allclose(got.numpy(), reference(x), rtol=2e-6)


def test_nan_compares_as_in_numpy():
    x = np.array([np.nan, 1.0, 2.0], dtype=np.float32)
    y = np.array([1.0, np.nan, 2.0], dtype=np.float32)
    for op, f in BINARY.items():
        if op in ("==", "!=", ">=", ">", "<=", "<"):
            assert np.array_equal(f(nd.array(x), nd.array(y)).numpy(), f(x, y)), op


def test_numpy_scalars_on_the_left_give_ndarrays():
    a = nd.array(np.ones(3))
    for result in (np.float32(2) * a, np.float64(2) + a, np.float32(3) - a, np.float32(1) / a):
        assert isinstance(result, nd.NDArray)
    assert np.array_equal((np.float32(3) - a).numpy(), np.full(3, 2.0))


# -- reductions ---------------------------------------------------------------------------------


@st.composite
def reductions(draw):
    x = draw(arrays())
    axis = draw(
        st.none()
        | st.integers(-x.ndim, x.ndim - 1)
        | st.lists(st.integers(0, x.ndim - 1), unique=True, max_size=x.ndim).map(tuple)
    )
    return x, axis, draw(st.booleans())


@pytest.mark.parametrize("name", ["sum", "max"])
@examples
@given(reductions())
def test_reductions_against_numpy(name, case):
    x, axis, keepdims = case
    a = nd.array(x).permute(tuple(reversed(range(x.ndim))))  # reduce a non-compact view
    x = x.T
    got = getattr(a, name)(axis=axis, keepdims=keepdims)
    expected = getattr(np, name)(x.astype(np.float64), axis=axis, keepdims=keepdims)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
    if name == "sum":
        assert np.array_equal(nd.sum(a, axis, keepdims).numpy(), got.numpy())


# -- matmul: plain and tiled --------------------------------------------------------------------

sizes = st.sampled_from([T, 2 * T, 3 * T]) | st.integers(1, 20)


@examples
@given(sizes, sizes, sizes, st.data())
def test_matmul_against_numpy_on_both_paths(m, n, p, data):
    x = data.draw(values((m, n), -2, 2))
    y = data.draw(values((p, n), -2, 2))
    a, b = nd.array(x), nd.array(y).permute((1, 0))  # b is a non-compact view
    with mock.patch.object(KERNELS, "matmul_tiled", wraps=KERNELS.matmul_tiled) as tiled:
        got = a @ b
    assert tiled.called == (m % T == 0 and n % T == 0 and p % T == 0)
    assert got.shape == (m, p) and got.is_compact()
    expected = x.astype(np.float64) @ y.T.astype(np.float64)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def to_tiles(matrix):
    """(rows, cols) → (rows/T, cols/T, T, T) where tile (i, j) is rows iT.., cols jT.."""
    rows, cols = matrix.shape
    return matrix.reshape(rows // T, T, cols // T, T).transpose(0, 2, 1, 3).copy()


@examples
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.data())
def test_matmul_tiled_kernel_on_hand_built_tiles(mt, nt, pt, data):
    m, n, p = mt * T, nt * T, pt * T
    x, y = data.draw(values((m, n), -2, 2)), data.draw(values((n, p), -2, 2))
    handles = [KERNELS.Array(size) for size in (m * n, n * p, m * p)]
    KERNELS.from_numpy(to_tiles(x), handles[0])
    KERNELS.from_numpy(to_tiles(y), handles[1])
    KERNELS.from_numpy(np.full(m * p, np.nan), handles[2])  # out arrives unzeroed
    KERNELS.matmul_tiled(*handles, m, n, p)
    out = KERNELS.to_numpy(handles[2], (m * p,), (1,), 0)
    expected = to_tiles(x.astype(np.float64) @ y.astype(np.float64))
    np.testing.assert_allclose(out.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)


# -- flip and pad: new compact arrays, input unchanged --------------------------------------------


@examples
@given(st.data())
def test_flip_against_numpy(data):
    x, view = data.draw(views())
    axes = tuple(data.draw(st.lists(st.integers(0, x.ndim - 1), unique=True, min_size=1)))
    before = view.numpy()
    flipped = nd.flip(view, axes)
    assert np.array_equal(flipped.numpy(), np.flip(x, axes)) and flipped.is_compact()
    assert np.array_equal(view.numpy(), before) and flipped._handle.ptr() != view._handle.ptr()


@examples
@given(st.data())
def test_pad_against_numpy(data):
    x, view = data.draw(views())
    pads = tuple(data.draw(st.tuples(st.integers(0, 2), st.integers(0, 2))) for _ in x.shape)
    padded = view.pad(pads)
    assert np.array_equal(padded.numpy(), np.pad(x, pads)) and padded.is_compact()
    assert np.array_equal(view.numpy(), x)


# -- errors: needle's own, one line each, ValueError where the course expects it ------------------


def test_reshape_errors_are_value_errors():
    a = nd.array(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="needs a compact array"):
        a.permute((1, 0)).reshape((6,))
    with pytest.raises(ValueError, match=r"cannot reshape an array of shape \(2, 3\) into \(4,\)"):
        a.reshape((4,))
    with pytest.raises(NeedleError):
        a[:, 1:].reshape((4,))


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda a: a + nd.array(np.zeros((3, 2))), r"shapes \(2, 3\) and \(3, 2\) differ"),
        (lambda a: a @ a, r"@ needs 2-D \(m, n\) and \(n, p\)"),
        (lambda a: a * [1, 2, 3], "must be an NDArray or a number, got list"),
        (lambda a: a**a, "takes a number as exponent"),
        (lambda a: a[0], "needs 2 indices, got 1"),
        (lambda a: a[0, ::-1], "step > 0"),
        (lambda a: a[2, 0], r"index 2 is not a slice or an integer in \[-2, 2\)"),
        (lambda a: a.permute((0, 0)), "order of axes 0..1"),
        (lambda a: a.broadcast_to((4, 3)), r"cannot broadcast shape \(2, 3\) to \(4, 3\)"),
        (lambda a: a.sum(axis=2), "axis 2 is out of range for 2 axes"),
        (lambda a: a.max(axis=(0, 0)), "repeated axis"),
        (lambda a: a.pad(((1, 1),)), r"a \(left, right\) pair ≥ 0 per axis"),
        (lambda a: a.__setitem__((0, slice(None)), nd.array(np.ones(3))), "differ"),
        (lambda a: nd.array(np.zeros((2, 0))).max(axis=1), "empty axis"),
    ],
)
def test_user_errors_are_needle_errors(bad, message):
    with pytest.raises(UsageError, match=message) as caught:
        bad(nd.array(np.zeros((2, 3))))
    assert "\n" not in str(caught.value)


# -- devices -----------------------------------------------------------------------------------


def test_devices_compare_by_name_and_print_as_the_course():
    assert [str(d) for d in nd.all_devices()] == ["cpu()", "cuda()", "cpu_numpy()"]
    assert nd.cpu() == nd.cpu() and nd.cpu() != nd.cuda() and nd.cpu() != nd.cpu_numpy()
    assert len({nd.cpu(), nd.cpu(), nd.cuda()}) == 2
    assert nd.default_device() == nd.cpu() and nd.cpu().enabled()
    assert nd.cpu().__tile_size__ == T == 8
    assert nd.ndarray.NDArray is nd.NDArray and nd.ndarray.cuda is nd.cuda


def test_devices_and_arrays_copy_and_pickle():
    for device in nd.all_devices():
        assert pickle.loads(pickle.dumps(device)) == copy.deepcopy(device) == device
    a = nd.array(np.arange(4.0))
    for clone in (pickle.loads(pickle.dumps(a)), copy.deepcopy(a)):
        assert clone.device == nd.cpu() and np.array_equal(clone.numpy(), a.numpy())
        assert clone._handle.ptr() != a._handle.ptr()


def drawn_after_seeding(draw):
    """What `draw()` gives right after np.random.seed(0), leaving the global RNG as it was."""
    state = np.random.get_state()
    try:
        np.random.seed(0)
        return draw()
    finally:
        np.random.set_state(state)


def test_device_helpers_draw_one_numpy_call_and_cast():
    for helper, numpy_draw in (("randn", np.random.randn), ("rand", np.random.rand)):
        drawn = drawn_after_seeding(lambda h=helper: getattr(nd.cpu(), h)(2, 3))
        expected = drawn_after_seeding(lambda f=numpy_draw: f(2, 3)).astype(np.float32)
        assert isinstance(drawn, nd.NDArray) and np.array_equal(drawn.numpy(), expected)
    hot = nd.cpu().one_hot(4, np.array([2, 0]))
    assert np.array_equal(hot.numpy(), np.eye(4, dtype=np.float32)[[2, 0]])
    assert np.array_equal(nd.full((2, 2), 3.0).numpy(), np.full((2, 2), 3.0))
    assert nd.empty((2, 5), device=nd.cpu()).shape == (2, 5)


def test_cpu_numpy_holds_plain_numpy_arrays():
    device = nd.cpu_numpy()
    for made in (device.randn(2, 2), device.full((2,), 1.0), device.one_hot(3, 1)):
        assert type(made) is np.ndarray and made.dtype == np.float32
    with pytest.raises(UsageError, match=r"cpu_numpy\(\) holds plain numpy arrays"):
        nd.array(np.zeros(2), device=device)


@pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("cupy") is not None, reason="CuPy is installed"
)
def test_cuda_is_listed_but_disabled_without_cupy():
    assert not nd.cuda().enabled() and nd.cuda() in nd.all_devices()
    with pytest.raises(UsageError, match=r"cuda\(\) is not enabled"):
        nd.array(np.zeros(2), device=nd.cuda())


def fake_cupy(device_count):
    """A module that is numpy under CuPy's names, reporting `device_count` GPUs."""
    module = types.ModuleType("cupy")
    module.__getattr__ = lambda name: getattr(np, name)
    module.asnumpy = np.array

    def count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    module.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=count))
    return module


@pytest.fixture
def cupy_as(monkeypatch):
    def install(module):
        monkeypatch.setitem(sys.modules, "cupy", module)  # None: `import cupy` fails
        device_module._cuda_kernels.cache_clear()

    yield install
    device_module._cuda_kernels.cache_clear()


@pytest.mark.parametrize("module", [None, fake_cupy(0), fake_cupy(RuntimeError("no driver"))])
def test_cuda_is_disabled_when_cupy_fails_or_sees_no_gpu(cupy_as, module):
    cupy_as(module)
    assert not nd.cuda().enabled() and str(nd.cuda()) == "cuda()"


def test_cuda_runs_the_same_kernels_over_cupys_api(cupy_as):
    cupy_as(fake_cupy(1))
    gpu = nd.cuda()
    assert gpu.enabled() and gpu.mod is not device_module.NUMPY_KERNELS
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    a = nd.array(x, device=gpu)
    got = (a.permute((1, 0)) @ a + 1.0).sum(axis=0)
    assert got.device == gpu and np.allclose(got.numpy(), (x.T @ x + 1).sum(axis=0))
    back = got.to(nd.cpu())
    assert back.device == nd.cpu() and np.array_equal(back.numpy(), got.numpy())


def test_cupy_is_not_imported_until_cuda_is_asked_for(tmp_path):
    (tmp_path / "cupy").mkdir()
    (tmp_path / "cupy" / "__init__.py").write_text("")  # importable, and without a GPU API
    script = (
        "import sys, numpy, needle, needle.backend_ndarray as nd\n"
        "nd.array(numpy.ones(3)) + 1\n"
        "before = 'cupy' in sys.modules\n"
        "enabled = nd.cuda().enabled()\n"
        "print(before, enabled, 'cupy' in sys.modules)\n"
    )
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.split() == ["False", "False", "True"]
