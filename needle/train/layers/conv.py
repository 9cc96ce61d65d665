"""Convolutional layers on image samples (channels, height, width): `conv`, its weights drawn
with the configured initializer, and `batchnorm2d`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from needle import init, nn
from needle.train.fields import Positive, PositiveFloat, Probability, check_choice
from needle.train.layers.registry import (
    Builder,
    LayerMismatch,
    LayerSpec,
    Shape,
    Shapes,
    batch_shape,
    image,
    register,
)

NonNegativeInt = Annotated[int, Field(ge=0)]


def window_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Windows along one axis of `size`, padded by `padding` each side: (n + 2p − k)//s + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def check_window(layer: str, in_shape: Shape, kernel: int, padding: int, at: str) -> None:
    """LayerMismatch unless a kernel × kernel window fits the (padded) image of `in_shape`."""
    _, h, w = in_shape
    if kernel > min(h, w) + 2 * padding:
        padded = f" padded by {padding} ({h + 2 * padding}×{w + 2 * padding})" if padding else ""
        raise LayerMismatch(
            f"{layer}: a {kernel}×{kernel} kernel does not fit the {h}×{w} map of "
            f"{batch_shape(in_shape)}{padded}",
            at=(at,),
        )


@register
class Conv(LayerSpec):
    """`conv: 32` or `conv: {out_channels: 32, kernel_size: 3, stride: 1, padding: 1,
    bias: true, init: ..., init_args: {...}}`: (batch, in, H, W) -> (batch, out, H', W')
    with H' = (H + 2p − k)//s + 1. The weight (k, k, in, out) ~ init(in·k², out·k²); the
    bias ~ U(±1/√(in·k²)), as `nn.Conv` draws them."""

    type: Literal["conv"] = "conv"
    out_channels: Positive = Field(description="output channels")
    kernel_size: Positive = Field(3, description="rows and columns of the kernel")
    stride: Positive = Field(1, description="rows and columns between windows")
    padding: NonNegativeInt | None = Field(
        None, description="zeros around H and W; (kernel_size - 1) // 2 when left out"
    )
    bias: bool = Field(True, description="add a learned bias per output channel")
    init: str | None = Field(None, description="this layer's initializer (model.init)")
    init_args: dict[str, Any] | None = Field(
        None, description="arguments for this layer's initializer (model.init_args)"
    )
    short = "out_channels"

    @field_validator("init")
    @classmethod
    def _check_init(cls, value: str | None) -> str | None:
        return None if value is None else check_choice("initializer", init.INITIALIZERS, value)

    @property
    def pad(self) -> int:
        """The padding used: the course's (k − 1)//2 unless one is written."""
        return (self.kernel_size - 1) // 2 if self.padding is None else self.padding

    def out_shape(self, in_shape: Shape, shapes: Shapes) -> Shape:
        _, h, w = image("conv", in_shape)
        check_window("conv", in_shape, self.kernel_size, self.pad, "kernel_size")
        k, s, p = self.kernel_size, self.stride, self.pad
        return (self.out_channels, window_out(h, k, s, p), window_out(w, k, s, p))

    def outputs(self, in_shape: Shape) -> int:
        """Numbers per sample put out, Cout · H' · W' (of a planned, fitting in_shape)."""
        _, h, w = in_shape
        k, s, p = self.kernel_size, self.stride, self.pad
        return self.out_channels * window_out(h, k, s, p) * window_out(w, k, s, p)

    def param_count(self, in_shape: Shape) -> int:
        weights = self.kernel_size**2 * in_shape[0] * self.out_channels
        return weights + self.out_channels * self.bias

    def flops(self, in_shape: Shape) -> int:
        return (2 * self.kernel_size**2 * in_shape[0] + self.bias) * self.outputs(in_shape)

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.Conv(
            in_shape[0],
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            bias=self.bias,
            padding=self.pad,
            initializer=builder.initializer(self),
        )

    def initializer_settings(self) -> tuple[str | None, dict[str, Any] | None]:
        return self.init, self.init_args


@register
class BatchNorm2d(LayerSpec):
    """`batchnorm2d` or `batchnorm2d: {dim: 32, eps: 1e-5, momentum: 0.1}`: each channel
    normalized over the batch and every pixel, with running statistics for evaluation;
    `dim` (the channels) is inferred, and checked when written."""

    type: Literal["batchnorm2d"] = "batchnorm2d"
    dim: Positive | None = Field(None, description="channel count; inferred when left out")
    eps: PositiveFloat = Field(1e-5, description="added to the variance")
    momentum: Probability = Field(0.1, description="running-statistics update rate")

    def out_shape(self, in_shape: Shape, shapes: Shapes) -> Shape:
        channels = image("batchnorm2d", in_shape)[0]
        if self.dim is not None and self.dim != channels:
            raise LayerMismatch(
                f"dim is {self.dim} but the previous layer puts out {channels} channels "
                f"{batch_shape(in_shape)}",
                at=("dim",),
            )
        return in_shape

    def param_count(self, in_shape: Shape) -> int:
        return 2 * in_shape[0]  # weight and bias; running statistics are not trained

    def flops(self, in_shape: Shape) -> int:
        return 4 * in_shape[0] * in_shape[1] * in_shape[2]  # x − mean, ÷ std, × w, + b

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        return nn.BatchNorm2d(in_shape[0], eps=self.eps, momentum=self.momentum)
