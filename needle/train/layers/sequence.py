"""Layers for sequences of tokens: `embedding`, `rnn`, `lstm`, `transformer`.

A text sample is (seq_len,) token ids; `embedding` makes it (seq_len, embedding_dim); `rnn`,
`lstm` and `transformer` keep (seq_len, features) (an rnn/lstm with `output: last` gives its
last step's (hidden_size,)); a `linear` then acts on each position, so a last `linear` to the
vocabulary gives per-token logits. Batches are batch-major, (batch, seq_len, …), while
nn.RNN/nn.LSTM are time-major: their layers' modules transpose in and out
(`needle.train.language.Recurrent`); nn.Transformer is built `batch_first`.

Each builds its `nn` module with the module's own draws, in the course's order
(nn.Embedding's randn; the cells' U(−1/√H, 1/√H) W_ih, W_hh, biases, layer by layer;
the Transformer's positional embedding, then per layer its projections and Linears).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from needle import nn
from needle.train.fields import Positive, Probability
from needle.train.language import Recurrent, TransformerStack
from needle.train.layers.registry import (
    Builder,
    LayerMismatch,
    LayerSpec,
    Shape,
    Shapes,
    batch_shape,
    register,
)


def sequence_features(layer: str, in_shape: Shape) -> tuple[int, int]:
    """(seq_len, features) of a sequence shape; LayerMismatch naming both shapes else."""
    if len(in_shape) == 2:
        return in_shape[0], in_shape[1]
    wanted = "(batch, seq_len, features)"
    if len(in_shape) == 1:
        hint = f"; an embedding before it makes (batch, {in_shape[0]}, dim)"
    else:
        hint = "; it reads a sequence, not an image"
    raise LayerMismatch(f"{layer} takes {wanted} but is given {batch_shape(in_shape)}{hint}")


@register
class Embedding(LayerSpec):
    """`embedding: 64` or `embedding: {embedding_dim: 64}`: (batch, seq_len) token ids ->
    (batch, seq_len, embedding_dim); one row per token of the data's vocabulary."""

    type: Literal["embedding"] = "embedding"
    embedding_dim: Positive = Field(description="features per token")
    short = "embedding_dim"

    def out_shape(self, in_shape: Shape, shapes: Shapes) -> Shape:
        if len(in_shape) != 1:
            raise LayerMismatch(
                f"embedding takes (batch, seq_len) token ids but is given "
                f"{batch_shape(in_shape)}; it must come first, on text data"
            )
        return (in_shape[0], self.embedding_dim)

    def param_count_in(self, in_shape: Shape, shapes: Shapes) -> int:
        return shapes.num_classes * self.embedding_dim

    def flops(self, in_shape: Shape) -> int:
        # A lookup reads a row and computes nothing. (nn.Embedding computes it as a one-hot
        # product, 2·vocabulary·embedding_dim per token: how, not what, so it is left out.)
        return 0

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.Embedding(builder.num_classes, self.embedding_dim)


class _RecurrentSpec(LayerSpec):
    """What `rnn` and `lstm` share: hidden_size, num_layers, bias, which output goes on."""

    hidden_size: Positive = Field(description="features of the hidden state")
    num_layers: Positive = Field(1, description="recurrent layers, stacked")
    bias: bool = Field(True, description="add the biases b_ih and b_hh")
    output: Literal["sequence", "last"] = Field(
        "sequence",
        description="pass on every step's hidden state (seq_len, hidden_size), or the last "
        "step's (hidden_size,)",
    )
    short = "hidden_size"
    sets_size = "hidden_size"
    gates: ClassVar[int] = 1

    def out_shape(self, in_shape: Shape, shapes: Shapes) -> Shape:
        seq_len, _ = sequence_features(self.type, in_shape)
        return (self.hidden_size,) if self.output == "last" else (seq_len, self.hidden_size)

    def param_count(self, in_shape: Shape) -> int:
        h, width = self.hidden_size, self.gates * self.hidden_size
        inputs = [in_shape[1]] + [h] * (self.num_layers - 1)
        return sum(n * width + h * width + 2 * width * self.bias for n in inputs)

    def flops(self, in_shape: Shape) -> int:
        """Per step and layer, z = x·W_ih + h·W_hh (+ b_ih + b_hh) is 2·(n + H)·gates·H
        (+ 2·gates·H), n the layer's input features; `gate_flops` adds what the gates cost
        beyond that. Every step is counted with its h product (a carried state has one)."""
        seq_len, features = in_shape
        h, width = self.hidden_size, self.gates * self.hidden_size
        inputs = [features] + [h] * (self.num_layers - 1)
        per_step = sum(2 * (n + h) * width + 2 * width * self.bias for n in inputs)
        return seq_len * (per_step + self.num_layers * self.gate_flops())

    def gate_flops(self) -> int:
        """Operations per step and layer after z, activations counted 0 as elsewhere."""
        return 0


@register
class RNN(_RecurrentSpec):
    """`rnn: 128` or `rnn: {hidden_size: 128, num_layers: 2, nonlinearity: relu, output:
    last}`: h_t = act(x_t W_ih + b_ih + h_{t−1} W_hh + b_hh), act tanh or relu."""

    type: Literal["rnn"] = "rnn"
    nonlinearity: Literal["tanh", "relu"] = Field("tanh", description="tanh or relu")

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        cell = nn.RNN(in_shape[1], self.hidden_size, self.num_layers, self.bias, self.nonlinearity)
        return Recurrent(cell, last=self.output == "last")


@register
class LSTM(_RecurrentSpec):
    """`lstm: 128` or `lstm: {hidden_size: 128, num_layers: 2, output: last}`: the LSTM of
    nn.LSTM, gates i, f, g, o."""

    type: Literal["lstm"] = "lstm"
    gates: ClassVar[int] = 4

    def gate_flops(self) -> int:
        return 4 * self.hidden_size  # σ(f)·c + σ(i)·tanh(g): 3; σ(o)·tanh(c′): 1

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        cell = nn.LSTM(in_shape[1], self.hidden_size, self.num_layers, self.bias)
        return Recurrent(cell, last=self.output == "last")


@register
class Transformer(LayerSpec):
    """`transformer: {num_layers: 2, num_head: 4, dim_head: 16, hidden_size: 64}`: a learned
    positional embedding for seq_len positions, then pre-norm attention blocks (nn.Transformer);
    (batch, seq_len, features) in and out."""

    type: Literal["transformer"] = "transformer"
    num_layers: Positive = Field(1, description="attention blocks")
    num_head: Positive = Field(4, description="attention heads")
    dim_head: Positive = Field(16, description="features per head")
    hidden_size: Positive = Field(64, description="width of each block's feed-forward layer")
    causal: bool = Field(True, description="each position sees only itself and those before")
    dropout: Probability = Field(0.0, description="dropout probability inside the blocks")

    def out_shape(self, in_shape: Shape, shapes: Shapes) -> Shape:
        sequence_features("transformer", in_shape)
        return in_shape

    def param_count(self, in_shape: Shape) -> int:
        seq_len, f = in_shape
        inner = self.num_head * self.dim_head
        attention = 3 * 2 * f + 4 * f * inner  # LayerNorms of q, k, v; q, k, v, out
        feed_forward = (
            2 * f + (f * self.hidden_size + self.hidden_size) + (self.hidden_size * f + f)
        )
        return seq_len * f + self.num_layers * (attention + feed_forward)

    def flops(self, in_shape: Shape) -> int:
        """Per block, on T positions of F features with I = num_head·dim_head:
        q, k, v and out projections 4·2·T·F·I; q·kᵀ and probs·v 2·T·T·dim_head each per
        head; per score ÷√D, the causal mask and softmax's shift, sum and divide (exp an
        activation, 0); four LayerNorms at 4 per number; the feed-forward Linears
        T·((2F + 1)·hidden + (2·hidden + 1)·F); two residual additions. Plus T·F for the
        positional embedding's addition; dropout and ReLU count 0."""
        t, f = in_shape
        inner = self.num_head * self.dim_head
        projections = 4 * 2 * t * f * inner
        products = self.num_head * 2 * (2 * t * t * self.dim_head)
        scores = self.num_head * t * t * (1 + self.causal + 3)
        norms = 4 * 4 * t * f
        feed_forward = t * ((2 * f + 1) * self.hidden_size + (2 * self.hidden_size + 1) * f)
        block = projections + products + scores + norms + feed_forward + 2 * t * f
        return t * f + self.num_layers * block

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        seq_len, features = in_shape
        return TransformerStack(
            nn.Transformer(
                features,
                self.hidden_size,
                self.num_layers,
                num_head=self.num_head,
                dim_head=self.dim_head,
                dropout=self.dropout,
                causal=self.causal,
                batch_first=True,
                sequence_len=seq_len,
            )
        )
