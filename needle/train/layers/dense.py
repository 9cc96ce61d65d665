"""`linear`: y = x W + b, its weights drawn with the configured initializer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from needle import init, nn
from needle.train.fields import Positive, check_choice
from needle.train.layers.registry import Builder, LayerSpec, Shape, Shapes, features, register


@register
class Linear(LayerSpec):
    """`linear: 64` or `linear: {out_features: 64, bias: true, init: ..., init_args: {...}}`:
    (batch, in_features) -> (batch, out_features); on a sequence, (batch, seq_len,
    in_features) -> (batch, seq_len, out_features), the same weights at every position."""

    type: Literal["linear"] = "linear"
    out_features: Positive = Field(description="output size")
    bias: bool = Field(True, description="add a learned bias row")
    init: str | None = Field(None, description="this layer's initializer (model.init)")
    init_args: dict[str, Any] | None = Field(
        None, description="arguments for this layer's initializer (model.init_args)"
    )
    short = "out_features"
    sets_size = "out_features"

    @field_validator("init")
    @classmethod
    def _check_init(cls, value: str | None) -> str | None:
        return None if value is None else check_choice("initializer", init.INITIALIZERS, value)

    def out_shape(self, in_shape: Shape, shapes: Shapes) -> Shape:
        if len(in_shape) == 2:  # (seq_len, features): per position
            return (in_shape[0], self.out_features)
        features("linear", in_shape)
        return (self.out_features,)

    def param_count(self, in_shape: Shape) -> int:
        return in_shape[-1] * self.out_features + self.out_features * self.bias

    def flops(self, in_shape: Shape) -> int:
        positions = in_shape[0] if len(in_shape) == 2 else 1  # (seq_len, features): each
        return positions * (2 * in_shape[-1] + self.bias) * self.out_features

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        # weight ~ init(in, out) and bias ~ init(out, 1) as a row: the course's convention
        return nn.Linear(
            in_shape[-1], self.out_features, bias=self.bias, initializer=builder.initializer(self)
        )

    def initializer_settings(self) -> tuple[str | None, dict[str, Any] | None]:
        return self.init, self.init_args
