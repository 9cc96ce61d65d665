"""Ops that move or reduce elements: transpose, reshape, broadcast_to, summation, sum_to_shape.

`broadcast_to` and `sum_to_shape` are each other's adjoints: `sum_to_shape` is the one place
that reduces a broadcast gradient back to an input's shape.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from needle.autograd import Tensor, TensorOp
from needle.backend_ndarray import api
from needle.errors import UsageError
from needle.ops.registry import (
    OpParam,
    Setting,
    as_axes,
    broadcastable_pair,
    normalize_axes,
    random_axes,
    random_shape,
    register,
)

Axes = int | tuple[int, ...] | None


def keepdims_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    """`shape` with each reduced axis kept as size 1."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Transpose(TensorOp):
    """Swap two axes (default: the last two)."""

    def __init__(self, axes: tuple[int, int] | None = None):
        self.axes = as_axes(axes)

    def _pair(self, ndim: int) -> tuple[int, int]:
        if self.axes is None:
            if ndim < 2:
                raise UsageError(f"transpose needs at least 2 axes, got an input with {ndim}")
            return ndim - 2, ndim - 1
        if len(self.axes) != 2:
            raise UsageError(f"transpose swaps exactly two axes, got axes={self.axes}")
        first, second = normalize_axes(self.axes[0], ndim) + normalize_axes(self.axes[1], ndim)
        return first, second

    def compute(self, a: Any) -> Any:
        if self.axes is None and a.ndim == 2:  # a matrix (every matmul gradient)
            return api(a).swapaxes(a, 0, 1)
        return api(a).swapaxes(a, *self._pair(a.ndim))

    def gradient(self, out_grad: Tensor, node: Tensor):
        return transpose(out_grad, self.axes)


def _transpose_case(rng: np.random.Generator):
    shape = random_shape(rng, 2, 4)
    if rng.random() < 0.3:
        return {"axes": None}, [shape]
    first, second = (int(a) for a in rng.permutation(len(shape))[:2])
    return {"axes": (first, second - len(shape) if rng.random() < 0.3 else second)}, [shape]


@register(
    Transpose,
    params=[OpParam("axes", "axis_pair", "the two axes to swap, e.g. --axes 0,2", default=None)],
    shapes_for=lambda p: [(2, 3, 4)],
    random_case=_transpose_case,
    settings=[{"axes": None}, {"axes": (0, 2)}, {"axes": (1, -1)}],
)
def transpose(a: Tensor, axes: tuple[int, int] | None = None) -> Tensor:
    """Swap two axes of a (default: the last two)."""
    return Transpose(axes)(a)


@functools.lru_cache(maxsize=256)
def _permutation(axes: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """`axes` as non-negative axes of an `ndim`-axis input, refused unless they name each
    axis once. Cached: NCHW ↔ NHWC runs twice around every conv on every step."""
    order = normalize_axes(axes, ndim) if axes else ()
    if len(axes) != ndim or sorted(order) != list(range(ndim)):
        raise UsageError(f"permute needs each of the input's {ndim} axes once, got axes={axes}")
    return tuple(axis % ndim for axis in axes)


class Permute(TensorOp):
    """Reorder every axis: output axis i is input axis `axes[i]` (numpy's `transpose(a, axes)`).

    Gradient: the inverse permutation of out_grad. One node where a chain of two-axis swaps
    would be several: NCHW ↔ NHWC around every convolution is one permute each way.
    """

    def __init__(self, axes: tuple[int, ...]):
        self.axes = tuple(int(axis) for axis in as_axes(axes))

    def _order(self, ndim: int) -> tuple[int, ...]:
        return _permutation(self.axes, ndim)

    def compute(self, a: Any) -> Any:
        return api(a).transpose(a, self._order(a.ndim))

    def gradient(self, out_grad: Tensor, node: Tensor):
        order = self._order(node.ndim)
        return permute(out_grad, tuple(order.index(axis) for axis in range(len(order))))


def _permute_case(rng: np.random.Generator):
    shape = random_shape(rng, 1, 4)
    return {"axes": tuple(int(axis) for axis in rng.permutation(len(shape)))}, [shape]


@register(
    Permute,
    params=[OpParam("axes", "axes", "the new order of every axis, e.g. --axes 0,2,3,1")],
    shapes_for=lambda p: [tuple(range(2, 2 + len(p["axes"])))],
    random_case=_permute_case,
    settings=[{"axes": (0, 2, 3, 1)}, {"axes": (0, 3, 1, 2)}, {"axes": (2, 0, 1)}],
)
def permute(a: Tensor, axes: tuple[int, ...]) -> Tensor:
    """a with its axes in the order `axes` (a permutation of every axis)."""
    return Permute(axes)(a)


class Reshape(TensorOp):
    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(shape)

    def compute(self, a: Any) -> Any:
        try:
            return api(a).reshape(a, self.shape)
        except ValueError:
            raise UsageError(
                f"cannot reshape an input of shape {a.shape} to {self.shape}"
            ) from None

    def gradient(self, out_grad: Tensor, node: Tensor):
        return reshape(out_grad, node.inputs[0].shape)


def _reshape_case(rng: np.random.Generator):
    shape = random_shape(rng, 1, 4)
    dims = [int(d) for d in rng.permutation(shape)]
    target: list[int] = []
    for d in dims:
        if target and rng.random() < 0.5:
            target[-1] *= d
        else:
            target.append(d)
    if rng.random() < 0.3:
        target.insert(int(rng.integers(0, len(target) + 1)), 1)
    return {"shape": tuple(target)}, [shape]


@register(
    Reshape,
    params=[OpParam("shape", "shape", "the new shape, same number of elements, e.g. --shape 4,3")],
    shapes_for=lambda p: [(int(np.prod(p["shape"])),)],
    random_case=_reshape_case,
    settings=[{"shape": (4, 3)}, {"shape": (2, 1, 6)}],
)
def reshape(a: Tensor, shape: tuple[int, ...]) -> Tensor:
    """a with a new shape holding the same elements."""
    return Reshape(shape)(a)


class BroadcastTo(TensorOp):
    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(shape)

    def compute(self, a: Any) -> Any:
        if a.shape == self.shape:
            return a
        try:
            return api(a).broadcast_to(a, self.shape)
        except ValueError:
            raise UsageError(
                f"cannot broadcast an input of shape {a.shape} to {self.shape}"
            ) from None

    def gradient(self, out_grad: Tensor, node: Tensor):
        return sum_to_shape(out_grad, node.inputs[0].shape)


def _broadcast_case(rng: np.random.Generator):
    full, part = broadcastable_pair(rng)
    if len(part) > len(full) or any(
        p not in (1, f) for p, f in zip(part[::-1], full[::-1], strict=False)
    ):
        full, part = part, full
    return {"shape": full}, [part]


def _broadcast_shapes(params: dict[str, Any]) -> list[tuple[int, ...]]:
    # The target with its first axis dropped and its last stretched from 1.
    target = tuple(params["shape"])
    part = target[1:] if len(target) > 1 else target
    return [part[:-1] + (1,) if part else ()]


@register(
    BroadcastTo,
    params=[OpParam("shape", "shape", "the target shape, e.g. --shape 3,4")],
    shapes_for=_broadcast_shapes,
    random_case=_broadcast_case,
    settings=[
        {"shape": (3, 4)},
        Setting({"shape": (2, 3, 4)}, ((3, 1),)),
        Setting({"shape": (3, 4)}, ((),)),
        Setting({"shape": (5,)}, ((1,),)),
    ],
)
def broadcast_to(a: Tensor, shape: tuple[int, ...]) -> Tensor:
    """a broadcast to `shape` by numpy's rules."""
    return BroadcastTo(shape)(a)


AXES = OpParam(
    "axes",
    "axes",
    "axes to reduce: an int, a tuple, or none for all, e.g. --axes 0,1",
    default=None,
)


def _reduction_case(rng: np.random.Generator):
    shape = random_shape(rng, 1, 3)
    return {"axes": random_axes(rng, len(shape))}, [shape]


def register_reduction(op_class: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`register` for an op that reduces over `axes` (summation, logsumexp, softmax): the
    `axes` option, random axes of a random shape, and settings from all axes, through single,
    negative and several axes, to a 3-D input."""
    return register(
        op_class,
        params=[AXES],
        random_case=_reduction_case,
        settings=[
            {"axes": None},
            {"axes": 0},
            {"axes": 1},
            {"axes": (0, 1)},
            {"axes": -1},
            Setting({"axes": (0, 2)}, ((2, 3, 4),)),
        ],
    )


class Summation(TensorOp):
    """Σ over `axes` (an int, a tuple, or None for all); reduced axes are dropped."""

    def __init__(self, axes: Axes = None):
        self.axes = as_axes(axes)

    def compute(self, a: Any) -> Any:
        return api(a).sum(a, axis=normalize_axes(self.axes, a.ndim))

    def gradient(self, out_grad: Tensor, node: Tensor):
        shape = node.inputs[0].shape
        axes = normalize_axes(self.axes, len(shape))
        if axes != tuple(range(len(axes))):  # reduced axes in the middle or at the end:
            out_grad = reshape(out_grad, keepdims_shape(shape, axes))  # keep them as size 1
        # Leading reduced axes need no reshape: broadcasting adds them back by itself.
        return broadcast_to(out_grad, shape)


@register_reduction(Summation)
def summation(a: Tensor, axes: Axes = None) -> Tensor:
    """Sum of a over `axes`."""
    return Summation(axes)(a)


class SumToShape(TensorOp):
    """The adjoint of `broadcast_to`: sum `a` down to `shape`, a shape that broadcasts to
    `a.shape`, over the leading axes broadcasting would add and the size-1 axes it would
    stretch. Every broadcasting op's gradient goes back to its input's shape through it."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(shape)

    def compute(self, a: Any) -> Any:
        xp = api(a)
        summed = xp.sum(a, axis=_summed_axes(a.shape, self.shape), keepdims=True)
        return xp.reshape(summed, self.shape)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return broadcast_to(out_grad, node.inputs[0].shape)


@functools.lru_cache(maxsize=1024)
def _summed_axes(shape: tuple[int, ...], target: tuple[int, ...]) -> tuple[int, ...]:
    """The axes to sum `shape` over to get `target`: the leading axes broadcasting adds to
    `target`, and its size-1 axes that broadcasting stretches."""
    lead = len(shape) - len(target)
    if lead < 0 or any(n not in (1, m) for n, m in zip(target, shape[lead:], strict=True)):
        raise UsageError(f"cannot sum an input of shape {shape} to {target}")
    stretched = (lead + i for i, n in enumerate(target) if n == 1 and shape[lead + i] != 1)
    return tuple(range(lead)) + tuple(stretched)


def _sum_to_shape_case(rng: np.random.Generator):
    params, [shape] = _broadcast_case(rng)
    return {"shape": shape}, [params["shape"]]


def _sum_to_shape_shapes(params: dict[str, Any]) -> list[tuple[int, ...]]:
    # A leading axis added and every size-1 axis stretched to 3.
    return [(2, *(3 if n == 1 else n for n in params["shape"]))]


@register(
    SumToShape,
    params=[OpParam("shape", "shape", "the shape to sum down to, e.g. --shape 1,4")],
    shapes_for=_sum_to_shape_shapes,
    random_case=_sum_to_shape_case,
    settings=[
        {"shape": (1, 4)},
        Setting({"shape": (3, 1)}, ((2, 3, 4),)),
        Setting({"shape": ()}, ((3, 4),)),
        Setting({"shape": (4,)}, ((3, 4),)),
    ],
)
def sum_to_shape(a: Tensor, shape: tuple[int, ...]) -> Tensor:
    """a summed down to `shape`, the shape it was broadcast from (broadcast_to's adjoint)."""
    if a.shape == tuple(shape):  # nothing was broadcast: no node
        return a
    return SumToShape(shape)(a)
