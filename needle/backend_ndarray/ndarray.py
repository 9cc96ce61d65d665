"""The course's NDArray: a strided array (strided.py) with arithmetic on its device.

Every operation makes its inputs compact (row-major over a buffer of their own) and calls
one kernel of the device (device.py, ndarray_backend_array.py) into a new compact array.
An operation of a float32 and a float64 array gives float64; one with a scalar keeps the
array's dtype. Also the array-module functions the course's ops call (`array_api.log(a)`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from needle.backend_ndarray.device import (
    BackendDevice,
    all_devices,
    cpu,
    cpu_numpy,
    cuda,
    default_device,
)
from needle.backend_ndarray.strided import ShapeError, StridedArray, as_scalar, dtype_name
from needle.errors import UsageError

# The course's ndarray module defines its devices too; course code imports them from here.
__all__ = [
    "NDArray", "BackendDevice", "ShapeError", "cpu", "cuda", "cpu_numpy", "default_device",
    "all_devices", "array", "empty", "full", "broadcast_to", "reshape", "maximum", "log", "exp",
    "tanh", "sum", "flip", "where", "matmul",
]  # fmt: skip

Axes = int | Sequence[int] | None


class NDArray(StridedArray):
    """A strided array with elementwise arithmetic, comparisons, `@` and reductions.

    `NDArray(other, device=None, *, dtype=None)` copies `other`: see `StridedArray`.
    """

    __array_ufunc__ = None  # numpy defers to our reflected operators: np.float32(2) * x is ours

    # -- elementwise ------------------------------------------------------------------------------

    def _binary(
        self, other: Any, ewise: str, scalar: str, op: str, out: NDArray | None = None
    ) -> NDArray:
        """A new compact array, or `out` written over (`_output`): kernel `ewise` on (self,
        other) or `scalar` on (self, number)."""
        if isinstance(other, NDArray):
            self._check_operand(other, op)
            out = self._output(out, self._result_dtype(other), op)
            kernel = getattr(self.device, ewise)
            kernel(self.compact()._handle, other.compact()._handle, out._handle)
            return out
        return self._scalar_op(scalar, other, op, out)

    def _output(self, out: NDArray | None, dtype: Any, op: str) -> NDArray:
        """A new compact array of self's shape in `dtype`, or `out` itself: a compact array of
        that shape, dtype and device, which the kernel writes into (it may be self)."""
        if out is None:
            return self.make(self.shape, device=self.device, dtype=dtype)
        if (out.shape, out.dtype, out.device) != (self.shape, dtype, self.device):
            raise ShapeError(
                f"NDArray {op}: out= is a {out.dtype} array of shape {out.shape} on "
                f"{out.device}; the result is {dtype}, of shape {self.shape}, on {self.device}"
            )
        if not out.is_compact():
            raise ShapeError(f"NDArray {op}: out= must be compact (a view of its whole buffer)")
        return out

    def add(self, other: Any, out: NDArray | None = None) -> NDArray:
        """self + other, into `out` when given (numpy's `np.add(self, other, out=out)`)."""
        return self._binary(other, "ewise_add", "scalar_add", "+", out)

    def subtract(self, other: Any, out: NDArray | None = None) -> NDArray:
        """self − other, into `out` when given."""
        return self._binary(other, "ewise_sub", "scalar_sub", "-", out)

    def multiply(self, other: Any, out: NDArray | None = None) -> NDArray:
        """self · other, into `out` when given."""
        return self._binary(other, "ewise_mul", "scalar_mul", "*", out)

    def _result_dtype(self, other: NDArray) -> str:
        """float64 if either operand is, else float32."""
        return self.dtype if other.dtype == self.dtype else np.result_type(self.dtype, other.dtype)

    def _scalar_op(self, kernel: str, value: Any, op: str, out: NDArray | None = None) -> NDArray:
        out = self._output(out, self.dtype, op)
        getattr(self.device, kernel)(self.compact()._handle, as_scalar(value, op), out._handle)
        return out

    def _unary(self, kernel: str) -> NDArray:
        out = self.make(self.shape, device=self.device, dtype=self.dtype)
        getattr(self.device, kernel)(self.compact()._handle, out._handle)
        return out

    def __add__(self, other: Any) -> NDArray:
        return self._binary(other, "ewise_add", "scalar_add", "+")

    __radd__ = __add__

    def __sub__(self, other: Any) -> NDArray:
        return self._binary(other, "ewise_sub", "scalar_sub", "-")

    def __rsub__(self, other: Any) -> NDArray:
        return (-self) + as_scalar(other, "-")

    def __mul__(self, other: Any) -> NDArray:
        return self._binary(other, "ewise_mul", "scalar_mul", "*")

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> NDArray:
        return self._binary(other, "ewise_div", "scalar_div", "/")

    def __rtruediv__(self, other: Any) -> NDArray:
        return self._scalar_op("scalar_rdiv", other, "/")

    def __neg__(self) -> NDArray:
        return self * -1.0

    def __pow__(self, other: Any) -> NDArray:
        """Elementwise power by a scalar exponent."""
        if isinstance(other, NDArray):
            raise UsageError("NDArray ** takes a number as exponent, not an NDArray")
        return self._scalar_op("scalar_power", other, "**")

    def power(self, other: Any) -> NDArray:
        """Elementwise power by an equal-shape NDArray or a scalar (`**` takes scalars only,
        as the course's NDArray)."""
        return self._binary(other, "ewise_power", "scalar_power", "power")

    def maximum(self, other: Any) -> NDArray:
        return self._binary(other, "ewise_maximum", "scalar_maximum", "maximum")

    # Comparisons give 1.0 where they hold and 0.0 where not, in the array's dtype.
    def __eq__(self, other: Any) -> NDArray:  # type: ignore[override]
        return self._binary(other, "ewise_eq", "scalar_eq", "==")

    def __ne__(self, other: Any) -> NDArray:  # type: ignore[override]
        return self._binary(other, "ewise_ne", "scalar_ne", "!=")

    def __ge__(self, other: Any) -> NDArray:
        return self._binary(other, "ewise_ge", "scalar_ge", ">=")

    def __gt__(self, other: Any) -> NDArray:
        return self._binary(other, "ewise_gt", "scalar_gt", ">")

    def __le__(self, other: Any) -> NDArray:
        return self._binary(other, "ewise_le", "scalar_le", "<=")

    def __lt__(self, other: Any) -> NDArray:
        return self._binary(other, "ewise_lt", "scalar_lt", "<")

    def log(self) -> NDArray:
        return self._unary("ewise_log")

    def exp(self) -> NDArray:
        return self._unary("ewise_exp")

    def tanh(self) -> NDArray:
        return self._unary("ewise_tanh")

    # -- matrix product ---------------------------------------------------------------------------

    def __matmul__(self, other: NDArray) -> NDArray:
        """The product of 2-D arrays (m, n) @ (n, p). When T = `__tile_size__` divides m, n and
        p, both are copied into T×T tiles and multiplied tile by tile, as the course's kernels
        do; otherwise by the plain kernel."""
        if not isinstance(other, NDArray):
            raise UsageError(f"NDArray @ needs an NDArray, got {type(other).__name__}")
        if self.ndim != 2 or other.ndim != 2 or self.shape[1] != other.shape[0]:
            raise ShapeError(
                f"NDArray @ needs 2-D (m, n) and (n, p), got {self.shape} and {other.shape}"
            )
        if other.device != self.device:
            raise UsageError(f"NDArray @: arrays on {self.device} and {other.device}")
        (m, n), p = self.shape, other.shape[1]
        dtype = self._result_dtype(other)
        t = self.device.__tile_size__
        if m * n * p > 0 and m % t == 0 and n % t == 0 and p % t == 0:
            out = self.make((m // t, p // t, t, t), device=self.device, dtype=dtype)
            a, b = self.compact()._tiles(t), other.compact()._tiles(t)
            self.device.matmul_tiled(a._handle, b._handle, out._handle, m, n, p)
            return out.permute((0, 2, 1, 3))._copy(dtype).reshape((m, p))
        out = self.make((m, p), device=self.device, dtype=dtype)
        self.device.matmul(self.compact()._handle, other.compact()._handle, out._handle, m, n, p)
        return out

    def astype(self, dtype: Any) -> NDArray:
        """Itself when already of `dtype`, else a compact copy in it."""
        return self if dtype_name(dtype) == self.dtype else self._copy(dtype)

    def _tiles(self, t: int) -> NDArray:
        """A compact copy of this compact 2-D array as (rows/t, cols/t, t, t): tile (i, j) is
        rows it..it+t-1 and columns jt..jt+t-1, row-major."""
        rows, cols = self.shape
        return self.as_strided((rows // t, cols // t, t, t), (cols * t, t, cols, 1)).compact()

    # -- reductions -------------------------------------------------------------------------------

    def _reduce(self, kernel: str, axis: Axes, keepdims: bool, op: str) -> NDArray:
        """Reduce over `axis` (None: all; an int or a tuple of them) by moving those axes
        last, making that compact and reducing each run of their size."""
        if axis is None:
            axes = tuple(range(self.ndim))
        else:
            axes = tuple(self._axis(a, op) for a in ((axis,) if isinstance(axis, int) else axis))
        if len(set(axes)) != len(axes):
            raise ShapeError(f"NDArray {op}: repeated axis in {axis}")
        kept = tuple(d for d in range(self.ndim) if d not in axes)
        reduce_size = math.prod(self._shape[d] for d in axes)
        if keepdims:
            shape = tuple(1 if d in axes else n for d, n in enumerate(self._shape))
        else:
            shape = tuple(self._shape[d] for d in kept)
        if op == "max" and reduce_size == 0 and math.prod(shape) > 0:
            raise ShapeError(f"NDArray max over an empty axis of an array of shape {self.shape}")
        view = self.permute(kept + axes).compact()
        out = self.make(shape, device=self.device, dtype=self.dtype)
        getattr(self.device, kernel)(view._handle, out._handle, reduce_size)
        return out

    def sum(self, axis: Axes = None, keepdims: bool = False) -> NDArray:
        """Σ over `axis` (None: every axis, giving shape (), or all 1s with keepdims)."""
        return self._reduce("reduce_sum", axis, keepdims, "sum")

    def max(self, axis: Axes = None, keepdims: bool = False) -> NDArray:
        """max over `axis` (None: every axis)."""
        return self._reduce("reduce_max", axis, keepdims, "max")


# -- the array-module functions the course's ops call (`array_api.*`) ------------------------------


def array(a: Any, dtype: Any = "float32", device: BackendDevice | None = None) -> NDArray:
    """A new NDArray holding a copy of `a`."""
    return NDArray(a, device=device, dtype=dtype)


def empty(shape: Sequence[int], dtype: Any = "float32", device: BackendDevice | None = None) -> Any:
    return (default_device() if device is None else device).empty(shape, dtype)


def full(shape: Sequence[int], fill_value: float, dtype: Any = "float32", device: Any = None):
    return (default_device() if device is None else device).full(shape, fill_value, dtype)


def broadcast_to(a: NDArray, shape: Sequence[int]) -> NDArray:
    return a.broadcast_to(shape)


def reshape(a: NDArray, shape: Sequence[int]) -> NDArray:
    return a.reshape(shape)


def maximum(a: NDArray, b: Any) -> NDArray:
    return a.maximum(b)


def log(a: NDArray) -> NDArray:
    return a.log()


def exp(a: NDArray) -> NDArray:
    return a.exp()


def tanh(a: NDArray) -> NDArray:
    return a.tanh()


def sum(a: NDArray, axis: Axes = None, keepdims: bool = False) -> NDArray:  # noqa: A001
    return a.sum(axis=axis, keepdims=keepdims)


def flip(a: NDArray, axes: Axes) -> NDArray:
    return a.flip(axes)


def where(cond: NDArray, a: NDArray, b: NDArray) -> NDArray:
    """a where cond ≠ 0, else b; three NDArrays of one shape (one kernel)."""
    for other in (a, b):
        cond._check_operand(other, "where")
    out = a.make(a.shape, device=a.device, dtype=a._result_dtype(b))
    kernel = a.device.ewise_where
    kernel(cond.compact()._handle, a.compact()._handle, b.compact()._handle, out._handle)
    return out


def matmul(a: NDArray, b: NDArray) -> NDArray:
    """numpy's matmul: (..., m, n) @ (..., n, p), the batch axes broadcast both ways, by one
    batched kernel. (2-D products too: NDArray's `@` copies both into tiles first, as the
    course's kernels do: a 128-row MLP step took 40 % longer through them.)"""
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul shapes do not fit: {a.shape} @ {b.shape}")
    if b.device != a.device:
        raise UsageError(f"matmul: arrays on {a.device} and {b.device}")
    try:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ShapeError(f"matmul batch axes do not broadcast: {a.shape} @ {b.shape}") from None
    (m, n), p, count = a.shape[-2:], b.shape[-1], math.prod(batch)
    left = a.broadcast_to(batch + (m, n)).compact()
    right = b.broadcast_to(batch + (n, p)).compact()
    out = a.make(batch + (m, p), device=a.device, dtype=a._result_dtype(b))
    a.device.matmul_batched(left._handle, right._handle, out._handle, count, m, n, p)
    return out
