"""Normalizations over the features of (batch, features) data: a learned scale and shift per
feature, `dim` inferred from the previous layer (and checked when written)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from needle import nn
from needle.train.fields import Positive, PositiveFloat, Probability
from needle.train.layers.registry import (
    Builder,
    LayerMismatch,
    LayerSpec,
    Shape,
    Shapes,
    features,
    register,
)


class _Norm1d(LayerSpec):
    dim: Positive | None = Field(None, description="feature count; inferred when left out")
    eps: PositiveFloat = Field(1e-5, description="added to the variance")

    def out_shape(self, in_shape: Shape, shapes: Shapes) -> Shape:
        count = features(self.type, in_shape)
        if self.dim is not None and self.dim != count:
            raise LayerMismatch(
                f"dim is {self.dim} but the previous layer puts out {count} features", at=("dim",)
            )
        return in_shape

    def param_count(self, in_shape: Shape) -> int:
        return 2 * in_shape[0]  # weight and bias; running statistics are not trained

    def flops(self, in_shape: Shape) -> int:
        return 4 * in_shape[0]  # x − mean, ÷ std, × weight, + bias


@register
class BatchNorm1d(_Norm1d):
    """`batchnorm1d` or `batchnorm1d: {eps: 1e-5, momentum: 0.1}`: each feature normalized over
    the batch, with running statistics for evaluation."""

    type: Literal["batchnorm1d"] = "batchnorm1d"
    momentum: Probability = Field(0.1, description="running-statistics update rate")

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.BatchNorm1d(in_shape[0], eps=self.eps, momentum=self.momentum)


@register
class LayerNorm1d(_Norm1d):
    """`layernorm1d` or `layernorm1d: {eps: 1e-5}`: each sample normalized over its features."""

    type: Literal["layernorm1d"] = "layernorm1d"

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.LayerNorm1d(in_shape[0], eps=self.eps)
