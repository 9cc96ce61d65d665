"""Layers that only rearrange a sample's numbers."""

from __future__ import annotations

import math
from typing import Literal

from needle import nn
from needle.train.layers.registry import Builder, LayerSpec, Shape, Shapes, register


@register
class Flatten(LayerSpec):
    """`flatten`: (batch, d1, d2, ...) -> (batch, d1*d2*...)."""

    type: Literal["flatten"] = "flatten"

    def out_shape(self, in_shape: Shape, shapes: Shapes) -> Shape:
        return (math.prod(in_shape),)

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.Flatten()
