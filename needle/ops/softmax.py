"""LogSumExp and LogSoftmax, stable for inputs of any magnitude."""

from __future__ import annotations

from typing import Any

import numpy as np

from needle.autograd import Tensor, TensorOp
from needle.backend_ndarray import api
from needle.errors import UsageError
from needle.ops.elementwise import exp
from needle.ops.registry import as_axes, normalize_axes, random_shape, register
from needle.ops.shape import (
    Axes,
    keepdims_shape,
    register_reduction,
    reshape,
    sum_to_shape,
    summation,
)


def _shift(z: Any, axes: tuple[int, ...]) -> tuple[Any, bool]:
    """The maximum over `axes` (kept as size-1 axes), or 0 where that maximum is ±inf; and
    whether every slice had a finite maximum.

    Subtracting it keeps every exponent ≤ 0, so nothing overflows at 1e30. An infinite
    maximum (a slice of all −inf, or a +inf entry) is not subtracted: it would turn the
    slice into nan, where the right answers are −inf and +inf. An empty input has no
    maximum (numpy refuses to take one) and gets 0 too: a sum over no entries is 0, log −inf.
    """
    xp = api(z)
    if z.size == 0:
        return xp.zeros_like(z, shape=keepdims_shape(z.shape, axes)), False
    shift = xp.max(z, axis=axes, keepdims=True)
    finite = xp.isfinite(shift)
    if xp.all(finite):  # the usual case: skip building a replacement array
        return shift, True
    return xp.astype(xp.where(finite, shift, xp.zeros_like(shift)), z.dtype), False


def _log_sum_exp_shifted(shifted: Any, axes: tuple[int, ...], every_finite: bool) -> Any:
    """log Σ exp(shifted) over `axes`, kept as size-1 axes, for `shifted` = z − _shift(z)
    (`every_finite`: its second answer)."""
    xp = api(shifted)
    total = xp.sum(xp.exp(shifted), axis=axes, keepdims=True)
    if every_finite:  # each slice's maximum shifted to 0: its sum holds exp(0) = 1
        return xp.log(total)
    # Only an all −inf slice (every term 0) or an empty one sums to 0: its log is −inf, the
    # right answer, and not worth numpy's warning.
    with xp.errstate(divide="ignore"):
        return xp.log(total)


def _stable_lse(z: Any, axes: tuple[int, ...]) -> Any:
    """log Σ exp(z) over `axes`, kept as size-1 axes."""
    xp = api(z)
    shift, every_finite = _shift(z, axes)
    return xp.add(_log_sum_exp_shifted(xp.subtract(z, shift), axes, every_finite), shift)


class LogSumExp(TensorOp):
    """log Σ_axes exp(z) = log Σ exp(z − max z) + max z.

    Gradient: out_grad · exp(z − lse) = out_grad · softmax(z), with out_grad broadcast back
    over the reduced axes. The softmax op normalizes exp(z − max z) itself rather than using
    the rounded lse: at 1e30 in float32, lse(−1e30, −1e30) rounds to −1e30, and
    exp(z − lse) would give weights 1 and 1 instead of ½ and ½.
    """

    def __init__(self, axes: Axes = None):
        self.axes = as_axes(axes)

    def compute(self, z: Any) -> Any:
        axes = normalize_axes(self.axes, z.ndim)
        lse = _stable_lse(z, axes)
        return api(lse).reshape(lse, [n for i, n in enumerate(z.shape) if i not in axes])

    def gradient(self, out_grad: Tensor, node: Tensor):
        z = node.inputs[0]
        kept = keepdims_shape(z.shape, normalize_axes(self.axes, z.ndim))
        # The product broadcasts out_grad back over the reduced axes.
        return reshape(out_grad, kept) * softmax(z, self.axes)


@register_reduction(LogSumExp)
def logsumexp(a: Tensor, axes: Axes = None) -> Tensor:
    """log Σ exp(a) over `axes`, stable at any magnitude."""
    return LogSumExp(axes)(a)


class LogSoftmax(TensorOp):
    """z − logsumexp(z) over axis 1 of a 2-D input, computed as (z − m) − log Σ exp(z − m)
    with m the row's maximum.

    Subtracting the log-sum-exp after the fact would cancel two huge, rounded numbers:
    1e16 − lse(1e16, 1e16) is 0 in float64, not −log 2. Shifted first, z − m is at most one
    rounding from its true value and the log of a sum in [1, k] is small: nothing huge cancels.

    Gradient: out_grad − softmax(z) · Σ_j out_grad_j, with softmax = exp(output): the output
    is accurate to a few ulps, so its exp is too (1/4 each for a row of four −1e30 entries).
    """

    def compute(self, z: Any) -> Any:
        if z.ndim != 2:
            raise UsageError(f"logsoftmax takes a 2-D input, got shape {z.shape}")
        xp = api(z)
        shift, every_finite = _shift(z, (1,))
        shifted = xp.subtract(z, shift)
        return xp.subtract(shifted, _log_sum_exp_shifted(shifted, (1,), every_finite))

    def gradient(self, out_grad: Tensor, node: Tensor):
        rows = sum_to_shape(out_grad, (node.shape[0], 1))  # each row's Σ_j, kept as a column
        return out_grad - rows * exp(node)  # rows broadcast over each row's entries


def _logsoftmax_case(rng: np.random.Generator):
    return {}, [random_shape(rng, 2, 2)]


@register(LogSoftmax, shapes_for=lambda p: [(3, 5)], random_case=_logsoftmax_case)
def logsoftmax(a: Tensor) -> Tensor:
    """log softmax over axis 1 of a 2-D input, stable at any magnitude."""
    return LogSoftmax()(a)


class Softmax(TensorOp):
    """exp(z) / Σ_axes exp(z), computed as exp(z − max z) / Σ exp(z − max z).

    Gradient: s · (out_grad − Σ_axes out_grad · s), with s the output. It is an op of its
    own, rather than a composition, because it is the gradient of LogSumExp: one node
    instead of ten in every softmax-loss backward pass.
    """

    def __init__(self, axes: Axes = None):
        self.axes = as_axes(axes)

    def compute(self, z: Any) -> Any:
        axes = normalize_axes(self.axes, z.ndim)
        xp = api(z)
        weights = xp.exp(xp.subtract(z, _shift(z, axes)[0]))
        return xp.divide(weights, xp.sum(weights, axis=axes, keepdims=True))

    def gradient(self, out_grad: Tensor, node: Tensor):
        axes = normalize_axes(self.axes, node.ndim)
        kept = keepdims_shape(node.shape, axes)
        dot = reshape(summation(out_grad * node, axes), kept)
        return node * (out_grad - dot)  # dot broadcasts over the reduced axes


@register_reduction(Softmax)
def softmax(a: Tensor, axes: Axes = None) -> Tensor:
    """exp(a) normalized to sum to 1 over `axes`, stable at any magnitude."""
    return Softmax(axes)(a)
