"""Neural-network modules: `Module`, `Parameter` and the layers built on them.

`needle.nn.basic` holds the module machinery and the dense layers (Linear, the norms,
Dropout, the activations, the loss); `needle.nn.conv` the convolutional ones (Conv,
BatchNorm2d); `needle.nn.pool` the pools (MaxPool2d, AvgPool2d, GlobalAvgPool2d);
`needle.nn.sequence` those for sequences (Embedding, RNNCell, RNN, LSTMCell, LSTM);
`needle.nn.transformer` attention and the Transformer. Everything public is here, as
`nn.Linear`, `nn.Conv`.
"""

from needle.nn.basic import (
    BatchNorm1d,
    Dropout,
    Flatten,
    Identity,
    LayerNorm1d,
    Linear,
    Module,
    Parameter,
    ReLU,
    Reshape,
    Residual,
    Sequential,
    Sigmoid,
    SoftmaxLoss,
    Tanh,
)
from needle.nn.conv import BatchNorm2d, Conv
from needle.nn.pool import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from needle.nn.sequence import LSTM, RNN, Embedding, LSTMCell, RNNCell
from needle.nn.transformer import (
    AttentionLayer,
    MultiHeadAttention,
    Transformer,
    TransformerLayer,
)

__all__ = [
    "AttentionLayer",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv",
    "Dropout",
    "Embedding",
    "Flatten",
    "GlobalAvgPool2d",
    "Identity",
    "LayerNorm1d",
    "LSTM",
    "LSTMCell",
    "Linear",
    "MaxPool2d",
    "Module",
    "MultiHeadAttention",
    "Parameter",
    "RNN",
    "RNNCell",
    "ReLU",
    "Reshape",
    "Residual",
    "Sequential",
    "Sigmoid",
    "SoftmaxLoss",
    "Tanh",
    "Transformer",
    "TransformerLayer",
]
