"""standardize: (x − μ) / √(σ² + eps) over some axes, the core of batch and layer norm, as
one op.

Written as a chain of elementwise ops and reductions, a batch norm's forward pass is about
fourteen graph nodes, a temporary the size of its input for each, and its backward pass
twice as many. `Standardize` computes x̂ in one node, keeping the statistics; its gradient
is one node too, `StandardizeGrad`, computed from x̂ (the output itself) and r = 1/√(σ² +
eps) (`InverseStd`, a node holding the value the forward pass found):

    ∂x = r · (u − mean(u) − x̂ · mean(u · x̂))            (means over the standardized axes)

With a scale and a shift (a batch norm's weight and bias), their gradients Σ u · x̂ and
Σ u are the two sums that gradient takes anyway: `StandardizeGrad` hands them to two
`GroupSum` nodes, so the backward pass takes no sum and no product twice. A batch norm's
backward runs that composition on arrays, in one node (`AffineStandardizeGrad`, the same
bits), and takes the composition itself only for second derivatives.

That gradient is a function of (u, x̂, r) with a gradient of its own written in needle ops
(`StandardizeGrad.gradient`), and x̂ and r are nodes of x, so standardize can be
differentiated again, to any order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from needle.autograd import Tensor, TensorOp, TensorTuple, TensorTupleOp
from needle.backend_ndarray import api
from needle.backward import fused_vjp_gradient
from needle.errors import UsageError
from needle.ops.registry import (
    OpParam,
    Setting,
    as_axes,
    distinct,
    normalize_axes,
    random_shape,
    register,
)
from needle.ops.shape import broadcast_to, keepdims_shape, reshape, summation

Axes = int | tuple[int, ...] | None


def _count(shape: tuple[int, ...], axes: tuple[int, ...]) -> int:
    """How many entries each standardized group has: the product of the sizes of `axes`."""
    return math.prod(shape[i] for i in axes)


def _statistics(x: Any, axes: tuple[int, ...], eps: float) -> tuple[Any, Any, Any, Any, Any]:
    """x − μ, the mean μ, the biased variance and r = 1/√(σ² + eps) of `x` over `axes`, the
    statistics with the standardized axes kept as size 1; and (x − μ)², the variance's
    temporary, which the caller may write over."""
    xp, count = api(x), _count(x.shape, axes)
    mean = xp.divide(xp.sum(x, axis=axes, keepdims=True), count)
    centered = xp.subtract(x, mean)
    squares = xp.multiply(centered, centered)
    var = xp.divide(xp.sum(squares, axis=axes, keepdims=True), count)
    return centered, mean, var, xp.divide(1.0, xp.sqrt(xp.add(var, eps))), squares


def _spare(buffer: Any, *operands: Any) -> Any:
    """`buffer`, a temporary of the caller's that it is done with, as the `out=` of an
    elementwise op on `operands` when they all have its dtype (the result's dtype then);
    else None: a new array, in the dtype numpy's promotion gives. Writing into a spent
    temporary instead of a new array of the input's size is the same arithmetic; at the
    MNIST CNN's first batch norm (batch 128, 6.4 MB an array) it kept 8 MB off the training
    step's peak and about 1–2 % off its time."""
    dtype = buffer.dtype
    for operand in operands:  # a loop, not all(generator): six calls a batch norm step
        if operand.dtype != dtype:
            return None
    return buffer


class GroupLayout:
    """How the per-group ops (standardize, normalize) compute on an input of one shape and
    memory order: as the (M, C) rows of its memory when it has a single kept axis and that
    axis is innermost there (a numpy array only: BatchNorm2d's NCHW view of a conv's NHWC
    output, a batch of rows), so that every broadcast is a (C,) row against the rows,
    numpy's fastest form (an NCHW view broadcast against (1, C, 1, 1) took 1.3× as long at
    the MNIST CNN's first layer); else as it is, reducing over the standardized axes."""

    def __init__(self, a: Any, axes: tuple[int, ...]):
        self.shape, self.keep = a.shape, keepdims_shape(a.shape, axes)
        self.groups = tuple(n for i, n in enumerate(a.shape) if i not in axes)  # axes dropped
        self.count = _count(a.shape, axes)  # entries in each group
        self.order = order = _row_order(a, axes)
        self.axes = (0,) if order is not None else axes
        if order is not None:
            self.memory_shape = tuple(self.shape[i] for i in order)
            self.inverse = tuple(order.index(axis) for axis in range(len(order)))

    @classmethod
    def of(cls, a: Any, axes: tuple[int, ...]) -> GroupLayout:
        """The layout of `a`, made once per shape, memory order and axes (every batch norm
        asks for the same few on every step)."""
        numpy_array = type(a) is np.ndarray
        key = (a.shape, a.strides, a.itemsize, axes) if numpy_array else (a.shape, axes)
        layout = _LAYOUTS.get(key)
        if layout is None:
            if len(_LAYOUTS) >= 256:
                _LAYOUTS.clear()
            layout = _LAYOUTS[key] = cls(a, axes)
        return layout

    def rows(self, b: Any) -> Any:
        """`b` (of the input's shape) in the computing form: a view when b has the input's
        memory order, else one copy into it."""
        if self.order is None:
            return b
        return b.transpose(self.order).reshape(-1, self.memory_shape[-1])

    def back(self, m: Any) -> Any:
        """An array in the computing form, in the input's shape (a view)."""
        if self.order is None:
            return m
        return m.reshape(self.memory_shape).transpose(self.inverse)

    def per_group(self, s: Any) -> Any:
        """A per-group array (the statistics' shape, or the kept axis alone) in the form
        that broadcasts against the computing form."""
        return api(s).reshape(s, (1, -1) if self.order is not None else self.keep)


_LAYOUTS: dict[tuple, GroupLayout] = {}


def _row_order(a: Any, axes: tuple[int, ...]) -> tuple[int, ...] | None:
    """The standardized axes by stride, then the one kept axis, when that order lays a numpy
    array out row-major; else None."""
    if type(a) is not np.ndarray or a.ndim - len(axes) != 1 or a.ndim < 2:
        return None
    kept = next(i for i in range(a.ndim) if i not in axes)
    order = (*sorted(axes, key=lambda i: -a.strides[i]), kept)
    return order if a.transpose(order).flags.c_contiguous else None


def _standardized(x: Any, axes: Axes, eps: float, scale: Any, shift: Any) -> tuple:
    """`Standardize`'s arrays: (the output, μ and σ² with the standardized axes kept as
    size 1, (r, x̂) for the gradient; x̂ None when it is the output itself)."""
    axes = normalize_axes(axes, x.ndim)
    layout, xp = GroupLayout.of(x, axes), api(x)
    if scale is not None:
        for name, given in (("scale", scale), ("shift", shift)):
            if given.shape != layout.groups and given.shape != layout.keep:
                raise UsageError(
                    f"standardize: the {name} has shape {given.shape}; one per group "
                    f"over axes {axes} of an input of shape {x.shape} is {layout.keep} "
                    f"or {layout.groups}"
                )
    centered, mean, var, inverse_std, squares = _statistics(layout.rows(x), layout.axes, eps)
    mean, var, r = (xp.reshape(stat, layout.keep) for stat in (mean, var, inverse_std))
    # x − μ and (x − μ)² are spent: x̂ and the output are written over them.
    x_hat = xp.multiply(centered, inverse_std, out=_spare(centered, inverse_std))
    if scale is None:
        return layout.back(x_hat), mean, var, (r, None)
    scale_row, shift_row = layout.per_group(scale), layout.per_group(shift)
    scaled = xp.multiply(x_hat, scale_row, out=_spare(squares, x_hat, scale_row))
    out = layout.back(xp.add(scaled, shift_row, out=_spare(scaled, shift_row)))
    return out, mean, var, (r, layout.back(x_hat))


class Standardize(TensorOp):
    """x̂ = (x − μ) · r, r = 1/√(σ² + eps), with the mean μ and the biased variance σ² of x
    over `axes` (None: all). After the call, `mean` and `var` hold the statistics (with the
    standardized axes kept as size 1): a batch norm's running averages are made of them.

    With two more inputs, a `scale` s and a `shift` t, one per group (as a batch norm's
    weight and bias are per channel: of the statistics' shape, or of the input's shape
    without the standardized axes), the output is x̂ · s + t, in the same node. `value`,
    when given, is x̂ already computed, taken instead of a recompute (the gradient of
    x̂ · s + t needs x̂ as a node of x).
    """

    def __init__(self, axes: Axes, eps: float = 1e-5, *, value: Any = None, fused: bool = True):
        self.axes = as_axes(axes)
        if not eps >= 0:
            raise UsageError(f"standardize: eps must be ≥ 0 (got {eps!r})")
        self.eps = float(eps)
        self.mean = self.var = None
        self.value = value
        self.fused = fused  # with a scale: the gradient as one node (False: the composition)

    def compute(self, x: Any, scale: Any = None, shift: Any = None) -> Any:
        known, self.value = self.value, None  # the given x̂ stands for one call
        if known is not None:
            return known
        out, self.mean, self.var, kept = _standardized(x, self.axes, self.eps, scale, shift)
        self.keep((x,) if scale is None else (x, scale, shift), kept)  # for the gradient
        return out

    def gradient(self, out_grad: Tensor, node: Tensor):
        x = node.inputs[0]
        # The forward pass's r and x̂, handed over once; a second backward pass recomputes.
        known_r, known_x_hat = self.kept(node) or (None, None)
        if len(node.inputs) == 3 and self.fused:
            grads = AffineStandardizeGrad(self.axes, self.eps, (known_r, known_x_hat))
            return grads(*node.inputs, out_grad).tuple()
        r = InverseStd(self.axes, self.eps, value=known_r)(x)
        if len(node.inputs) == 1:
            return StandardizeGrad(self.axes)(out_grad, node, r)
        # y = x̂ · s + t: s is constant over each group, so ∂x is standardize's gradient
        # with r · s for r, and no pass multiplies out_grad by s first.
        scale, shift = node.inputs[1:]
        x_hat = Standardize(self.axes, self.eps, value=known_x_hat)(x)
        axes = normalize_axes(self.axes, x.ndim)
        grad_op = StandardizeGrad(self.axes)
        grad_x = grad_op(out_grad, x_hat, r * _shaped(scale, r.shape))
        # Σ u·x̂ and Σ u are the sums the gradient of x just took: handed over, not redone.
        sum_ux, sum_u = grad_op.sums
        grad_scale = _shaped(GroupSum(axes, value=sum_ux)(out_grad, x_hat), scale.shape)
        grad_shift = _shaped(GroupSum(axes, value=sum_u)(out_grad), shift.shape)
        return grad_x, grad_scale, grad_shift


class AffineStandardizeGrad(TensorTupleOp):
    """(x, scale, shift, u) → the gradients of x̂ · scale + shift in x, scale and shift under
    the out_grad u, in one node: `Standardize.gradient`'s composition (InverseStd, x̂,
    r · scale, StandardizeGrad, two GroupSums: seven nodes) computed on arrays, the same
    bits. `kept`: the forward pass's (r, x̂), else they are computed again.

    Its own gradient, for second derivatives, is that composition's (`fused_vjp_gradient`)."""

    def __init__(self, axes: Axes, eps: float, kept: tuple[Any, Any] = (None, None)):
        self.axes, self.eps, self.kept_arrays = axes, eps, kept

    def compute(self, x: Any, scale: Any, shift: Any, u: Any) -> tuple[Any, Any, Any]:
        (r, x_hat), self.kept_arrays = self.kept_arrays, (None, None)
        if r is None or x_hat is None:
            r, x_hat = _standardized(x, self.axes, self.eps, scale, shift)[3]
        xp = api(u)
        grad = StandardizeGrad(self.axes)
        grad_x = grad.compute(u, x_hat, xp.multiply(r, xp.reshape(scale, r.shape)))
        sum_ux, sum_u = grad.sums
        return grad_x, xp.reshape(sum_ux, scale.shape), xp.reshape(sum_u, shift.shape)

    def gradient(self, out_grad: TensorTuple, node: TensorTuple):
        def composition(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
            return Standardize(self.axes, self.eps, fused=False)(x, scale, shift)

        return fused_vjp_gradient(composition, node.inputs, 3, out_grad)


def _shaped(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """`t` reshaped to `shape`: itself when it has that shape already (no node)."""
    return t if t.shape == shape else reshape(t, shape)


class InverseStd(TensorOp):
    """r = 1/√(σ² + eps) of x over `axes`, the standardized axes kept as size 1; `value`,
    when given, is r already computed (by `Standardize`) and taken instead of a recompute.

    ∂r/∂x = −r² · x̂ / count: the gradient standardizes x again (only a second derivative
    of standardize gets here)."""

    def __init__(self, axes: Axes, eps: float, *, value: Any = None):
        self.axes, self.eps, self.value = axes, eps, value

    def compute(self, x: Any) -> Any:
        value, self.value = self.value, None
        if value is not None:
            return value
        return _statistics(x, normalize_axes(self.axes, x.ndim), self.eps)[3]

    def gradient(self, out_grad: Tensor, node: Tensor):
        x = node.inputs[0]
        count = _count(x.shape, normalize_axes(self.axes, x.ndim))
        x_hat = Standardize(self.axes, self.eps)(x)
        return -broadcast_to(out_grad * node * node / count, x.shape) * x_hat


class StandardizeGrad(TensorOp):
    """standardize's gradient: for an out_grad u, x̂ and r (r with the standardized axes
    kept as size 1),

        r · (u − mean(u) − x̂ · mean(u · x̂)),     means over `axes`.

    Its gradient, for a cotangent v: in u the same map of v (it is self-adjoint); in x̂
    −r · (v · mean(u · x̂) + u · mean(v · x̂)); in r, Σ over `axes` of v · (u − mean(u) −
    x̂ · mean(u · x̂))."""

    sums: tuple[Any, Any] | None = None

    def __init__(self, axes: Axes):
        self.axes = axes

    def compute(self, u: Any, x_hat: Any, r: Any) -> Any:
        xp = api(u)
        layout = GroupLayout.of(x_hat, normalize_axes(self.axes, u.ndim))  # u into x̂'s order
        u, x_hat, axes = layout.rows(u), layout.rows(x_hat), layout.axes
        sum_u = xp.sum(u, axis=axes, keepdims=True)
        products = xp.multiply(u, x_hat)
        sum_ux = xp.sum(products, axis=axes, keepdims=True)
        # Kept for the scale's and the shift's gradients (`GroupSum`), the axes dropped.
        self.sums = (xp.reshape(sum_ux, layout.groups), xp.reshape(sum_u, layout.groups))
        mean_u, mean_ux = xp.divide(sum_u, layout.count), xp.divide(sum_ux, layout.count)
        # u · x̂ is spent once summed, and each difference once taken (`_spare`).
        along = xp.multiply(x_hat, mean_ux, out=_spare(products, x_hat, mean_ux))
        projected = xp.subtract(u, mean_u)
        projected = xp.subtract(projected, along, out=_spare(projected, along))
        r_row = layout.per_group(r)
        return layout.back(xp.multiply(projected, r_row, out=_spare(projected, r_row)))

    def gradient(self, out_grad: Tensor, node: Tensor):
        u, x_hat, r = node.inputs
        shape, axes = u.shape, normalize_axes(self.axes, u.ndim)
        count = _count(shape, axes)

        def mean(t: Tensor) -> Tensor:  # over the standardized axes, broadcast back
            kept = reshape(summation(t, axes) / count, keepdims_shape(shape, axes))
            return broadcast_to(kept, shape)

        v, r_wide = out_grad, broadcast_to(r, shape)
        grad_u = StandardizeGrad(self.axes)(v, x_hat, r)
        grad_x_hat = -r_wide * (v * mean(u * x_hat) + u * mean(v * x_hat))
        projected = u - mean(u) - x_hat * mean(u * x_hat)
        grad_r = reshape(summation(v * projected, axes), r.shape)
        return grad_u, grad_x_hat, grad_r


class GroupSum(TensorOp):
    """Σ over `axes` of u, or of u · x̂ when given x̂ too, the summed axes dropped: a batch
    norm's shift and scale gradients. `value`, when given, is that sum already taken (by
    `StandardizeGrad`, which needs both) and taken instead of a recompute.

    Linear in each input, so for a cotangent v broadcast back over `axes`, the gradient is
    v (of Σ u), or (v · x̂, v · u) (of Σ u · x̂)."""

    def __init__(self, axes: tuple[int, ...], *, value: Any = None):
        self.axes, self.value = axes, value

    def compute(self, u: Any, x_hat: Any = None) -> Any:
        value, self.value = self.value, None
        if value is not None:
            return value
        xp = api(u)
        return xp.sum(u if x_hat is None else xp.multiply(u, x_hat), axis=self.axes)

    def gradient(self, out_grad: Tensor, node: Tensor):
        shape = node.inputs[0].shape
        v = broadcast_to(reshape(out_grad, keepdims_shape(shape, self.axes)), shape)
        if len(node.inputs) == 1:
            return v
        u, x_hat = node.inputs
        return v * x_hat, v * u


def _standardize_case(rng: np.random.Generator):
    """A shape of 1–3 axes (sizes 1–4), a random non-empty set of its axes, and eps 0.1 or
    1. The inputs are drawn `distinct`. (A group of two nearly equal draws has an x̂ far
    smaller than x, so the rounding of x − μ, of x's size, swamps a central difference's
    tolerance, which is scaled to the output: at eps 1e-5 √(σ² + eps) nears the step itself,
    and at eps 0.1 two draws 0.012 apart were 6× over. A flaw of the numerical side, not of
    the gradient.)"""
    shape = random_shape(rng, 1, 3)
    chosen = [axis for axis in range(len(shape)) if rng.random() < 0.5]
    axes = tuple(chosen) or (int(rng.integers(len(shape))),)
    return {"axes": axes, "eps": float(rng.choice([0.1, 1.0]))}, [shape]


@register(
    Standardize,
    params=[
        OpParam("axes", "axes", "the axes to standardize over, e.g. --axes 0", default=(0,)),
        OpParam("eps", "scalar", "added to the variance, e.g. --eps 1e-5", default=1e-5),
    ],
    shapes_for=lambda p: [(4, 3)],
    random_case=_standardize_case,
    draws=[distinct],
    settings=[
        {"axes": (0,), "eps": 1e-5},
        {"axes": (1,), "eps": 1e-5},
        Setting({"axes": (0, 1, 2), "eps": 0.1}, ((3, 2, 2, 2),)),
        Setting({"axes": (2,), "eps": 1e-5}, ((2, 3, 4),)),
    ],
)
def standardize(
    x: Tensor,
    axes: Axes = (0,),
    eps: float = 1e-5,
    *,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
) -> Tensor:
    """(x − mean) / √(var + eps) over `axes`: batch norm over axis 0, layer norm over −1."""
    if scale is None and shift is None:
        return Standardize(axes, eps)(x)
    if scale is None or shift is None:
        raise UsageError("standardize takes a scale and a shift together, or neither")
    return Standardize(axes, eps)(x, scale, shift)
