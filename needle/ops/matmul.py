"""Matrix product, batched: batch axes broadcast both ways, like numpy's matmul."""

from __future__ import annotations

from typing import Any

import numpy as np

from needle.autograd import Tensor, TensorOp
from needle.backend_ndarray import api
from needle.errors import UsageError
from needle.ops import strided
from needle.ops.registry import Setting, broadcastable_pair, register
from needle.ops.shape import sum_to_shape


def _float_dtype(value: Any) -> np.dtype:
    try:
        dtype = np.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind != "f":
        raise UsageError(
            f"matmul: accumulate must be a float dtype such as 'float64', got {value!r}"
        )
    return dtype


class MatMul(TensorOp):
    """a @ b, batched; d/da = out_grad @ bᵀ, d/db = aᵀ @ out_grad, each summed back to its
    input's shape over the broadcast batch axes.

    `accumulate` (a float dtype, e.g. "float64") sums the products in that dtype and rounds
    the result once to the inputs' dtype; the gradient products do the same. Attention uses
    it: with float32 BLAS partial sums, a 4-layer float32 Transformer lands just outside
    1e-5 of its float64 self, the tolerance the course's float32 numbers are tested to.

    `transpose_a` / `transpose_b` multiply by the input's last two axes swapped (a view, as
    `transpose` makes), in the same node: the gradients are products of that kind, so a
    Linear layer's backward pass is two nodes, not four (with each operand's `transpose`).
    """

    def __init__(
        self, accumulate: Any = None, transpose_a: bool = False, transpose_b: bool = False
    ):
        self.accumulate = None if accumulate is None else _float_dtype(accumulate)
        self.transpose_a, self.transpose_b = transpose_a, transpose_b

    def compute(self, a: Any, b: Any, addend: Any = None) -> Any:
        if a.ndim < 2 or b.ndim < 2:
            raise UsageError(f"matmul needs inputs with at least 2 axes, got {a.shape} @ {b.shape}")
        xp = api(a)
        if self.transpose_a:
            a = xp.swapaxes(a, -1, -2)
        if self.transpose_b:
            b = xp.swapaxes(b, -1, -2)
        try:
            if self.accumulate is None:
                product = xp.matmul(a, b)
            else:
                wide = xp.matmul(xp.astype(a, self.accumulate), xp.astype(b, self.accumulate))
                product = xp.astype(wide, np.result_type(a.dtype, b.dtype))
        except ValueError:
            raise UsageError(f"matmul shapes do not fit: {a.shape} @ {b.shape}") from None
        if addend is None:
            return product
        return _add(product, addend)

    def gradient(self, out_grad: Tensor, node: Tensor):
        # With A = a (or aᵀ) and B = b (or bᵀ) the operands multiplied and G = out_grad:
        # ∂A = G Bᵀ and ∂B = Aᵀ G, transposed back where the input was. An input that needs
        # no gradient (a batch of data) skips its product: for a network's first layer that
        # is the largest matmul of the step.
        a, b = node.inputs[:2]
        ta, tb, accumulate = self.transpose_a, self.transpose_b, self.accumulate
        grad_a = grad_b = None
        if a.requires_grad:
            if ta:  # ∂a = (G Bᵀ)ᵀ = B Gᵀ
                grad_a = MatMul(accumulate, tb, True)(b, out_grad)
            else:
                grad_a = MatMul(accumulate, False, not tb)(out_grad, b)
            grad_a = sum_to_shape(grad_a, a.shape)
        if b.requires_grad:
            if tb:  # ∂b = (Aᵀ G)ᵀ = Gᵀ A
                grad_b = MatMul(accumulate, True, ta)(out_grad, a)
            else:
                grad_b = MatMul(accumulate, not ta, False)(a, out_grad)
            grad_b = sum_to_shape(grad_b, b.shape)
        if len(node.inputs) == 2:
            return grad_a, grad_b
        addend = node.inputs[2]
        grad_addend = sum_to_shape(out_grad, addend.shape) if addend.requires_grad else None
        return grad_a, grad_b, grad_addend


def _add(product: Any, addend: Any) -> Any:
    """product + addend, for an addend that broadcasts to the product's shape (a bias row, a
    same-shaped array): added into the product itself (a new array of the op's own), or by
    numpy's add when the sum needs a wider dtype. An addend that would widen the product is
    refused: the gradients' products are of the product's shape."""
    pairs = zip(reversed(addend.shape), reversed(product.shape), strict=False)
    if addend.ndim > product.ndim or any(n not in (1, m) for n, m in pairs):
        raise UsageError(
            f"matmul: an addend of shape {addend.shape} does not broadcast to the product's "
            f"shape {product.shape}"
        )
    if (
        addend.dtype != product.dtype
        and np.result_type(product.dtype, addend.dtype) != product.dtype
    ):
        return api(product).add(product, addend)
    strided.add_into(product, (slice(None),) * product.ndim, addend)
    return product


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
def matmul(
    a: Tensor,
    b: Tensor,
    *,
    accumulate: Any = None,
    addend: Tensor | None = None,
    transpose_a: bool = False,
    transpose_b: bool = False,
) -> Tensor:
    """Matrix product a @ b, batch axes broadcast; products summed in `accumulate` if given.

    `addend`, when given, is added to the product in the same node (a Linear layer's bias,
    a recurrent cell's input part): one node and one array fewer than `add`.
    `transpose_a` / `transpose_b` multiply by that input with its last two axes swapped, in
    the same node (attention's q kᵀ): one node fewer than `transpose`."""
    op = MatMul(accumulate, transpose_a, transpose_b)
    return op(a, b) if addend is None else op(a, b, addend)
