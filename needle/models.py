"""Model builders from the course: the residual MLP it trains on MNIST.

Layers are constructed in execution order, so a seeded model draws its weights in the same
order as the course's needle.
"""

from __future__ import annotations

from collections.abc import Callable

from needle import nn

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
