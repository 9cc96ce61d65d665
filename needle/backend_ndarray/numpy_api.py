"""The array namespace of `cpu_numpy()`: numpy, under the names needle's ops call.

Every op computes through the namespace of its input's device (`api(a)`, array_api.py), so
one op runs on numpy arrays, on NDArrays over numpy (`cpu()`) and over CuPy (`cuda()`).
Here each name is the numpy call the ops made before there were devices, so this path
computes the same bits, in places faster: `sum` takes column sums as one product, and
`add`, `subtract` and `multiply` broadcast a row down a narrow matrix in wider rows.
`ndarray_api.py` defines the same names, with numpy's semantics, over NDArrays.
"""

from __future__ import annotations

import builtins
import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy
from numpy import (  # noqa: F401 - re-exported as the namespace
    abs,
    ascontiguousarray,
    broadcast_to,
    divide,
    errstate,
    exp,
    flip,
    greater,
    isfinite,
    log,
    matmul,
    maximum,
    negative,
    ones_like,
    power,
    sqrt,
    stack,
    tanh,
    where,
)

Index = tuple[Any, ...]


def add(a: Any, b: Any, out: Any = None) -> Any:
    """a + b, numpy's (`_rowwise`)."""
    return _rowwise(numpy.add, a, b, out)


def subtract(a: Any, b: Any, out: Any = None) -> Any:
    """a − b, numpy's (`_rowwise`)."""
    return _rowwise(numpy.subtract, a, b, out)


def multiply(a: Any, b: Any, out: Any = None) -> Any:
    """a · b, numpy's (`_rowwise`)."""
    return _rowwise(numpy.multiply, a, b, out)


def _rowwise(ufunc: numpy.ufunc, a: Any, b: Any, out: Any = None) -> Any:
    """ufunc(a, b); a row broadcast down a narrow matrix's rows takes wider rows (`_widened`).
    `out`, when given, is an array of the result's shape and dtype that the result is
    written into and returned as (a temporary of the caller's, reused: no new array)."""
    wide = _widened(a, b)
    if wide is None:
        return ufunc(a, b) if out is None else ufunc(a, b, out=out)  # no keyword on the hot path
    if out is None:
        return ufunc(*wide).reshape(a.shape)
    if not out.flags.c_contiguous:  # its wide form would be a copy, not a view
        return ufunc(a, b, out=out)
    ufunc(*wide, out=out.reshape(wide[0].shape))
    return out


# Rows at least this wide run numpy's inner loop at full speed; narrower ones pay its
# per-row start-up on every row.
ROW_WIDTH = 256
# With fewer rows than this the repeated row costs about what the wider rows save.
WIDEN_FROM_ROWS = 1024


def _widened(a: Any, b: Any) -> tuple[numpy.ndarray, numpy.ndarray] | None:
    """For a row-major (M, C) matrix `a` and a row `b` of C values ((C,) or (1, C)), which
    numpy broadcasts down a's rows: a seen as (M/r, r·C) and b repeated r times, the same
    elementwise arithmetic (the same bits) in rows r times as wide; None for any other pair.

    numpy's broadcast runs its inner loop once per row of a: with C a conv's 16 or 32
    channels (a batch norm's per-channel scale, shift and statistics; a conv's bias) that
    start-up is most of the time. At (100352, 16) · (16,) numpy took 1.05 ms, at (6272,
    256) · (256,) 0.42 ms; at (6272, 32) 85 µs, at (784, 256) 50 µs."""
    if type(a) is not numpy.ndarray or type(b) is not numpy.ndarray or a.ndim != 2:
        return None
    m, c = a.shape
    if c >= ROW_WIDTH or m < WIDEN_FROM_ROWS or b.shape not in ((c,), (1, c)):
        return None
    if not a.flags.c_contiguous:
        return None
    r = math.gcd(m, ROW_WIDTH // c)
    if r == 1:
        return None
    row = b.reshape(1, c).repeat(r, axis=0)  # b, r times over
    return a.reshape(m // r, r * c), row.reshape(r * c)


def pad(a: Any, widths: Sequence[tuple[int, int]]) -> Any:
    """`a` with `widths[i] = (before, after)` zeros around axis i: zeros, then one copy of `a`
    into the middle. The same array `numpy.pad` makes, in about three quarters of its time
    (its general modes cost a pass per axis; conv pads every input on every step)."""
    shape, inside = [], []
    for n, (lo, hi) in zip(a.shape, widths, strict=True):
        shape.append(n + lo + hi)
        inside.append(slice(lo, lo + n))
    out = numpy.zeros(shape, dtype=a.dtype)
    setitem(out, tuple(inside), a)
    return out


def sum(a: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    """Σ over `axis`: the reduction `np.sum` runs, without its dispatch, except for column
    sums.

    A float array summed over the axes that are outermost in its memory (a bias's gradient,
    a batch norm's statistics: the column sums of an (M, C) matrix, of an NHWC image batch
    or of its NCHW view) is one product with a vector of ones. numpy's reduction down the
    rows runs its inner loop over only C entries at a time: at (100352, 16) it took 1.75 ms
    against 0.08 ms for the product, which also came out closer to the float64 sum (3.4e-6
    relative against 8.2e-6)."""
    if axis is not None and a.ndim > 1 and a.dtype.char in "fd":
        summed = _column_sums(a, (axis,) if isinstance(axis, int) else tuple(axis), keepdims)
        if summed is not None:
            return summed
    return numpy.add.reduce(a, axis=axis, keepdims=keepdims)


def _column_sums(a: numpy.ndarray, axis: tuple[int, ...], keepdims: bool) -> Any:
    """Σ of `a` over `axis` as ones @ (rows, columns) of its memory, when the summed axes
    are the outermost ones there and the memory has no gaps; else None. A row-major matrix
    summed over axis 0 (a bias's gradient, a batch norm's rows) is multiplied as it is,
    without the layout lookup and its reshapes (1.4 µs of a 4 µs call)."""
    if a.ndim == 2 and axis == (0,) and a.flags.c_contiguous:
        summed = numpy.matmul(_ones(a.shape[0], a.dtype), a)
        return summed.reshape(1, a.shape[1]) if keepdims else summed
    layout = _columns_layout(a.shape, a.strides, a.itemsize, a.flags.c_contiguous, axis)
    if layout is None:
        return None
    order, count, columns, back, kept_shape = layout
    if order is not None:  # a view in another axis order (NCHW of NHWC memory)
        a = a.transpose(order)
    rows = a.reshape(count, math.prod(columns))
    summed = numpy.matmul(_ones(count, a.dtype), rows).reshape(columns)
    if back is not None:
        summed = summed.transpose(back)
    return summed.reshape(kept_shape) if keepdims else summed


@functools.lru_cache(maxsize=1024)
def _columns_layout(
    shape: tuple[int, ...],
    strides: tuple[int, ...],
    itemsize: int,
    c_contiguous: bool,
    axis: tuple[int, ...],
) -> tuple | None:
    """How to sum an array of this layout over `axis` as column sums: (the transpose to
    memory order or None, the row count, the columns' shape in memory order, the transpose
    back to the input's order or None, the keepdims shape); None when it cannot be done.
    Cached: a training step asks about the same few layouts every time."""
    ndim = len(shape)
    axes = {x % ndim for x in axis if -ndim <= x < ndim}
    if len(axes) != len(axis) or not 0 < len(axes) < ndim:
        return None  # numpy's reduction raises for these, or they are not column sums
    order = tuple(range(ndim))
    if not c_contiguous:
        order = tuple(sorted(order, key=lambda i: -strides[i]))
        memory_shape = tuple(shape[i] for i in order)
        memory_strides = tuple(strides[i] for i in order)
        if not _row_major(memory_shape, memory_strides, itemsize):
            return None
    k = len(axes)
    if set(order[:k]) != axes:
        return None
    kept = order[k:]  # the input axis each axis of the sum comes from
    back = None if list(kept) == sorted(kept) else tuple(numpy.argsort(kept).tolist())
    columns = tuple(shape[i] for i in kept)
    kept_shape = tuple(1 if i in axes else n for i, n in enumerate(shape))
    to_memory = None if c_contiguous else order
    return to_memory, math.prod(shape[i] for i in order[:k]), columns, back, kept_shape


def _row_major(shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int) -> bool:
    """Whether these byte strides lay the shape out row-major with no gaps (size-1 axes
    may have any stride)."""
    expected = itemsize
    for n, stride in zip(reversed(shape), reversed(strides), strict=True):
        if n != 1 and stride != expected:
            return False
        expected *= n
    return True


_ONES: dict[tuple[int, Any], numpy.ndarray] = {}


def _ones(count: int, dtype: Any) -> numpy.ndarray:
    """A read-only vector of `count` ones, kept for the next step (a training step sums
    the same few row counts every time); at most 32 are kept."""
    key = (count, dtype)
    ones = _ONES.get(key)
    if ones is None:
        if len(_ONES) >= 32:
            _ONES.pop(next(iter(_ONES)))
        ones = _ONES[key] = numpy.ones(count, dtype)
        ones.flags.writeable = False
    return ones


def max(a: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    """max over `axis`: the reduction `a.max` runs."""
    return numpy.maximum.reduce(a, axis=axis, keepdims=keepdims)


def all(a: Any) -> bool:  # noqa: A001
    """Whether every element is nonzero, as a Python bool."""
    return bool(a.all())


def swapaxes(a: numpy.ndarray, first: int, second: int) -> numpy.ndarray:
    """`a` with two axes swapped; a matrix's transpose (every matmul gradient) as `a.T`,
    a view without np.swapaxes' dispatch."""
    if a.ndim == 2 and first % 2 != second % 2:
        return a.T
    return numpy.swapaxes(a, first, second)


def zeros_like(a: Any, shape: Sequence[int] | None = None) -> numpy.ndarray:
    """Zeros of a's dtype, of its shape or `shape`, row-major: numpy's `zeros_like` copies
    the prototype's memory order, and a buffer an op fills (col2im's, dilate's) in the
    memory order of a transposed gradient makes every op after it run on strided memory."""
    return numpy.zeros(a.shape if shape is None else tuple(shape), a.dtype)


def transpose(a: Any, axes: Sequence[int]) -> Any:
    """`a` with its axes in the order `axes` (a view), by the method: np.transpose adds
    three calls of dispatch, and every conv permutes its input and output."""
    return a.transpose(axes)


def reshape(a: Any, shape: Sequence[int]) -> Any:
    """`a` in a new shape (a view when its layout allows), by the method: np.reshape adds
    two calls of dispatch."""
    return a.reshape(shape)


def astype(a: Any, dtype: Any) -> Any:
    """`a` in `dtype`: itself when already in it, else a copy."""
    return a.astype(dtype, copy=False)


def to_numpy(a: Any) -> numpy.ndarray:
    """The elements as a numpy array (`a` itself: it is one)."""
    return numpy.asarray(a)


def element_strides(a: numpy.ndarray) -> tuple[int, ...]:
    """Steps between neighbours along each axis, in elements (numpy counts bytes)."""
    return tuple(s // a.itemsize for s in a.strides)


def as_strided(a: numpy.ndarray, shape: Sequence[int], strides: Sequence[int]) -> numpy.ndarray:
    """A read-only view of a's memory from its first element, with `strides` in elements."""
    byte_strides = tuple(s * a.itemsize for s in strides)
    return numpy.lib.stride_tricks.as_strided(a, tuple(shape), byte_strides, writeable=False)


def getitem(a: numpy.ndarray, index: Index) -> numpy.ndarray:
    """The view `a[index]`; an integer index drops its axis."""
    return a[index]


# A copy from a view whose last axis has at most this many entries, strided, goes one index
# of that axis at a time; from this many elements up (below, the loop costs more).
NARROW_LAST_AXIS = 4
NARROW_COPY_FROM = 4096


def setitem(out: numpy.ndarray, index: Index, values: numpy.ndarray) -> None:
    """`out[index] = values`, in place. Copying a view whose last axis is short and strided
    (a batch of NCHW images seen as NHWC, with 3 colour channels) runs numpy's inner loop
    over that axis, 3 entries a row; one copy per index of it runs over the view's own
    contiguous rows instead. The NCHW CIFAR batch 32 into ResNet-9's padded first layer
    (`pad`): 196 µs at once, 65 µs a channel at a time (at 8 channels and up, at once is
    faster)."""
    c = values.shape[-1] if values.ndim > 1 else 0
    if 1 < c <= NARROW_LAST_AXIS and values.size >= NARROW_COPY_FROM:
        # builtins.abs: this namespace's `abs` is numpy's
        if builtins.abs(values.strides[-1]) > builtins.abs(values.strides[-2]):
            target = out[index]
            for i in range(c):
                target[..., i] = values[..., i]
            return
    out[index] = values


def add_into(out: numpy.ndarray, index: Index, values: numpy.ndarray) -> None:
    """`out[index] += values`, in place; `values` broadcast to the shape of `out[index]`
    (a bias row added to a whole narrow matrix takes wider rows, as `add` does; a whole
    matrix is added into without the view and write-back `out[:, :] +=` makes)."""
    if out.ndim == 2 and _whole(index):
        _rowwise(numpy.add, out, values, out)
        return
    out[index] += values


def _whole(index: Index) -> bool:
    """Whether `index` is (:, :), a whole matrix."""
    if len(index) != 2:
        return False
    rows, columns = index
    return type(rows) is slice and type(columns) is slice and rows == columns == _ALL


_ALL = slice(None)


def take_rows(a: numpy.ndarray, indices: numpy.ndarray) -> numpy.ndarray:
    """Rows of `a` by integer index (repeats allowed): a[indices], a copy."""
    return a[indices]


def add_rows(values: numpy.ndarray, indices: numpy.ndarray, rows: int) -> numpy.ndarray:
    """An array of `rows` rows, zero but for values[k] added into row indices[k] for each k."""
    out = numpy.zeros((rows, *values.shape[1:]), values.dtype)
    numpy.add.at(out, indices, values)
    return out


def take_along_rows(a: numpy.ndarray, indices: numpy.ndarray) -> numpy.ndarray:
    """One entry of each row of a 2-D `a`: out[k] = a[k, indices[k]], a copy."""
    return a[numpy.arange(len(indices)), indices]


def put_along_rows(values: numpy.ndarray, indices: numpy.ndarray, columns: int) -> numpy.ndarray:
    """A (len(values), columns) array, zero but for values[k] at [k, indices[k]]."""
    out = numpy.zeros((len(values), columns), values.dtype)
    out[numpy.arange(len(values)), indices] = values
    return out


def subtract_along_rows(a: numpy.ndarray, indices: numpy.ndarray, values: Any) -> numpy.ndarray:
    """`a` with values (one a row, or one for all) subtracted at [k, indices[k]], in place:
    `a` is the caller's own temporary. Returns it."""
    a[numpy.arange(len(indices)), indices] -= values
    return a


def unstack(a: numpy.ndarray, axis: int) -> tuple[numpy.ndarray, ...]:
    """The a.shape[axis] slices along `axis` (a non-negative axis), that axis dropped: views."""
    lead = (slice(None),) * axis
    return tuple(a[(*lead, i)] for i in range(a.shape[axis]))
