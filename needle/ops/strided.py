"""The array primitives the convolution ops compute with: zero padding, a window view made
by strides, flips, strided reads and writes, permutes, compact reshapes and 2-D products.

Each is one call into the array namespace of its input's device (`api(a)`): numpy for
cpu_numpy(), NDArray's methods for cpu() and cuda(). The ops in `needle.ops.conv` call only
these, so they run on every device unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from needle.backend_ndarray import api

Shape = tuple[int, ...]
# One entry per axis: a slice or an integer, as numpy's `a[index]` takes it.
Index = tuple[Any, ...]


def zeros(shape: Shape, like: Any) -> Any:
    """Zeros of `shape`, with the dtype and device of `like`."""
    return api(like).zeros_like(like, shape=shape)


def pad(a: Any, widths: Sequence[tuple[int, int]]) -> Any:
    """A new array: `a` with `widths[i] = (before, after)` zeros around axis i."""
    return api(a).pad(a, widths)


def flip(a: Any, axes: tuple[int, ...]) -> Any:
    """`a` reversed along `axes`."""
    return api(a).flip(a, axes)


def permute(a: Any, axes: tuple[int, ...]) -> Any:
    """A view of `a` with its axes in the order `axes`."""
    return api(a).transpose(a, axes)


def reshape(a: Any, shape: Shape) -> Any:
    """`a` with a new shape: a view when `a` is compact, else a compact copy first."""
    return api(a).reshape(a, shape)


def compact(a: Any) -> Any:
    """`a` itself when it is row-major, else a row-major copy."""
    return api(a).ascontiguousarray(a)


def matmul(a: Any, b: Any) -> Any:
    """The product of two matrices."""
    return api(a).matmul(a, b)


def windows(
    a: Any, kernel: int | tuple[int, int], stride: int, count: tuple[int, int] | None = None
) -> Any:
    """The (N, Ho, Wo, Kh, Kw, C) view of every Kh×Kw window of an NHWC array `a` (`kernel`
    K or (Kh, Kw)), taken every `stride` rows and columns: element [n, i, j, di, dj, c] is
    a[n, i·s + di, j·s + dj, c]. `count` (Ho, Wo), when given, keeps the first Ho × Wo
    windows only (at most as many as fit).

    No copy: the window axes reuse the row and column strides (the im2col view).
    """
    xp = api(a)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    n, h, w, c = a.shape
    sn, sh, sw, sc = xp.element_strides(a)
    fit = ((h - kh) // stride + 1, (w - kw) // stride + 1)
    if count is not None and (count[0] > fit[0] or count[1] > fit[1]):
        raise ValueError(f"windows: {count} windows asked of an input that fits {fit}")
    ho, wo = fit if count is None else count
    return xp.as_strided(a, (n, ho, wo, kh, kw, c), (sn, sh * stride, sw * stride, sh, sw, sc))


def read(a: Any, index: Index) -> Any:
    """The view `a[index]` (an integer drops its axis, as in numpy)."""
    return api(a).getitem(a, index)


def write(out: Any, index: Index, values: Any) -> None:
    """`out[index] = values`, in place."""
    api(out).setitem(out, index, values)


def add_into(out: Any, index: Index, values: Any) -> None:
    """`out[index] += values`, in place; `values` broadcast to the shape of `out[index]`."""
    api(out).add_into(out, index, values)
