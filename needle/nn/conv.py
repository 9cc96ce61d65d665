"""Convolutional layers on NCHW images: `Conv` and `BatchNorm2d`.

Both take and return (N, C, H, W), as the course's models pass images. Conv computes in NHWC
(`ops.conv_nchw`: its NCHW inputs and outputs are views of NHWC arrays), and BatchNorm2d
standardizes the view where it lies, so a stack of them moves no axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from needle import init, ops
from needle.autograd import Device, Tensor
from needle.errors import UsageError
from needle.init import Dtype
from needle.nn.basic import BatchNorm1d, Module, Parameter


def to_nhwc(x: Tensor) -> Tensor:
    """(N, C, H, W) → (N, H, W, C), one permute node."""
    return ops.permute(x, (0, 2, 3, 1))


def to_nchw(x: Tensor) -> Tensor:
    """(N, H, W, C) → (N, C, H, W), one permute node."""
    return ops.permute(x, (0, 3, 1, 2))


def _size(value: Any, name: str, low: int = 1) -> int:
    """A size given as an int or a tuple (whose first entry counts, as in the course)."""
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise UsageError(f"Conv: {name} must be an integer ≥ {low} (got {value!r})")
    return int(value)


class Conv(Module):
    """2-D convolution of NCHW images: y = conv(x, W) + b, zero padding p around H and W
    (default (k − 1)//2, the course's, so a stride-1 layer with an odd kernel keeps H and W).

    `weight` (k, k, in_channels, out_channels) ~ kaiming_uniform(in·k², out·k²) with the
    draw in the kernel's shape; then `bias` (out_channels,) ~ U(−1/√(in·k²), 1/√(in·k²)), one
    `rand` (the course's order). Tuple sizes count by their first entry. `padding` and
    `initializer`, beyond the course, are keyword-only and change no draw by default: the
    weight is `initializer(in·k², out·k², shape=(k, k, in, out))` (any initializer of
    `needle.init`, e.g. `functools.partial(init.xavier_normal, gain=2.0)`); the bias keeps
    its U(−1/√(in·k²), 1/√(in·k²)).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        bias: bool = True,
        device: Device | None = None,
        dtype: Dtype = "float32",
        *,
        padding: int | None = None,
        initializer: Callable[..., Tensor] = init.kaiming_uniform,
    ) -> None:
        super().__init__()
        self.in_channels = _size(in_channels, "in_channels")
        self.out_channels = _size(out_channels, "out_channels")
        self.kernel_size = k = _size(kernel_size, "kernel_size")
        self.stride = _size(stride, "stride")
        self.padding = (k - 1) // 2 if padding is None else _size(padding, "padding", low=0)
        fan_in, fan_out = self.in_channels * k * k, self.out_channels * k * k
        shape = (k, k, self.in_channels, self.out_channels)
        self.weight = Parameter(
            initializer(fan_in, fan_out, shape=shape, device=device, dtype=dtype)
        )
        self.bias: Parameter | None = None
        if bias:
            bound = 1 / math.sqrt(fan_in)
            self.bias = Parameter(
                init.rand(self.out_channels, low=-bound, high=bound, device=device, dtype=dtype)
            )

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise UsageError(
                f"Conv takes NCHW images with {self.in_channels} channels, (N, "
                f"{self.in_channels}, H, W); got shape {x.shape}"
            )
        # NCHW in and out as views of the NHWC arrays conv computes: no permute nodes.
        return ops.conv_nchw(x, self.weight, self.stride, self.padding, bias=self.bias)


class BatchNorm2d(BatchNorm1d):
    """Batch normalization of each channel of NCHW images, over the batch and every pixel:
    BatchNorm1d's statistics and affine map over axes (0, 2, 3). `weight`, `bias` and the
    running statistics have shape (C,).

    No axis is moved: an NCHW view of a conv's NHWC output keeps its memory, and its channel
    statistics are the column sums of that memory (see `numpy_api.sum`)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.dim:
            raise UsageError(
                f"BatchNorm2d takes NCHW images with {self.dim} channels; got shape {x.shape}"
            )
        if not self.training:
            return self._evaluate(x, axis=1)
        return self._normalize(x, (0, 2, 3))
