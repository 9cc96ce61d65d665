"""The array primitives the convolution ops compute with: zero padding, a window view made
by strides, flips, strided reads and writes, permutes, compact reshapes and 2-D products.

Each is one numpy call. Tensors hold numpy arrays today; when they hold the strided NDArray
backend, these are the lines that change (NDArray has `pad`, `as_strided`, `flip`,
`permute`, `compact`, strided `__getitem__`/`__setitem__` and a 2-D `@`), and the ops in
`needle.ops.conv` stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Shape = tuple[int, ...]
# One entry per axis: a slice, as `a[index]` takes it.
Index = tuple[slice, ...]


def zeros(shape: Shape, like: np.ndarray) -> np.ndarray:
    """Zeros of `shape`, with the dtype (and, later, the device) of `like`."""
    return np.zeros(shape, dtype=like.dtype)


def pad(a: np.ndarray, widths: Sequence[tuple[int, int]]) -> np.ndarray:
    """A new array: `a` with `widths[i] = (before, after)` zeros around axis i."""
    return np.pad(a, widths)


def flip(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """`a` reversed along `axes`."""
    return np.flip(a, axes)


def permute(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """A view of `a` with its axes in the order `axes`."""
    return a.transpose(axes)


def reshape(a: np.ndarray, shape: Shape) -> np.ndarray:
    """`a` with a new shape: a view when `a` is compact, else a compact copy first."""
    return np.reshape(a, shape)


def compact(a: np.ndarray) -> np.ndarray:
    """`a` itself when it is row-major, else a row-major copy."""
    return np.ascontiguousarray(a)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The product of two matrices."""
    return a @ b


def windows(a: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """The (N, Ho, Wo, K, K, C) view of every K×K window of an NHWC array `a`, taken every
    `stride` rows and columns: element [n, i, j, di, dj, c] is a[n, i·s + di, j·s + dj, c].

    No copy: the window axes reuse the row and column strides (the im2col view).
    """
    n, h, w, c = a.shape
    sn, sh, sw, sc = a.strides
    shape = (n, (h - kernel) // stride + 1, (w - kernel) // stride + 1, kernel, kernel, c)
    strides = (sn, sh * stride, sw * stride, sh, sw, sc)
    return np.lib.stride_tricks.as_strided(a, shape, strides, writeable=False)


def read(a: np.ndarray, index: Index) -> np.ndarray:
    """The view `a[index]`."""
    return a[index]


def write(out: np.ndarray, index: Index, values: np.ndarray) -> None:
    """`out[index] = values`, in place."""
    out[index] = values


def add_into(out: np.ndarray, index: Index, values: np.ndarray) -> None:
    """`out[index] += values`, in place."""
    out[index] += values
