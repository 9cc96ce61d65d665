"""`dropout`: zeroes entries at random in training; any shape, kept."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from needle import nn
from needle.train.fields import Probability
from needle.train.layers.registry import Builder, LayerSpec, Shape, register


@register
class Dropout(LayerSpec):
    """`dropout: 0.1` or `dropout: {p: 0.1}`: drop probability p in [0, 1)."""

    type: Literal["dropout"] = "dropout"
    p: Probability = Field(0.5, description="probability of zeroing each entry")
    short = "p"

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.Dropout(self.p)
