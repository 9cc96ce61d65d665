"""Pooling layers on image samples (channels, height, width): `maxpool2d` and `avgpool2d`
over windows, `global_avgpool` over the whole map. None holds a parameter."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from needle import nn
from needle.train.fields import Positive
from needle.train.layers.conv import check_window, window_out
from needle.train.layers.registry import Builder, LayerSpec, Shape, Shapes, image, register


class _WindowPool(LayerSpec):
    kernel_size: Positive = Field(2, description="rows and columns of each window")
    stride: Positive | None = Field(None, description="between windows; kernel_size when left out")
    short = "kernel_size"

    @property
    def step(self) -> int:
        return self.kernel_size if self.stride is None else self.stride

    def out_shape(self, in_shape: Shape, shapes: Shapes) -> Shape:
        c, h, w = image(self.type, in_shape)
        check_window(self.type, in_shape, self.kernel_size, 0, "kernel_size")
        k, s = self.kernel_size, self.step
        return (c, window_out(h, k, s, 0), window_out(w, k, s, 0))

    def flops(self, in_shape: Shape) -> int:
        c, h, w = in_shape
        k, s = self.kernel_size, self.step
        return k * k * c * window_out(h, k, s, 0) * window_out(w, k, s, 0)  # one per entry read


@register
class MaxPool2d(_WindowPool):
    """`maxpool2d: 2` or `maxpool2d: {kernel_size: 2, stride: 2}`: the maximum of each window
    of every channel, (batch, C, H, W) -> (batch, C, (H − k)//s + 1, (W − k)//s + 1)."""

    type: Literal["maxpool2d"] = "maxpool2d"

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.MaxPool2d(self.kernel_size, self.step)


@register
class AvgPool2d(_WindowPool):
    """`avgpool2d: 2` or `avgpool2d: {kernel_size: 2, stride: 2}`: the mean of each window of
    every channel, shapes as maxpool2d."""

    type: Literal["avgpool2d"] = "avgpool2d"

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.AvgPool2d(self.kernel_size, self.step)


@register
class GlobalAvgPool(LayerSpec):
    """`global_avgpool`: the mean of each channel over its map, (batch, C, H, W) -> (batch, C)."""

    type: Literal["global_avgpool"] = "global_avgpool"

    def out_shape(self, in_shape: Shape, shapes: Shapes) -> Shape:
        return (image("global_avgpool", in_shape)[0],)

    def flops(self, in_shape: Shape) -> int:
        return math.prod(in_shape)

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.GlobalAvgPool2d()
