"""Neural-network modules: `Module`, `Parameter` and the layers built on them.

`needle.nn.basic` holds the module machinery and the dense layers (Linear, the norms,
Dropout, the activations, the loss); `needle.nn.conv` the convolutional ones (Conv,
BatchNorm2d); `needle.nn.sequence` those for sequences (Embedding, RNNCell, RNN, LSTMCell,
LSTM); `needle.nn.transformer` attention and the Transformer. Everything public is here, as
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
    Residual,
    Sequential,
    Sigmoid,
    SoftmaxLoss,
    Tanh,
)
from needle.nn.conv import BatchNorm2d, Conv
from needle.nn.sequence import LSTM, RNN, Embedding, LSTMCell, RNNCell
from needle.nn.transformer import (
    AttentionLayer,
    MultiHeadAttention,
    Transformer,
    TransformerLayer,
)

__all__ = [
    "AttentionLayer",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv",
    "Dropout",
    "Embedding",
    "Flatten",
    "Identity",
    "LayerNorm1d",
    "LSTM",
    "LSTMCell",
    "Linear",
    "Module",
    "MultiHeadAttention",
    "Parameter",
    "RNN",
    "RNNCell",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "SoftmaxLoss",
    "Tanh",
    "Transformer",
    "TransformerLayer",
]
