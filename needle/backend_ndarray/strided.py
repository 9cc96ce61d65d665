"""The layout half of the course's NDArray: an n-d view (shape, strides, offset) of a buffer.

A `StridedArray` holds no elements itself. It names a flat buffer on a device (`_handle`) and
which elements of it it means: element (i_0, ..., i_{k-1}) is buffer element
`_offset + Σ_d i_d · _strides[d]`, strides counted in elements, not bytes. So views —
`reshape`, `permute`, `broadcast_to`, `as_strided`, indexing — only compute a new
(shape, strides, offset) over the same buffer, and writing through a view writes the base.
What moves elements (`compact`, `__setitem__`, `flip`, `pad`) calls one kernel of the
device. `NDArray` (ndarray.py) adds the arithmetic on top.

dtype: float32 unless asked otherwise, as the course has it: `NDArray(x)`, `array(x)`,
`empty`, `full` and the devices' helpers all give float32. float64 is kept when asked for
(`array(x, dtype="float64")`) so that gradients can be checked in float64; views and copies
keep the dtype. No other dtype: integer labels stay numpy arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from needle.backend_ndarray.device import BackendDevice, default_device
from needle.errors import UsageError

DTYPES = ("float32", "float64")


class ShapeError(UsageError, ValueError):
    """A shape, axis or index that does not fit the array. Also a ValueError, which is what
    the course's code expects from a bad reshape."""


def dtype_name(dtype: Any) -> str:
    """The name of a dtype NDArray keeps ("float32" for None), or UsageError."""
    if isinstance(dtype, str) and dtype in DTYPES:  # the common case, without numpy's parser
        return dtype
    try:
        name = "float32" if dtype is None else np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in DTYPES:
        raise UsageError(f"NDArray dtype {name!r} is not supported; valid: {', '.join(DTYPES)}")
    return name


def as_scalar(value: Any, op: str) -> float:
    """`value` as the Python float a scalar kernel takes (numpy then computes in the array's
    dtype, as the course's float32 kernels do)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UsageError(
            f"NDArray {op}: the other operand must be an NDArray or a number, "
            f"got {type(value).__name__}"
        ) from None


class StridedArray:
    """An n-d array of one dtype on one device, a strided view of a flat buffer.

    `NDArray(other, device=None, *, dtype=None)` copies `other` (an NDArray, a numpy array,
    or anything `np.array` takes) onto `device` (default: other's device, else
    `default_device()`), in `dtype` (default: other's if an NDArray, else float32). Views and
    copies are of the class they were made from, so an NDArray's views are NDArrays.
    """

    def __init__(self, other: Any, device: BackendDevice | None = None, *, dtype: Any = None):
        if isinstance(other, StridedArray):
            source = other if device is None else other.to(device)
            self._init(source._copy(other.dtype if dtype is None else dtype))
            return
        values = np.asarray(other)
        array = self.make(values.shape, device=device, dtype=dtype)
        array.device.from_numpy(np.ascontiguousarray(values), array._handle)
        self._init(array)

    def _init(self, other: StridedArray) -> None:
        self._shape, self._strides, self._offset = other._shape, other._strides, other._offset
        self._device, self._handle = other._device, other._handle

    @staticmethod
    def compact_strides(shape: Sequence[int]) -> tuple[int, ...]:
        """Row-major strides of `shape`: the last axis 1, each earlier one the product after it."""
        strides, stride = [], 1
        for n in reversed(shape):
            strides.append(stride)
            stride *= n
        return tuple(reversed(strides))

    @classmethod
    def make(
        cls,
        shape: Sequence[int],
        strides: Sequence[int] | None = None,
        device: BackendDevice | None = None,
        handle: Any = None,
        offset: int = 0,
        *,
        dtype: Any = None,
    ) -> StridedArray:
        """A new array of `shape` over a new buffer, or a view of `handle` (then `dtype` is the
        handle's and `strides`, `offset` say which of its elements the view holds)."""
        shape = tuple(int(n) for n in shape)
        if any(n < 0 for n in shape):
            raise ShapeError(f"NDArray shape {shape} has a negative size")
        array = cls.__new__(cls)
        array._shape = shape
        array._strides = cls.compact_strides(shape) if strides is None else tuple(strides)
        array._offset = offset
        array._device = default_device() if device is None else device
        if handle is None:
            array._device.check_holds_ndarrays()
            handle = array._device.Array(math.prod(shape), dtype_name(dtype))
        array._handle = handle
        return array

    # -- what it is -------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def strides(self) -> tuple[int, ...]:
        """Steps between neighbours along each axis, in elements."""
        return self._strides

    @property
    def device(self) -> BackendDevice:
        return self._device

    @property
    def dtype(self) -> str:
        return self._handle.dtype

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def size(self) -> int:
        return math.prod(self._shape)

    @property
    def flat(self) -> Any:
        """The elements in row-major order, writable in place: after `x.flat[j] += eps`, x,
        every view of its buffer and every later operation see the new value."""
        return self._device.view(self._handle, self._shape, self._strides, self._offset).flat

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.numpy()}, device={self.device})"

    def __str__(self) -> str:
        return str(self.numpy())

    def numpy(self) -> np.ndarray:
        """A numpy copy of the elements."""
        return self._device.to_numpy(self._handle, self._shape, self._strides, self._offset)

    def to(self, device: BackendDevice) -> StridedArray:
        """This array on `device`: itself when already there, else a copy."""
        if device == self.device:
            return self
        return type(self)(self.numpy(), device=device, dtype=self.dtype)

    def fill(self, value: float) -> None:
        """Set every element (of this view, not the rest of its buffer) to `value`."""
        value = as_scalar(value, "fill")
        shape, strides, offset = self._shape, self._strides, self._offset
        self._device.scalar_setitem(self.size, value, self._handle, shape, strides, offset)

    # -- views: a new (shape, strides, offset) over the same buffer --------------------------------

    def is_compact(self) -> bool:
        """Row-major strides over the whole of its buffer."""
        return (
            self._strides == self.compact_strides(self._shape)
            and self._offset == 0
            and self.size == self._handle.size
        )

    def compact(self) -> StridedArray:
        """Itself when compact, else a compact copy."""
        return self if self.is_compact() else self._copy(self.dtype)

    def _copy(self, dtype: Any) -> StridedArray:
        """A compact copy with a buffer of its own, in `dtype`."""
        out = self.make(self._shape, device=self._device, dtype=dtype)
        self._device.compact(self._handle, out._handle, self._shape, self._strides, self._offset)
        return out

    def as_strided(self, shape: Sequence[int], strides: Sequence[int]) -> StridedArray:
        """The view of the same buffer, from the same offset, with these shape and strides."""
        if len(shape) != len(strides):
            raise ShapeError(f"as_strided: {len(shape)} sizes but {len(strides)} strides")
        return self.make(shape, strides, self._device, self._handle, self._offset)

    def reshape(self, new_shape: Sequence[int]) -> StridedArray:
        """The same elements, row-major, in `new_shape` (a view: the array must be compact)."""
        new_shape = tuple(new_shape)
        if math.prod(new_shape) != self.size:
            raise ShapeError(f"cannot reshape an array of shape {self.shape} into {new_shape}")
        if not self.is_compact():
            raise ShapeError(
                f"reshape needs a compact array, got shape {self.shape} with strides "
                f"{self.strides}; call .compact() first"
            )
        return self.make(new_shape, None, self._device, self._handle, self._offset)

    def permute(self, new_axes: Sequence[int]) -> StridedArray:
        """Axes reordered: axis d of the result is axis new_axes[d] of this array."""
        axes = tuple(self._axis(a, "permute") for a in new_axes)
        if sorted(axes) != list(range(self.ndim)):
            raise ShapeError(f"permute needs an order of axes 0..{self.ndim - 1}, got {new_axes}")
        return self.as_strided([self._shape[a] for a in axes], [self._strides[a] for a in axes])

    def broadcast_to(self, new_shape: Sequence[int]) -> StridedArray:
        """Size-1 axes (and new leading ones) repeated to `new_shape` by stride 0, as numpy."""
        new_shape = tuple(new_shape)
        lead = len(new_shape) - self.ndim
        if lead < 0 or any(
            n not in (1, m) for n, m in zip(self._shape, new_shape[lead:], strict=True)
        ):
            raise ShapeError(f"cannot broadcast shape {self.shape} to {new_shape}")
        strides = (0,) * lead + tuple(
            0 if n == 1 else s for n, s in zip(self._shape, self._strides, strict=True)
        )
        return self.as_strided(new_shape, strides)

    def process_slice(self, sl: slice, dim: int) -> slice:
        """`sl` with explicit start, stop, step within an axis of size `dim` (None → 0, dim, 1;
        negative start and stop count from the end, as in Python)."""
        if sl.step is not None and sl.step <= 0:
            raise ShapeError(f"NDArray slices need a step > 0, got {sl.step}")
        return slice(*sl.indices(dim))

    def _index_as_slice(self, index: Any, dim: int) -> slice:
        if isinstance(index, slice):
            return self.process_slice(index, dim)
        if isinstance(index, int | np.integer) and -dim <= index < dim:
            start = int(index) % dim
            return slice(start, start + 1, 1)
        raise ShapeError(f"NDArray index {index!r} is not a slice or an integer in [{-dim}, {dim})")

    def __getitem__(self, idxs: Any) -> StridedArray:
        """The view an index per axis names; an integer i is the slice i:i+1, so no axis is
        ever dropped."""
        idxs = idxs if isinstance(idxs, tuple) else (idxs,)
        if len(idxs) != self.ndim:
            raise ShapeError(f"shape {self.shape} needs {self.ndim} indices, got {len(idxs)}")
        shape, strides, offset = [], [], self._offset
        for index, dim, stride in zip(idxs, self._shape, self._strides, strict=True):
            sl = self._index_as_slice(index, dim)
            shape.append(len(range(sl.start, sl.stop, sl.step)))
            strides.append(stride * sl.step)
            offset += stride * sl.start
        return self.make(shape, strides, self._device, self._handle, offset)

    def __setitem__(self, idxs: Any, other: Any) -> None:
        """Write `other` (an NDArray of the view's shape, or a number) into the view `idxs`
        names: the elements change in this array's buffer, its strides stay."""
        view = self[idxs]
        if isinstance(other, StridedArray):
            view._check_operand(other, "setitem")
            self._device.ewise_setitem(
                other.compact()._handle, view._handle, view.shape, view.strides, view._offset
            )
        else:
            view.fill(other)

    def _check_operand(self, other: StridedArray, op: str) -> None:
        if other.shape != self.shape:
            raise ShapeError(f"NDArray {op}: shapes {self.shape} and {other.shape} differ")
        if other.device != self.device:
            raise UsageError(f"NDArray {op}: arrays on {self.device} and {other.device}")

    def _axis(self, axis: int, op: str) -> int:
        if not -self.ndim <= axis < self.ndim:
            raise ShapeError(f"NDArray {op}: axis {axis} is out of range for {self.ndim} axes")
        return axis % self.ndim

    # -- new arrays with moved elements -----------------------------------------------------------

    def flip(self, axes: int | Sequence[int]) -> StridedArray:
        """A new compact array reversed along `axes` (an int or a tuple)."""
        axes = (axes,) if isinstance(axes, int) else tuple(axes)
        strides, offset = list(self._strides), self._offset
        for d in {self._axis(a, "flip") for a in axes}:
            offset += max(self._shape[d] - 1, 0) * strides[d]  # start at the last element
            strides[d] = -strides[d]
        return self.make(self._shape, strides, self._device, self._handle, offset)._copy(self.dtype)

    def pad(self, axes: Sequence[tuple[int, int]]) -> StridedArray:
        """A new compact array with `left` zeros before and `right` after each axis, given as
        one (left, right) pair per axis, as `np.pad`."""
        pads = tuple(tuple(pair) for pair in axes)
        if len(pads) != self.ndim or any(len(p) != 2 or min(p) < 0 for p in pads):
            raise ShapeError(f"pad needs a (left, right) pair ≥ 0 per axis of {self.shape}: {pads}")
        shape = tuple(n + left + right for n, (left, right) in zip(self._shape, pads, strict=True))
        out = self.make(shape, device=self._device, dtype=self.dtype)
        out.fill(0.0)
        inside = tuple(
            slice(left, left + n) for n, (left, _) in zip(self._shape, pads, strict=True)
        )
        out[inside] = self
        return out
