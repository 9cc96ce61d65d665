"""Layers for sequences of tokens: `Embedding`.

Inputs are (T, B) arrays of token ids held as integer-valued floats, as the course's data
pipeline delivers them (`needle.data.get_batch`); outputs keep the (T, B) axes in front.
"""

from __future__ import annotations

import math

from needle import init, ops
from needle.autograd import Device, Tensor
from needle.init import Dtype
from needle.nn.basic import Module, Parameter


class Embedding(Module):
    """A lookup table: token id i ↦ row i of `weight` (num_embeddings, embedding_dim).

    `weight` ~ N(0, 1), one `randn` draw (the course's order). The lookup is written as
    one_hot(x) @ weight, so its gradient, onehotᵀ · out_grad, is an ordinary matmul gradient
    that adds up the rows of repeated tokens.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        device: Device | None = None,
        dtype: Dtype = "float32",
    ) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.weight = Parameter(
            init.randn(num_embeddings, embedding_dim, device=device, dtype=dtype)
        )

    def forward(self, x: Tensor) -> Tensor:
        """(T, B) ids → (T, B, embedding_dim)."""
        lead = x.shape
        one_hot = init.one_hot(self.num_embeddings, x, device=x.device, dtype=self.weight.dtype)
        flat = ops.reshape(one_hot, (math.prod(lead), self.num_embeddings))
        return ops.reshape(ops.matmul(flat, self.weight), (*lead, self.embedding_dim))
