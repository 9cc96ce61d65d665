"""Elementwise nonlinearities and the identity: any shape in, the same shape out, nothing
learned."""

from __future__ import annotations

from typing import Literal

from needle import nn
from needle.train.layers.registry import Builder, LayerSpec, Shape, register


@register
class ReLU(LayerSpec):
    """`relu`: max(x, 0)."""

    type: Literal["relu"] = "relu"

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.ReLU()


@register
class Tanh(LayerSpec):
    """`tanh`."""

    type: Literal["tanh"] = "tanh"

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.Tanh()


@register
class Sigmoid(LayerSpec):
    """`sigmoid`: 1 / (1 + e^-x)."""

    type: Literal["sigmoid"] = "sigmoid"

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.Sigmoid()


@register
class Identity(LayerSpec):
    """`identity`: y = x."""

    type: Literal["identity"] = "identity"

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.Identity()
