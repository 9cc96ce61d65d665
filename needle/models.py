"""Model builders from the course: the residual MLP it trains on MNIST, the ResNet-9 it
trains on CIFAR-10 and the language model it trains on Penn Treebank.

Layers are constructed in execution order, so a seeded model draws its weights in the same
order as the course's needle.
"""

from __future__ import annotations

from collections.abc import Callable

from needle import nn
from needle.autograd import Device, Tensor
from needle.errors import UsageError, unknown_choice
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


SEQ_MODELS = ("rnn", "lstm", "transformer")


class LanguageModel(nn.Module):
    """Next-token logits for a (T, B) sequence of token ids:
    Embedding(output_size → embedding_size) → `seq_model` → Linear(→ output_size).

    `seq_model` is 'rnn' or 'lstm' (`num_layers` layers of `hidden_size`, the Linear taking
    hidden_size), or 'transformer' (Transformer(embedding_size, hidden_size, num_layers,
    sequence_len=seq_len), the Linear taking embedding_size). Built, and so drawn, in that
    order: embedding, seq_model, linear.

    `forward(x (T, B), h=None)` → (logits (T·B, output_size), h): the sequence model's final
    state, to carry into the next window (detached) as the course's training loop does.
    """

    def __init__(
        self,
        embedding_size: int,
        output_size: int,
        hidden_size: int,
        num_layers: int = 1,
        seq_model: str = "rnn",
        seq_len: int = 40,
        device: Device | None = None,
        dtype: Dtype = "float32",
    ) -> None:
        super().__init__()
        if seq_model not in SEQ_MODELS:
            raise unknown_choice("seq_model", seq_model, SEQ_MODELS)
        self.embedding = nn.Embedding(output_size, embedding_size, device=device, dtype=dtype)
        features = hidden_size
        if seq_model == "rnn":
            self.seq_model = nn.RNN(
                embedding_size, hidden_size, num_layers, device=device, dtype=dtype
            )
        elif seq_model == "lstm":
            self.seq_model = nn.LSTM(
                embedding_size, hidden_size, num_layers, device=device, dtype=dtype
            )
        else:
            transformer = getattr(nn, "Transformer", None)  # looked up late: written separately
            if transformer is None:
                raise UsageError(
                    "seq_model 'transformer' needs nn.Transformer, which this needle lacks; "
                    "valid here: 'rnn', 'lstm'"
                )
            self.seq_model = transformer(
                embedding_size,
                hidden_size,
                num_layers,
                sequence_len=seq_len,
                device=device,
                dtype=dtype,
            )
            features = embedding_size
        self.linear = nn.Linear(features, output_size, device=device, dtype=dtype)

    def forward(self, x: Tensor, h=None):
        if x.ndim != 2:
            raise UsageError(f"LanguageModel: token ids of shape {x.shape}; expected (T, batch)")
        steps, batch = x.shape
        out, h = self.seq_model(self.embedding(x), h)
        return self.linear(out.reshape((steps * batch, out.shape[2]))), h
