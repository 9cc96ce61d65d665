"""Matrix product, batched: batch axes broadcast both ways, like numpy's matmul."""

from __future__ import annotations

import numpy as np

from needle.autograd import Tensor, TensorOp
from needle.errors import UsageError
from needle.ops.registry import Setting, broadcastable_pair, register
from needle.ops.shape import sum_to_shape, transpose


class MatMul(TensorOp):
    """a @ b; d/da = out_grad @ bᵀ, d/db = aᵀ @ out_grad, each summed back to its input's
    shape over the broadcast batch axes."""

    def compute(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if a.ndim < 2 or b.ndim < 2:
            raise UsageError(f"matmul needs inputs with at least 2 axes, got {a.shape} @ {b.shape}")
        try:
            return np.matmul(a, b)
        except ValueError:
            raise UsageError(f"matmul shapes do not fit: {a.shape} @ {b.shape}") from None

    def gradient(self, out_grad: Tensor, node: Tensor):
        a, b = node.inputs
        # An input that needs no gradient (a batch of data) skips its product: for a
        # network's first layer that is the largest matmul of the step.
        grad_a = sum_to_shape(matmul(out_grad, transpose(b)), a.shape) if a.requires_grad else None
        grad_b = sum_to_shape(matmul(transpose(a), out_grad), b.shape) if b.requires_grad else None
        return grad_a, grad_b


def _matmul_case(rng: np.random.Generator):
    batch_a, batch_b = broadcastable_pair(rng)
    batch_a, batch_b = batch_a[-2:], batch_b[-2:]
    m, k, n = (int(x) for x in rng.integers(1, 5, 3))
    return {}, [batch_a + (m, k), batch_b + (k, n)]


@register(
    MatMul,
    n_inputs=2,
    shapes_for=lambda p: [(3, 4), (4, 5)],
    random_case=_matmul_case,
    settings=[{}, Setting({}, ((2, 3, 4), (4, 5))), Setting({}, ((2, 1, 3, 4), (3, 4, 2)))],
)
def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product a @ b, batch axes broadcast."""
    return MatMul()(a, b)
