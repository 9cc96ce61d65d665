"""`residual`: y = block(x) + x, the block a Sequential of layers written inside it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from needle import nn
from needle.train.layers.registry import (
    Builder,
    LayerMismatch,
    LayerSpec,
    Shape,
    Shapes,
    batch_shape,
    register,
)
from needle.train.source import KeyPath

if TYPE_CHECKING:
    from needle.train.layers.model import Layer


@register
class Residual(LayerSpec):
    """`residual: [layers...]`: y = block(x) + x; the block must give back the shape it takes."""

    type: Literal["residual"] = "residual"
    layers: list[Layer] = Field(min_length=1, description="the block, a Sequential")
    short = "layers"

    def out_shape(self, in_shape: Shape, shapes: Shapes) -> Shape:
        inner = shapes.block(self.layers, in_shape, ("layers",))
        if inner == in_shape:
            return in_shape
        if len(in_shape) == len(inner) == 1:
            (takes,), (gives,) = in_shape, inner
            raise LayerMismatch(
                f"the block takes {takes} features and puts out {gives}; a residual adds its "
                f"input back, so the block must end with {takes}"
            )
        raise LayerMismatch(
            f"the block takes {batch_shape(in_shape)} and puts out {batch_shape(inner)}; a "
            f"residual adds its input back, so the block must give back {batch_shape(in_shape)}"
        )

    def flops(self, in_shape: Shape) -> int:
        return math.prod(in_shape)  # the addition; the block's layers count their own

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.Residual(builder.sequential(self.layers, in_shape))

    def blocks(self) -> Iterable[tuple[KeyPath, Sequence[LayerSpec]]]:
        return ((("layers",), self.layers),)
