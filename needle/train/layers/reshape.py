"""Layers that only rearrange a sample's numbers."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from needle import nn
from needle.train.fields import Positive
from needle.train.layers.registry import (
    Builder,
    LayerMismatch,
    LayerSpec,
    Shape,
    Shapes,
    batch_shape,
    register,
)


@register
class Flatten(LayerSpec):
    """`flatten`: (batch, d1, d2, ...) -> (batch, d1*d2*...)."""

    type: Literal["flatten"] = "flatten"

    def out_shape(self, in_shape: Shape, shapes: Shapes) -> Shape:
        return (math.prod(in_shape),)

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.Flatten()


@register
class Reshape(LayerSpec):
    """`reshape: [1, 28, 28]` or `reshape: {shape: [1, 28, 28]}`: (batch, ...) -> (batch,
    1, 28, 28), each sample's numbers in a new shape of the same count: flat features made
    into images for the layers that take them (a no-op on samples already of that shape)."""

    type: Literal["reshape"] = "reshape"
    shape: list[Positive] = Field(min_length=1, description="the sample shape to make")
    short = "shape"

    def out_shape(self, in_shape: Shape, shapes: Shapes) -> Shape:
        target = tuple(self.shape)
        if math.prod(in_shape) != math.prod(target):
            raise LayerMismatch(
                f"reshape to {batch_shape(target)} needs {math.prod(target)} numbers per sample "
                f"but is given {batch_shape(in_shape)}, {math.prod(in_shape)}",
                at=("shape",),
            )
        return target

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.Reshape(tuple(self.shape))
