"""NDArray's kernels over flat buffers, written once over an array module `xp`.

The course backs NDArray with one module of kernels per device (C++ for cpu(), CUDA for
cuda()). Here there is one implementation, `ArrayBackend(xp)`: over numpy it is cpu()'s
kernels, over CuPy cuda()'s, with the same code, because CuPy mirrors numpy's API.

The contract every kernel keeps, as in the course:
- A buffer is a `Buffer` (the course's `Array`): `size` elements of one dtype, flat.
- An NDArray tells a kernel which elements it means by (shape, strides, offset), counted in
  elements: element (i_0, ..., i_{k-1}) sits at `offset + Σ_d i_d · strides[d]`.
- Elementwise kernels read compact inputs (row-major, the whole buffer) and write a compact
  `out` of the same size that the caller allocated.
- Reductions turn each run of `reduce_size` consecutive elements of a compact input into one
  element of `out`; the NDArray moves the reduced axes last before calling them.
- Each kernel is one `xp` call on whole buffers (strided reads and writes go through
  `xp.lib.stride_tricks.as_strided`), never a Python loop over elements.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy


class Buffer:
    """The course's `Array`: a flat buffer of `size` elements of `dtype` in array module `xp`."""

    def __init__(self, size: int, *, xp: Any = numpy, dtype: str = "float32"):
        self.array = xp.empty(size, dtype=dtype)
        self.size = int(size)
        self.dtype = self.array.dtype.type.__name__  # "float32"; dtype.name costs 3 µs a read

    def ptr(self) -> int:
        """The address of the first element: every view of one buffer reports the same."""
        interface = getattr(self.array, "__cuda_array_interface__", None)
        return (interface or self.array.__array_interface__)["data"][0]


class ArrayBackend:
    """The course's backend-module API (`Array`, `compact`, `ewise_add`, ..., `matmul_tiled`,
    `__tile_size__`), computed by the array module `xp`.

    Args:
        xp: numpy, or a module with numpy's API (CuPy).
        to_host: copies an `xp` array into a new numpy array (`numpy.array`, `cupy.asnumpy`).
    """

    __tile_size__ = 8

    def __init__(self, xp: Any, *, to_host: Callable[[Any], numpy.ndarray]):
        self.xp = xp
        self.to_host = to_host

    def Array(self, size: int, dtype: str = "float32") -> Buffer:  # noqa: N802 - the course's name
        """A new buffer of `size` elements, contents undefined."""
        return Buffer(size, xp=self.xp, dtype=dtype)

    # -- moving elements ------------------------------------------------------------------------

    def view(self, a: Buffer, shape: Sequence[int], strides: Sequence[int], offset: int) -> Any:
        """The elements of `a` that (shape, strides, offset) name, as an `xp` array sharing
        a's memory: reading it reads `a`, writing it writes `a`."""
        itemsize = a.array.itemsize
        return self.xp.lib.stride_tricks.as_strided(
            a.array[offset:], shape=tuple(shape), strides=tuple(s * itemsize for s in strides)
        )

    def from_numpy(self, values: numpy.ndarray, out: Buffer) -> None:
        """out = values, flattened in row-major order (cast to out's dtype)."""
        out.array[...] = self.xp.asarray(values).reshape(-1)

    def to_numpy(
        self, a: Buffer, shape: Sequence[int], strides: Sequence[int], offset: int
    ) -> numpy.ndarray:
        """A new numpy array holding the elements (shape, strides, offset) name."""
        return self.to_host(self.view(a, shape, strides, offset))

    def compact(
        self, a: Buffer, out: Buffer, shape: Sequence[int], strides: Sequence[int], offset: int
    ) -> None:
        """out = the elements of `a` that (shape, strides, offset) name, in row-major order."""
        out.array.reshape(tuple(shape))[...] = self.view(a, shape, strides, offset)

    def ewise_setitem(
        self, a: Buffer, out: Buffer, shape: Sequence[int], strides: Sequence[int], offset: int
    ) -> None:
        """Write the compact `a` into the elements of `out` that (shape, strides, offset) name."""
        self.view(out, shape, strides, offset)[...] = a.array.reshape(tuple(shape))

    def scalar_setitem(
        self,
        size: int,
        val: float,
        out: Buffer,
        shape: Sequence[int],
        strides: Sequence[int],
        offset: int,
    ) -> None:
        """Set the `size` elements of `out` that (shape, strides, offset) name to `val`."""
        self.view(out, shape, strides, offset)[...] = val

    # -- elementwise: out = f(a, b) or f(a, val) --------------------------------------------------

    def ewise_add(self, a: Buffer, b: Buffer, out: Buffer) -> None:
        """out = a + b"""
        self.xp.add(a.array, b.array, out=out.array)

    def scalar_add(self, a: Buffer, val: float, out: Buffer) -> None:
        """out = a + val"""
        self.xp.add(a.array, val, out=out.array)

    def ewise_sub(self, a: Buffer, b: Buffer, out: Buffer) -> None:
        """out = a - b"""
        self.xp.subtract(a.array, b.array, out=out.array)

    def scalar_sub(self, a: Buffer, val: float, out: Buffer) -> None:
        """out = a - val"""
        self.xp.subtract(a.array, val, out=out.array)

    def ewise_mul(self, a: Buffer, b: Buffer, out: Buffer) -> None:
        """out = a · b"""
        self.xp.multiply(a.array, b.array, out=out.array)

    def scalar_mul(self, a: Buffer, val: float, out: Buffer) -> None:
        """out = a · val"""
        self.xp.multiply(a.array, val, out=out.array)

    def ewise_div(self, a: Buffer, b: Buffer, out: Buffer) -> None:
        """out = a / b"""
        self.xp.divide(a.array, b.array, out=out.array)

    def scalar_div(self, a: Buffer, val: float, out: Buffer) -> None:
        """out = a / val"""
        self.xp.divide(a.array, val, out=out.array)

    def scalar_rdiv(self, a: Buffer, val: float, out: Buffer) -> None:
        """out = val / a"""
        self.xp.divide(val, a.array, out=out.array)

    def scalar_power(self, a: Buffer, val: float, out: Buffer) -> None:
        """out = a ** val"""
        self.xp.power(a.array, val, out=out.array)

    def ewise_power(self, a: Buffer, b: Buffer, out: Buffer) -> None:
        """out = a ** b"""
        self.xp.power(a.array, b.array, out=out.array)

    def ewise_where(self, cond: Buffer, a: Buffer, b: Buffer, out: Buffer) -> None:
        """out = a where cond ≠ 0, else b"""
        out.array[...] = self.xp.where(cond.array != 0, a.array, b.array)

    def ewise_maximum(self, a: Buffer, b: Buffer, out: Buffer) -> None:
        """out = max(a, b)"""
        self.xp.maximum(a.array, b.array, out=out.array)

    def scalar_maximum(self, a: Buffer, val: float, out: Buffer) -> None:
        """out = max(a, val)"""
        self.xp.maximum(a.array, val, out=out.array)

    # Comparisons write 1.0 where the relation holds and 0.0 where it does not (NaN: only !=).

    def ewise_eq(self, a: Buffer, b: Buffer, out: Buffer) -> None:
        """out = [a == b]"""
        self.xp.equal(a.array, b.array, out=out.array)

    def scalar_eq(self, a: Buffer, val: float, out: Buffer) -> None:
        """out = [a == val]"""
        self.xp.equal(a.array, val, out=out.array)

    def ewise_ne(self, a: Buffer, b: Buffer, out: Buffer) -> None:
        """out = [a != b]"""
        self.xp.not_equal(a.array, b.array, out=out.array)

    def scalar_ne(self, a: Buffer, val: float, out: Buffer) -> None:
        """out = [a != val]"""
        self.xp.not_equal(a.array, val, out=out.array)

    def ewise_ge(self, a: Buffer, b: Buffer, out: Buffer) -> None:
        """out = [a >= b]"""
        self.xp.greater_equal(a.array, b.array, out=out.array)

    def scalar_ge(self, a: Buffer, val: float, out: Buffer) -> None:
        """out = [a >= val]"""
        self.xp.greater_equal(a.array, val, out=out.array)

    def ewise_gt(self, a: Buffer, b: Buffer, out: Buffer) -> None:
        """out = [a > b]"""
        self.xp.greater(a.array, b.array, out=out.array)

    def scalar_gt(self, a: Buffer, val: float, out: Buffer) -> None:
        """out = [a > val]"""
        self.xp.greater(a.array, val, out=out.array)

    def ewise_le(self, a: Buffer, b: Buffer, out: Buffer) -> None:
        """out = [a <= b]"""
        self.xp.less_equal(a.array, b.array, out=out.array)

    def scalar_le(self, a: Buffer, val: float, out: Buffer) -> None:
        """out = [a <= val]"""
        self.xp.less_equal(a.array, val, out=out.array)

    def ewise_lt(self, a: Buffer, b: Buffer, out: Buffer) -> None:
        """out = [a < b]"""
        self.xp.less(a.array, b.array, out=out.array)

    def scalar_lt(self, a: Buffer, val: float, out: Buffer) -> None:
        """out = [a < val]"""
        self.xp.less(a.array, val, out=out.array)

    def ewise_log(self, a: Buffer, out: Buffer) -> None:
        """out = ln a"""
        self.xp.log(a.array, out=out.array)

    def ewise_exp(self, a: Buffer, out: Buffer) -> None:
        """out = e ** a"""
        self.xp.exp(a.array, out=out.array)

    def ewise_tanh(self, a: Buffer, out: Buffer) -> None:
        """out = tanh a"""
        self.xp.tanh(a.array, out=out.array)

    # -- reductions over the last `reduce_size` elements -------------------------------------------

    def reduce_sum(self, a: Buffer, out: Buffer, reduce_size: int) -> None:
        """out[i] = Σ_j a[i · reduce_size + j] for j < reduce_size."""
        self.xp.sum(a.array.reshape(out.size, reduce_size), axis=1, out=out.array)

    def reduce_max(self, a: Buffer, out: Buffer, reduce_size: int) -> None:
        """out[i] = max_j a[i · reduce_size + j] for j < reduce_size (reduce_size ≥ 1)."""
        self.xp.max(a.array.reshape(out.size, reduce_size), axis=1, out=out.array)

    # -- matrix products --------------------------------------------------------------------------

    def matmul(self, a: Buffer, b: Buffer, out: Buffer, m: int, n: int, p: int) -> None:
        """out = a @ b for row-major matrices a (m, n), b (n, p), out (m, p)."""
        self.xp.matmul(a.array.reshape(m, n), b.array.reshape(n, p), out=out.array.reshape(m, p))

    def matmul_batched(
        self, a: Buffer, b: Buffer, out: Buffer, batch: int, m: int, n: int, p: int
    ) -> None:
        """out[i] = a[i] @ b[i] for `batch` row-major matrices a (m, n), b (n, p), out (m, p)."""
        self.xp.matmul(
            a.array.reshape(batch, m, n),
            b.array.reshape(batch, n, p),
            out=out.array.reshape(batch, m, p),
        )

    def matmul_tiled(self, a: Buffer, b: Buffer, out: Buffer, m: int, n: int, p: int) -> None:
        """out = a @ b for matrices stored as T×T tiles (T = `__tile_size__`, dividing m, n, p).

        a holds the (m, n) matrix as (m/T, n/T, T, T): tile (i, k) is rows iT..iT+T-1 and
        columns kT..kT+T-1, each tile row-major; b holds (n, p) as (n/T, p/T, T, T) and out
        receives (m, p) as (m/T, p/T, T, T), tile by tile:

            out(i, j) = Σ_k a(i, k) @ b(k, j)

        Whatever out held before is overwritten, not added to.
        """
        t = self.__tile_size__
        tiles_a = a.array.reshape(m // t, n // t, t, t)
        tiles_b = b.array.reshape(n // t, p // t, t, t)
        out.array.reshape(m // t, p // t, t, t)[...] = self.xp.einsum(
            "ikxy,kjyz->ijxz", tiles_a, tiles_b, optimize=True
        )
