"""Attention and the Transformer (the course's hw4_extra): `MultiHeadAttention`,
`AttentionLayer`, `TransformerLayer`, `Transformer`.

Layouts: attention works on (B, heads, T, D); the layers on (B, T, features); the
Transformer takes (T, B, features) unless `batch_first`. LayerNorm1d and Linear are applied
to (B·T, features) views, as in the course. Modules are built in the course's order
(positional embedding, then per layer: q, k, v, out projections, Linear1, Linear2), so a
seeded model draws the course's weights, and dropout masks are drawn in its forward order
(attention probabilities, attention output, after ReLU, after Linear2).
"""

from __future__ import annotations

import math

import numpy as np

from needle import init, ops
from needle.autograd import Device, Tensor
from needle.errors import UsageError
from needle.init import Dtype
from needle.nn.basic import Dropout, LayerNorm1d, Linear, Module, ReLU, Sequential
from needle.nn.sequence import Embedding

# What a causal mask adds to a hidden score: exp(score − max) is then exactly 0, while the
# sum stays finite in float32 (−inf would give nan in a row with nothing visible).
MASKED = -float(np.finfo(np.float32).max)


def _rows(x: Tensor) -> Tensor:
    """(B, T, F) → the (B·T, F) view LayerNorm1d and Linear are applied to."""
    batch, steps, features = x.shape
    return ops.reshape(x, (batch * steps, features))


class MultiHeadAttention(Module):
    """Scaled dot-product attention over heads, with optional causal masking:

        probs = Dropout(softmax(q kᵀ / √D + mask)),   result = probs v

    q is (B, H, T, D), k and v are (B, H, S, D). The causal mask adds −float32max at key
    j > i + (S − T) for query i, so the last query sees every key (a query block that ends
    where the keys end). The softmax subtracts each row's maximum first.
    Vaswani et al., "Attention Is All You Need" (2017).
    """

    def __init__(
        self,
        *,
        dropout: float = 0.0,
        causal: bool = False,
        device: Device | None = None,
        dtype: Dtype = "float32",
    ) -> None:
        super().__init__()
        self.device = device
        self.dtype = dtype
        self.causal = causal
        self.dropout = Dropout(dropout)

    def create_causal_mask(self, i: int, j: int, device: Device | None) -> Tensor:
        """(1, 1, i, j): 0 where query r may see key c (c ≤ r + j − i), −float32max elsewhere."""
        hidden = np.triu(np.ones((1, 1, i, j)), j - i + 1)
        return Tensor(hidden * MASKED, device=device, dtype=self.dtype, requires_grad=False)

    def matmul(self, a: Tensor, b_transpose: Tensor) -> Tensor:
        """a @ b_transposeᵀ over the last two axes, batched over the leading ones:
        (…, T, D) with (…, S, D) → (…, T, S); summed in float64, rounded once to the inputs'
        dtype (float32 partial sums put a 4-layer model outside 1e-5 of its float64 self)."""
        return ops.matmul(a, b_transpose, accumulate="float64", transpose_b=True)

    def softmax(self, logit: Tensor) -> Tensor:
        """softmax over the last axis, each row shifted by its maximum."""
        return ops.softmax(logit, axes=logit.ndim - 1)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """→ (result (B, H, T, D), probs (B, H, T, S))."""
        if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
            raise UsageError(
                f"MultiHeadAttention takes (batch, heads, length, dim) q, k, v; got shapes "
                f"{q.shape}, {k.shape}, {v.shape}"
            )
        *_, queries, dim = q.shape
        keys = k.shape[2]
        if k.shape[3] != dim or v.shape[3] != dim or v.shape[2] != keys:
            raise UsageError(
                f"MultiHeadAttention: q, k, v must share their last axis and k, v their "
                f"length; got shapes {q.shape}, {k.shape}, {v.shape}"
            )
        logit = ops.divide_scalar(self.matmul(q, k), math.sqrt(dim))
        if self.causal:
            logit = logit + self.create_causal_mask(queries, keys, q.device)
        probs = self.dropout(self.softmax(logit))
        result = ops.matmul(probs, v, accumulate="float64")  # float64 sums, as self.matmul
        return result, probs


class AttentionLayer(Module):
    """Pre-norm multi-head attention with its projections:

        Q = LN(q) W_q,  K = LN(k) W_k,  V = LN(v) W_v        (each → num_head·dim_head)
        out = merge(attention(split(Q), split(K), split(V))) W_out

    split reshapes (B, T, H·D) to (B, H, T, D), merge undoes it; all four projections are
    bias-free Linears. k_features and v_features default to q_features, out_features too.
    """

    def __init__(
        self,
        q_features: int,
        num_head: int,
        dim_head: int,
        *,
        k_features: int | None = None,
        v_features: int | None = None,
        out_features: int | None = None,
        dropout: float = 0.0,
        causal: bool = True,
        device: Device | None = None,
        dtype: Dtype = "float32",
    ) -> None:
        super().__init__()
        k_features = q_features if k_features is None else k_features
        v_features = q_features if v_features is None else v_features
        out_features = q_features if out_features is None else out_features
        self.num_head = num_head
        self.dim_head = dim_head
        inner = num_head * dim_head
        options = {"device": device, "dtype": dtype}
        self.prenorm_q = LayerNorm1d(q_features, **options)
        self.prenorm_k = LayerNorm1d(k_features, **options)
        self.prenorm_v = LayerNorm1d(v_features, **options)
        self.q_projection = Linear(q_features, inner, bias=False, **options)
        self.k_projection = Linear(k_features, inner, bias=False, **options)
        self.v_projection = Linear(v_features, inner, bias=False, **options)
        self.attn = MultiHeadAttention(dropout=dropout, causal=causal, **options)
        self.out_projection = Linear(inner, out_features, bias=False, **options)

    def _heads(self, x: Tensor, norm: LayerNorm1d, projection: Linear) -> Tensor:
        """(B, T, F) → projection(norm(x)) split into heads, (B, H, T, dim_head)."""
        batch, steps, _ = x.shape
        projected = projection(norm(_rows(x)))
        split = ops.reshape(projected, (batch, steps, self.num_head, self.dim_head))
        return ops.transpose(split, (1, 2))

    def forward(self, q: Tensor, k: Tensor | None = None, v: Tensor | None = None) -> Tensor:
        """(B, T, q_features), k and v (B, S, …) defaulting to q → (B, T, out_features)."""
        k = q if k is None else k
        v = q if v is None else v
        batch, steps, _ = q.shape
        result, _ = self.attn(
            self._heads(q, self.prenorm_q, self.q_projection),
            self._heads(k, self.prenorm_k, self.k_projection),
            self._heads(v, self.prenorm_v, self.v_projection),
        )
        merged = ops.reshape(
            ops.transpose(result, (1, 2)), (batch * steps, self.num_head * self.dim_head)
        )
        out = self.out_projection(merged)
        return ops.reshape(out, (batch, steps, out.shape[-1]))


class TransformerLayer(Module):
    """A pre-norm Transformer block on (B, T, q_features):

        x ← x + Dropout(AttentionLayer(x))
        x ← x + Dropout(Linear2(Dropout(ReLU(Linear1(LN(x))))))

    Linear1 maps q_features → hidden_size and Linear2 back, both with bias. One Dropout
    module draws a fresh mask at each of its three uses.
    """

    def __init__(
        self,
        q_features: int,
        num_head: int,
        dim_head: int,
        hidden_size: int,
        *,
        dropout: float = 0.0,
        causal: bool = True,
        device: Device | None = None,
        dtype: Dtype = "float32",
    ) -> None:
        super().__init__()
        options = {"device": device, "dtype": dtype}
        self.attention = AttentionLayer(
            q_features, num_head, dim_head, dropout=dropout, causal=causal, **options
        )
        self.layernorm = LayerNorm1d(q_features, **options)
        self.linear1 = Linear(q_features, hidden_size, **options)
        self.linear2 = Linear(hidden_size, q_features, **options)
        self.relu = ReLU()
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.dropout(self.attention(x))
        hidden = self.dropout(self.relu(self.linear1(self.layernorm(_rows(x)))))
        return x + ops.reshape(self.dropout(self.linear2(hidden)), x.shape)


class Transformer(Module):
    """A learned positional embedding, then `num_layers` TransformerLayers:

        x ← x + E[0 … T−1],   x ← layerₙ(… layer₁(x))

    with E an `Embedding(sequence_len, embedding_size)` (drawn first). Input and output are
    (T, B, embedding_size), or (B, T, embedding_size) with `batch_first`. `forward` returns
    (x, zeros_like(x)): the second item stands in for a recurrent model's hidden state.
    """

    def __init__(
        self,
        embedding_size: int,
        hidden_size: int,
        num_layers: int,
        *,
        num_head: int = 8,
        dim_head: int = 32,
        dropout: float = 0.0,
        causal: bool = True,
        batch_first: bool = False,
        sequence_len: int = 2048,
        device: Device | None = None,
        dtype: Dtype = "float32",
    ) -> None:
        super().__init__()
        options = {"device": device, "dtype": dtype}
        self.embedding_size = embedding_size
        self.batch_first = batch_first
        self.sequence_len = sequence_len
        self.positional_embedding = Embedding(sequence_len, embedding_size, **options)
        self.layers = Sequential(
            *[
                TransformerLayer(
                    embedding_size,
                    num_head,
                    dim_head,
                    hidden_size,
                    dropout=dropout,
                    causal=causal,
                    **options,
                )
                for _ in range(num_layers)
            ]
        )

    def forward(self, x: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (T, B, embedding_size) (or (B, T, …) with batch_first); `h` is ignored."""
        if x.ndim != 3 or x.shape[2] != self.embedding_size:
            layout = "(batch, length, …)" if self.batch_first else "(length, batch, …)"
            raise UsageError(
                f"Transformer takes {layout} with {self.embedding_size} features, got shape "
                f"{x.shape}"
            )
        if not self.batch_first:
            x = ops.transpose(x, (0, 1))
        steps = x.shape[1]
        if steps > self.sequence_len:
            raise UsageError(
                f"Transformer: a sequence of length {steps} is longer than sequence_len="
                f"{self.sequence_len}"
            )
        positions = Tensor(
            np.arange(steps)[None, :], device=x.device, dtype=x.dtype, requires_grad=False
        )
        x = x + self.positional_embedding(positions)  # (1, T, F) broadcast over the batch
        x = self.layers(x)
        if not self.batch_first:
            x = ops.transpose(x, (0, 1))
        return x, init.zeros_like(x)
