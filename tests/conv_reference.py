"""Direct definitions of the convolution ops, element by element, for the tests to compare
needle's strided implementations with."""

from __future__ import annotations

import numpy as np


def conv_loops(a, b, stride, padding):
    """out[n, i, j, o] = Σ_{di, dj, c} a[n, i·s + di − p, j·s + dj − p, c] · b[di, dj, c, o],
    terms outside `a` counting as zero: the definition, one output element at a time."""
    n, h, w, c_in = a.shape
    k, _, _, c_out = b.shape
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    out = np.zeros((n, ho, wo, c_out))
    for index in np.ndindex(n, ho, wo, c_out):
        batch, i, j, o = index
        total = 0.0
        for di, dj, c in np.ndindex(k, k, c_in):
            row, col = i * stride + di - padding, j * stride + dj - padding
            if 0 <= row < h and 0 <= col < w:
                total += a[batch, row, col, c] * b[di, dj, c, o]
        out[index] = total
    return out


def _listed(axes, ndim):
    """The axes an ndim-axis array has, as non-negative ints (axes ≥ ndim left out)."""
    if axes is None:
        return set(range(ndim))
    axes = (axes,) if isinstance(axes, int) else axes
    return {axis % ndim for axis in axes if axis < ndim}


def dilate_loops(a, axes, dilation):
    """Element i of each listed axis moved to i·(dilation + 1), zeros everywhere else."""
    listed, step = _listed(axes, a.ndim), dilation + 1
    out = np.zeros(tuple(n * step if i in listed else n for i, n in enumerate(a.shape)))
    for index in np.ndindex(a.shape):
        out[tuple(k * step if i in listed else k for i, k in enumerate(index))] = a[index]
    return out


def undilate_loops(a, axes, dilation):
    """The elements whose index along each listed axis is a multiple of dilation + 1."""
    listed, step = _listed(axes, a.ndim), dilation + 1
    keep = [
        index
        for index in np.ndindex(a.shape)
        if all(k % step == 0 for i, k in enumerate(index) if i in listed)
    ]
    shape = tuple(-(-n // step) if i in listed else n for i, n in enumerate(a.shape))
    return np.array([a[index] for index in keep]).reshape(shape)


def pool_loops(a, kernel, stride, reduce):
    """out[n, i, j, c] = reduce of a[n, i·s + di, j·s + dj, c] over 0 ≤ di, dj < K, one
    output element at a time (`reduce` is np.max or np.mean)."""
    stride = kernel if stride is None else stride
    n, h, w, c = a.shape
    ho, wo = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    out = np.zeros((n, ho, wo, c))
    for batch, i, j, channel in np.ndindex(n, ho, wo, c):
        window = [
            a[batch, i * stride + di, j * stride + dj, channel]
            for di, dj in np.ndindex(kernel, kernel)
        ]
        out[batch, i, j, channel] = reduce(window)
    return out
