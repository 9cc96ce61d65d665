"""Inputs for the registry entries of the convolution ops: default input shapes for given
parameters, and random valid (parameters, shapes) cases for the property tests.

Every conv case has a kernel no larger than its padded input (K ≤ H + 2p, K ≤ W + 2p), and
sizes small enough that an elementwise gradient check of every case stays quick.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from needle.ops.registry import Shape, random_axes, random_shape

Case = tuple[dict[str, Any], list[Shape]]


def flip_case(rng: np.random.Generator) -> Case:
    shape = random_shape(rng, 1, 4)
    return {"axes": random_axes(rng, len(shape))}, [shape]


def _dilation_axes(rng: np.random.Generator, ndim: int) -> int | tuple[int, ...]:
    """Distinct axes, sometimes negative, sometimes one past the input's (to be ignored)."""
    count = int(rng.integers(1, ndim + 2))
    axes = [int(a) for a in rng.permutation(ndim + 1)[:count]]
    axes = [a - ndim if a < ndim and rng.random() < 0.3 else a for a in axes]
    return axes[0] if len(axes) == 1 and rng.random() < 0.5 else tuple(axes)


def dilate_case(rng: np.random.Generator) -> Case:
    shape = random_shape(rng, 1, 3)
    params = {"axes": _dilation_axes(rng, len(shape)), "dilation": int(rng.integers(0, 3))}
    return params, [shape]


def undilate_case(rng: np.random.Generator) -> Case:
    # Any sizes: a size that is not a multiple of dilation + 1 keeps ⌈n / (dilation + 1)⌉.
    shape = tuple(int(n) for n in rng.integers(1, 7, int(rng.integers(1, 4))))
    params = {"axes": _dilation_axes(rng, len(shape)), "dilation": int(rng.integers(0, 3))}
    return params, [shape]


def undilate_shapes(params: dict[str, Any]) -> list[Shape]:
    """(2, 3, 4) with each listed axis as long as its dilation would make it."""
    step = int(params["dilation"]) + 1
    axes = params["axes"]
    listed = range(3) if axes is None else (axes,) if isinstance(axes, int) else axes
    listed = {axis % 3 for axis in listed if axis < 3}
    return [tuple(n * step if i in listed else n for i, n in enumerate((2, 3, 4)))]


def conv_shapes(params: dict[str, Any]) -> list[Shape]:
    """An NHWC input (2, 5, 4, 2) and a (3, 3, 2, 3) kernel: 3 ≤ 4 + 2p for any padding p,
    H ≠ W and Cin ≠ Cout, so a swapped axis cannot pass."""
    return [(2, 5, 4, 2), (3, 3, 2, 3)]


def conv_case(rng: np.random.Generator) -> Case:
    """Stride 1–3, padding 0–2, kernel 1–3, and H, W up to 5 but at least K − 2p."""
    stride, padding, kernel = (int(x) for x in rng.integers([1, 0, 1], [4, 3, 4]))
    h, w = (int(x) for x in rng.integers(max(1, kernel - 2 * padding), 6, 2))
    n, c_in, c_out = (int(x) for x in rng.integers(1, [3, 4, 4]))
    params = {"stride": stride, "padding": padding}
    return params, [(n, h, w, c_in), (kernel, kernel, c_in, c_out)]


def channels_first(make: Any) -> Any:
    """`make` (a shapes_for or a random case) with its image shape (the first) as NCHW."""

    def nchw(image: Shape) -> Shape:
        n, h, w, c = image
        return (n, c, h, w)

    def made(arg: Any) -> Any:
        result = make(arg)
        if isinstance(result, tuple):  # a random case: (parameters, shapes)
            params, shapes = result
            return params, [nchw(shapes[0]), *shapes[1:]]
        return [nchw(result[0]), *result[1:]]

    return made
