"""Model builders from the course: the residual MLP it trains on MNIST and the ResNet-9 it
trains on CIFAR-10.

Layers are constructed in execution order, so a seeded model draws its weights in the same
order as the course's needle.
"""

from __future__ import annotations

from collections.abc import Callable

from needle import nn
from needle.autograd import Device
from needle.init import Dtype

Norm = Callable[[int], nn.Module]


def ResidualBlock(  # noqa: N802 - named like a class, as the course's API has it
    dim: int, hidden_dim: int, norm: Norm = nn.BatchNorm1d, drop_prob: float = 0.1
) -> nn.Sequential:
    """x ↦ ReLU(x + norm(W₂ · Dropout(ReLU(norm(W₁ x))))), with W₁: dim→hidden_dim and
    W₂: hidden_dim→dim (both `nn.Linear` with bias)."""
    return nn.Sequential(
        nn.Residual(
            nn.Sequential(
                nn.Linear(dim, hidden_dim),
                norm(hidden_dim),
                nn.ReLU(),
                nn.Dropout(drop_prob),
                nn.Linear(hidden_dim, dim),
                norm(dim),
            )
        ),
        nn.ReLU(),
    )


def MLPResNet(  # noqa: N802 - named like a class, as the course's API has it
    dim: int,
    hidden_dim: int = 100,
    num_blocks: int = 3,
    num_classes: int = 10,
    norm: Norm = nn.BatchNorm1d,
    drop_prob: float = 0.1,
) -> nn.Sequential:
    """Linear(dim→hidden_dim), ReLU, `num_blocks` × ResidualBlock(hidden_dim, hidden_dim // 2),
    Linear(hidden_dim→num_classes)."""
    return nn.Sequential(
        nn.Linear(dim, hidden_dim),
        nn.ReLU(),
        *[
            ResidualBlock(hidden_dim, hidden_dim // 2, norm=norm, drop_prob=drop_prob)
            for _ in range(num_blocks)
        ],
        nn.Linear(hidden_dim, num_classes),
    )


def ConvBN(  # noqa: N802 - named like a class, as the course's API has it
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    device: Device | None = None,
    dtype: Dtype = "float32",
) -> nn.Sequential:
    """Conv(in→out, kernel_size, stride) → BatchNorm2d(out) → ReLU, on NCHW images."""
    return nn.Sequential(
        nn.Conv(in_channels, out_channels, kernel_size, stride=stride, device=device, dtype=dtype),
        nn.BatchNorm2d(out_channels, device=device, dtype=dtype),
        nn.ReLU(),
    )


def ResNet9(  # noqa: N802 - named like a class, as the course's API has it
    device: Device | None = None, dtype: Dtype = "float32"
) -> nn.Sequential:
    """The course's ResNet-9 for (N, 3, 32, 32) images and 10 classes, layers (and so weight
    draws) in this order:

        ConvBN(3, 16, 7, 4), ConvBN(16, 32, 3, 2),
        Residual(ConvBN(32, 32, 3, 1) → ConvBN(32, 32, 3, 1)),
        ConvBN(32, 64, 3, 2), ConvBN(64, 128, 3, 2),
        Residual(ConvBN(128, 128, 3, 1) → ConvBN(128, 128, 3, 1)),
        Flatten, Linear(128, 128), ReLU, Linear(128, 10)

    The strides take 32×32 down to 8, 4, 2 and 1, so Flatten gives 128 features.
    """

    def conv_bn(a: int, b: int, k: int, s: int) -> nn.Sequential:
        return ConvBN(a, b, k, s, device=device, dtype=dtype)

    def residual(channels: int) -> nn.Residual:
        return nn.Residual(
            nn.Sequential(conv_bn(channels, channels, 3, 1), conv_bn(channels, channels, 3, 1))
        )

    return nn.Sequential(
        conv_bn(3, 16, 7, 4),
        conv_bn(16, 32, 3, 2),
        residual(32),
        conv_bn(32, 64, 3, 2),
        conv_bn(64, 128, 3, 2),
        residual(128),
        nn.Flatten(),
        nn.Linear(128, 128, device=device, dtype=dtype),
        nn.ReLU(),
        nn.Linear(128, 10, device=device, dtype=dtype),
    )
