"""The array namespace of the NDArray devices, `cpu()` and `cuda()`: the names of
`numpy_api.py`, with numpy's semantics, computed by NDArray's methods and kernels.

Where numpy broadcasts (binary ops, matmul's batch axes), the operands are broadcast here
(stride-0 views) and NDArray's equal-shape kernels do the rest; where numpy drops an axis
(an integer index), the view is re-strided without it. Nothing here calls numpy on the
elements, so a device over CuPy computes on the GPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy

from needle.backend_ndarray.ndarray import NDArray, ShapeError, matmul, where  # noqa: F401
from needle.backend_ndarray.strided import dtype_name

Index = tuple[Any, ...]
# NDArray's kernels run numpy (or CuPy) underneath: numpy's error state governs the former.
errstate = numpy.errstate


def _broadcast(a: Any, b: Any) -> tuple[Any, Any]:
    """Two NDArrays broadcast to one shape by numpy's rules (a number stays a number)."""
    if not (isinstance(a, NDArray) and isinstance(b, NDArray)) or a.shape == b.shape:
        return a, b
    try:
        shape = numpy.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ShapeError(f"shapes {a.shape} and {b.shape} do not broadcast") from None
    return a.broadcast_to(shape), b.broadcast_to(shape)


def add(a: Any, b: Any, out: NDArray | None = None) -> NDArray:
    """a + b; into `out` when given (`a` an NDArray): NDArray's kernel writes there."""
    a, b = _broadcast(a, b)
    return a + b if out is None else a.add(b, out=out)


def subtract(a: Any, b: Any, out: NDArray | None = None) -> NDArray:
    a, b = _broadcast(a, b)
    return a - b if out is None else a.subtract(b, out=out)


def multiply(a: Any, b: Any, out: NDArray | None = None) -> NDArray:
    a, b = _broadcast(a, b)
    return a * b if out is None else a.multiply(b, out=out)


def divide(a: Any, b: Any) -> NDArray:
    a, b = _broadcast(a, b)
    return a / b


def power(a: NDArray, b: Any) -> NDArray:
    a, b = _broadcast(a, b)
    return a.power(b)


def maximum(a: NDArray, b: Any) -> NDArray:
    a, b = _broadcast(a, b)
    return a.maximum(b)


def greater(a: NDArray, b: Any) -> NDArray:
    a, b = _broadcast(a, b)
    return a > b


def negative(a: NDArray) -> NDArray:
    return -a


def abs(a: NDArray) -> NDArray:  # noqa: A001
    return a.maximum(-a)  # exact: one of the two is |a|


def sqrt(a: NDArray) -> NDArray:
    return a**0.5


def log(a: NDArray) -> NDArray:
    return a.log()


def exp(a: NDArray) -> NDArray:
    return a.exp()


def tanh(a: NDArray) -> NDArray:
    return a.tanh()


def isfinite(a: NDArray) -> NDArray:
    """1.0 where a is finite: a − a is 0 there and NaN at ±inf and NaN."""
    with numpy.errstate(invalid="ignore"):
        return (a - a) == 0.0


def all(a: NDArray) -> bool:  # noqa: A001
    """Whether every element is nonzero (read back to the host)."""
    return bool(a.numpy().all())


def sum(a: NDArray, axis: Any = None, keepdims: bool = False) -> NDArray:  # noqa: A001
    return a.sum(axis=axis, keepdims=keepdims)


def max(a: NDArray, axis: Any = None, keepdims: bool = False) -> NDArray:  # noqa: A001
    return a.max(axis=axis, keepdims=keepdims)


def reshape(a: NDArray, shape: Sequence[int]) -> NDArray:
    """A view when `a` is compact, else a compact copy reshaped, as numpy does."""
    shape = tuple(shape)
    if -1 in shape:  # one axis inferred from the others, as numpy does
        known = math.prod(n for n in shape if n != -1) or 1
        shape = tuple(a.size // known if n == -1 else n for n in shape)
    return a.compact().reshape(shape)


def transpose(a: NDArray, axes: Sequence[int]) -> NDArray:
    return a.permute(axes)


def swapaxes(a: NDArray, first: int, second: int) -> NDArray:
    axes = list(range(a.ndim))
    axes[first], axes[second] = axes[second], axes[first]
    return a.permute(axes)


def broadcast_to(a: NDArray, shape: Sequence[int]) -> NDArray:
    return a.broadcast_to(shape)


def astype(a: NDArray, dtype: Any) -> NDArray:
    return a.astype(dtype)


def ascontiguousarray(a: NDArray) -> NDArray:
    return a.compact()


def to_numpy(a: NDArray) -> numpy.ndarray:
    return a.numpy()


def zeros_like(a: NDArray, shape: Sequence[int] | None = None) -> NDArray:
    return a.device.full(a.shape if shape is None else tuple(shape), 0.0, dtype_name(a.dtype))


def ones_like(a: NDArray) -> NDArray:
    return a.device.full(a.shape, 1.0, dtype_name(a.dtype))


def flip(a: NDArray, axes: int | Sequence[int]) -> NDArray:
    return a.flip(axes)


def pad(a: NDArray, widths: Sequence[tuple[int, int]]) -> NDArray:
    return a.pad(widths)


def element_strides(a: NDArray) -> tuple[int, ...]:
    return a.strides


def as_strided(a: NDArray, shape: Sequence[int], strides: Sequence[int]) -> NDArray:
    return a.as_strided(shape, strides)


def getitem(a: NDArray, index: Index) -> NDArray:
    """The view `a[index]` as numpy takes it: an integer index drops its axis."""
    index = index + (slice(None),) * (a.ndim - len(index))
    view = a[index]
    kept = [d for d, i in enumerate(index) if not isinstance(i, int | numpy.integer)]
    return view.as_strided([view.shape[d] for d in kept], [view.strides[d] for d in kept])


def setitem(out: NDArray, index: Index, values: NDArray) -> None:
    out[index] = values


def add_into(out: NDArray, index: Index, values: NDArray) -> None:
    """`out[index] += values`, in place (slices only, so no axis is dropped); `values`
    broadcast to the shape of `out[index]`, as numpy's `+=` does."""
    target = out[index]
    if values.shape != target.shape:
        values = broadcast_to(values, target.shape)
    out[index] = target + values


def take_rows(a: NDArray, indices: Sequence[int]) -> NDArray:
    """Rows of `a` by integer index (repeats allowed): one row view each, stacked."""
    if not len(indices):
        return zeros_like(a, (0, *a.shape[1:]))
    return stack([getitem(a, (int(i),)) for i in indices], 0)


def add_rows(values: NDArray, indices: Sequence[int], rows: int) -> NDArray:
    """An array of `rows` rows, zero but for values[k] added into row indices[k] for each k
    (one row at a time: NDArray has no indexed add)."""
    out = zeros_like(values, (rows, *values.shape[1:]))
    rest = (slice(None),) * (values.ndim - 1)
    for k, i in enumerate(indices):
        row = getitem(values, (slice(k, k + 1), *rest))
        add_into(out, (slice(int(i), int(i) + 1), *rest), row)
    return out


def take_along_rows(a: NDArray, indices: Sequence[int]) -> NDArray:
    """One entry of each row of a 2-D `a`: out[k] = a[k, indices[k]], read as rows of
    `a` seen as one column (entry [k, i] is row k·columns + i)."""
    rows, columns = a.shape
    flat = [k * columns + int(i) for k, i in enumerate(indices)]
    return reshape(take_rows(reshape(a, (rows * columns, 1)), flat), (rows,))


def put_along_rows(values: NDArray, indices: Sequence[int], columns: int) -> NDArray:
    """A (len(values), columns) array, zero but for values[k] at [k, indices[k]]: `add_rows`
    into the array seen as one column, each of whose rows is written once."""
    rows = values.shape[0]
    flat = [k * columns + int(i) for k, i in enumerate(indices)]
    column = add_rows(reshape(values, (rows, 1)), flat, rows * columns)
    return reshape(column, (rows, columns))


def subtract_along_rows(a: NDArray, indices: Sequence[int], values: Any) -> NDArray:
    """`a` with values (one a row, or one for all) subtracted at [k, indices[k]]: a new
    array, `a` less the values put along the rows of zeros."""
    rows, columns = a.shape
    per_row = broadcast_to(reshape(values, (1,)) if values.ndim == 0 else values, (rows,))
    return subtract(a, put_along_rows(per_row, indices, columns))


def unstack(a: NDArray, axis: int) -> tuple[NDArray, ...]:
    lead = (slice(None),) * axis
    return tuple(getitem(a, (*lead, i)) for i in range(a.shape[axis]))


def stack(arrays: Sequence[NDArray], axis: int) -> NDArray:
    """NDArrays of one shape along a new axis `axis` (a non-negative axis)."""
    first = arrays[0]
    shape = first.shape[:axis] + (len(arrays),) + first.shape[axis:]
    out = first.make(shape, device=first.device, dtype=first.dtype)
    lead = (slice(None),) * axis
    rest = (slice(None),) * (first.ndim - axis)
    for i, array in enumerate(arrays):
        index = (*lead, i, *rest)  # keeps the new axis, as size 1
        out[index] = reshape(array, out[index].shape)
    return out
