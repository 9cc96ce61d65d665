"""Pooling layers on NCHW images: `MaxPool2d`, `AvgPool2d` (beyond the course) and
`GlobalAvgPool2d`.

The window pools take and return (N, C, H, W) and compute in the NHWC layout of the pool
ops, as `Conv` does; none holds a parameter or draws a random number.
"""

from __future__ import annotations

from needle import ops
from needle.autograd import Tensor
from needle.errors import UsageError
from needle.nn.basic import Module
from needle.nn.conv import to_nchw, to_nhwc


def _images(x: Tensor, layer: str) -> None:
    if x.ndim != 4:
        raise UsageError(f"{layer} takes NCHW images (N, C, H, W); got shape {x.shape}")


class MaxPool2d(Module):
    """The maximum of each kernel_size × kernel_size window of every channel, windows every
    `stride` rows and columns (default: kernel_size, windows that do not overlap), no
    padding: (N, C, H, W) → (N, C, (H − k)//s + 1, (W − k)//s + 1). Of tied entries the
    first in row-major window order takes the gradient."""

    def __init__(self, kernel_size: int, stride: int | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        ops.MaxPool2d(self.kernel_size, self.stride)  # refuses bad sizes now, not at forward

    def forward(self, x: Tensor) -> Tensor:
        _images(x, "MaxPool2d")
        return to_nchw(ops.maxpool2d(to_nhwc(x), self.kernel_size, self.stride))


class AvgPool2d(Module):
    """The mean of each kernel_size × kernel_size window of every channel, windows every
    `stride` rows and columns (default: kernel_size), no padding: shapes as `MaxPool2d`."""

    def __init__(self, kernel_size: int, stride: int | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        ops.AvgPool2d(self.kernel_size, self.stride)

    def forward(self, x: Tensor) -> Tensor:
        _images(x, "AvgPool2d")
        return to_nchw(ops.avgpool2d(to_nhwc(x), self.kernel_size, self.stride))


class GlobalAvgPool2d(Module):
    """The mean of each channel over all its pixels: (N, C, H, W) → (N, C),
    y[n, c] = (1 / HW) Σ_{i, j} x[n, c, i, j]. A summation and a division, so its
    gradient is theirs."""

    def forward(self, x: Tensor) -> Tensor:
        _images(x, "GlobalAvgPool2d")
        n, c, h, w = x.shape
        return ops.summation(ops.reshape(x, (n, c, h * w)), axes=2) / (h * w)
