"""Ops on tuples of tensors: make_tuple, tuple_get_item, and stack / split, which recurrent
layers use to walk a sequence step by step.

`stack` turns a TensorTuple into one tensor and `split` one tensor into a TensorTuple; each
is the other's gradient. Both are registered: the checker gives stack its inputs as one
sequence (`tuple_input`) and checks split's tuple under a tuple of cotangents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from needle.autograd import Tensor, TensorOp, TensorTuple, TensorTupleOp
from needle.backend_ndarray import api
from needle.errors import UsageError
from needle.ops.registry import OpParam, Shape, random_shape, register


class MakeTensorTuple(TensorTupleOp):
    """(a₀, …, aₙ₋₁) as one TensorTuple; the gradient hands element i of out_grad to aᵢ."""

    def compute(self, *arrays: Any) -> tuple[Any, ...]:
        return arrays

    def gradient(self, out_grad: TensorTuple, node: TensorTuple):
        return out_grad.tuple()


def make_tuple(*tensors: Tensor) -> TensorTuple:
    """The tensors as one TensorTuple."""
    return MakeTensorTuple()(*tensors)


class TupleGetItem(TensorOp):
    """Element `index` of a TensorTuple.

    Reading from a tuple just made by `make_tuple` returns the tensor it was made from, with
    no node in between (`fold_const=False` keeps the node).
    """

    def __init__(self, index: int):
        self.index = index

    def __call__(self, a: TensorTuple, fold_const: bool = True) -> Tensor:
        if fold_const and isinstance(a.op, MakeTensorTuple):
            return a.inputs[self.index]
        return Tensor.make_from_op(self, [a])

    def compute(self, a: tuple[Any, ...]) -> Any:
        return a[self.index]

    def gradient(self, out_grad: Tensor, node: Tensor):
        """out_grad at `index`, zeros at every other element. (The backward pass adds out_grad
        to that one element directly; see `compute_gradient_of_variables`.)"""
        elements = node.inputs[0].cached_data
        return make_tuple(
            *[
                out_grad
                if i == self.index % len(elements)
                else Tensor.make_const(api(x).zeros_like(x))
                for i, x in enumerate(elements)
            ]
        )


def tuple_get_item(t: TensorTuple, index: int) -> Tensor:
    """Element `index` of `t` (negative counts from the end)."""
    if not isinstance(t, TensorTuple):
        raise UsageError(f"tuple_get_item needs a TensorTuple, got {type(t).__name__}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise UsageError(f"a TensorTuple index must be an integer (got {index!r})")
    if not -len(t) <= index < len(t):
        raise UsageError(f"index {index} is out of range for a TensorTuple of {len(t)} tensors")
    return TupleGetItem(int(index) % len(t))(t)


def _axis(axis: int, ndim: int, op: str) -> int:
    """`axis` as a non-negative int below `ndim`, refused otherwise."""
    if (
        isinstance(axis, bool)
        or not isinstance(axis, (int, np.integer))
        or not -ndim <= axis < ndim
    ):
        raise UsageError(f"{op}: axis {axis!r} is out of range; valid: {-ndim} to {ndim - 1}")
    return int(axis) % ndim


class Stack(TensorOp):
    """Tensors of one shape (as a TensorTuple) stacked along a new axis `axis` (0…ndim):
    out[…, i, …] = aᵢ. The gradient splits out_grad along that axis."""

    def __init__(self, axis: int):
        self.axis = axis

    def compute(self, arrays: tuple[Any, ...]) -> Any:
        if not arrays:
            raise UsageError("stack needs at least one tensor")
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise UsageError(f"stack needs tensors of one shape, got {sorted(shapes)}")
        first = arrays[0]
        return api(first).stack(arrays, axis=_axis(self.axis, first.ndim + 1, "stack"))

    def gradient(self, out_grad: Tensor, node: Tensor):
        return split(out_grad, self.axis)


def _stack_case(rng: np.random.Generator) -> tuple[dict[str, Any], list[Shape]]:
    shape = random_shape(rng, 0, 3)
    return {"axis": int(rng.integers(-len(shape) - 1, len(shape) + 1))}, [shape] * 3


@register(
    Stack,
    n_inputs=3,
    tuple_input=True,
    params=[OpParam("axis", "int", "where the new axis goes, 0 to ndim (negative from the end)")],
    shapes_for=lambda p: [(2, 3)] * 3,
    random_case=_stack_case,
    settings=[{"axis": 0}, {"axis": 1}, {"axis": -1}],
)
def stack(args: Sequence[Tensor] | TensorTuple, axis: int) -> Tensor:
    """The tensors of `args` (a list, tuple or TensorTuple) stacked along a new axis `axis`."""
    return Stack(axis)(args if isinstance(args, TensorTuple) else make_tuple(*args))


class Split(TensorTupleOp):
    """The a.shape[axis] slices of `a` along `axis`, that axis removed, as a TensorTuple
    (views of `a`). The gradient stacks out_grad back along it."""

    def __init__(self, axis: int):
        self.axis = axis

    def compute(self, a: Any) -> tuple[Any, ...]:
        return api(a).unstack(a, _axis(self.axis, a.ndim, "split"))

    def gradient(self, out_grad: TensorTuple, node: TensorTuple):
        return stack(out_grad, self.axis)


def _split_case(rng: np.random.Generator) -> tuple[dict[str, Any], list[Shape]]:
    shape = random_shape(rng, 1, 3)
    return {"axis": int(rng.integers(-len(shape), len(shape)))}, [shape]


@register(
    Split,
    params=[OpParam("axis", "int", "the axis to cut along (negative from the end)")],
    shapes_for=lambda p: [(2, 3, 4)],
    random_case=_split_case,
    settings=[{"axis": 0}, {"axis": 1}, {"axis": -1}],
)
def split(a: Tensor, axis: int) -> TensorTuple:
    """`a` cut along `axis` into a.shape[axis] tensors, each without that axis."""
    return Split(axis)(a)
