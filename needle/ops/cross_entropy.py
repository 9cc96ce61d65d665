"""The softmax cross-entropy of logits against class indices as one op:
`cross_entropy(z, indices)` = −(1/N) Σᵢ log_softmax(z)ᵢ,indices[i], what `nn.SoftmaxLoss`
computes, for a 2-D z (N, k).

Composed of `logsoftmax`, `take_along_rows`, `summation` and `mul_scalar`, the loss is four
graph nodes forward, and its backward pass six more (a broadcast, the labels' entries put
into a zero matrix, and the log-softmax's gradient: a row sum, an exp, a product, a negation
and an add), each an (N, k) pass. Here it is one node each way: `CrossEntropy` keeps its
log-probabilities, and its gradient, one `CrossEntropyGrad` node, is

    ∂z = (g/N) · (softmax(z) − onehot(indices)),      g the loss's out_grad,

exp of those log-probabilities times g/N, with g/N taken off at the labels in place: two
passes. The forward pass computes the same numbers as the composition, in the same order;
so does the gradient (0 − (−g/N)·s is (g/N)·s exactly). `CrossEntropyGrad`'s own gradient
is written in needle ops, so the loss can be differentiated again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from needle.autograd import Tensor, TensorOp
from needle.backend_ndarray import api
from needle.errors import UsageError
from needle.ops.gather import as_indices
from needle.ops.registry import OpParam, register
from needle.ops.shape import reshape, summation
from needle.ops.softmax import LogSoftmax, softmax
from needle.ops.take_along_rows import rows_case, rows_shape


def _checked(z: Any, indices: np.ndarray) -> Any:
    """z, refused unless it is 2-D with one row per index, each index one of its columns."""
    if z.ndim != 2 or z.shape[0] != indices.size:
        raise UsageError(
            f"cross_entropy: {indices.size} labels for logits of shape {z.shape} (valid: "
            f"shape ({indices.size}, classes), one label a row)"
        )
    if indices.size == 0:
        raise UsageError(f"cross_entropy: logits of shape {z.shape} have no row to average over")
    if not (0 <= indices.min() and indices.max() < z.shape[1]):
        raise UsageError(
            f"cross_entropy: labels from {indices.min()} to {indices.max()} for logits of "
            f"{z.shape[1]} classes (valid: 0 to {z.shape[1] - 1})"
        )
    return z


class CrossEntropy(TensorOp):
    """−(1/N) Σᵢ log_softmax(z)ᵢ,indices[i] for z (N, k): 0-d. The log-probabilities are
    kept for the gradient, handed over once (a second backward pass recomputes them)."""

    def __init__(self, indices: Sequence[int] | np.ndarray):
        self.indices = as_indices(indices, "cross_entropy")

    def compute(self, z: Any) -> Any:
        log_probs = LogSoftmax().compute(_checked(z, self.indices))
        xp = api(log_probs)
        picked = xp.take_along_rows(log_probs, self.indices)  # checked above: no second check
        self.keep((z,), log_probs)
        return xp.sum(picked, axis=(0,)) * (-1 / self.indices.size)

    def gradient(self, out_grad: Tensor, node: Tensor):
        log_probs = self.kept(node)
        return CrossEntropyGrad(self.indices, log_probs=log_probs)(out_grad, node.inputs[0])


class CrossEntropyGrad(TensorOp):
    """cross_entropy's gradient in z: (g/N) · (softmax(z) − onehot(indices)) for a 0-d g.
    `log_probs`, when given, is log_softmax(z) as the forward pass found it.

    Linear in g, so its gradient under a cotangent v is, in g, Σ v · (softmax(z) −
    onehot)/N (this op at g = 1), and in z, (g/N) · s · (v − Σ_row v · s) with s = softmax(z)
    (softmax's own vector-Jacobian product)."""

    def __init__(self, indices: Sequence[int] | np.ndarray, *, log_probs: Any = None):
        self.indices = as_indices(indices, "cross_entropy")
        self.log_probs = log_probs

    def compute(self, g: Any, z: Any) -> Any:
        log_probs, self.log_probs = self.log_probs, None
        if log_probs is None:
            log_probs = LogSoftmax().compute(_checked(z, self.indices))
        xp = api(z)
        # −(g · (−1/N)): the composition's numbers, bit for bit.
        scale = xp.negative(g * (-1 / self.indices.size))
        weights = xp.multiply(xp.exp(log_probs), scale)
        return xp.subtract_along_rows(weights, self.indices, scale)

    def gradient(self, out_grad: Tensor, node: Tensor):
        g, z = node.inputs
        n = self.indices.size
        grad_g = None
        if g.requires_grad:
            unit = Tensor.make_const(api(g.cached_data).ones_like(g.cached_data))
            grad_g = reshape(summation(out_grad * CrossEntropyGrad(self.indices)(unit, z)), g.shape)
        grad_z = None
        if z.requires_grad:
            s = softmax(z, (1,))
            dot = reshape(summation(out_grad * s, (1,)), (n, 1))
            grad_z = reshape(g / n, (1, 1)) * s * (out_grad - dot)
        return grad_g, grad_z


def _near_even_logits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Logits in [−0.5, 0.5): every loss is at least log(1 + e⁻¹) ≈ 0.31, of the size of the
    logits. (A confident row has a loss far below its logits, and the rounding of lse − z_y,
    of the logits' size, would swamp a central difference's tolerance, scaled to the loss: a
    flaw of the numerical side, not of the gradient.)"""
    return rng.uniform(-0.5, 0.5, shape)


@register(
    CrossEntropy,
    params=[OpParam("indices", "shape", "each row's label, in row order, e.g. --indices 2,0,2")],
    shapes_for=lambda p: [rows_shape(p["indices"])],
    random_case=rows_case,
    draws=[_near_even_logits],
    settings=[{"indices": (2, 0, 2)}, {"indices": (0,)}, {"indices": (1, 1, 1, 0)}],
)
def cross_entropy(z: Tensor, indices: Sequence[int] | np.ndarray) -> Tensor:
    """Mean softmax cross-entropy of 2-D logits z against one class index a row."""
    return CrossEntropy(indices)(z)
