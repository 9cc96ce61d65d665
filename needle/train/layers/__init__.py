"""The layer types a config names, one definition each, registered by name.

    registry      LayerSpec (what a layer type defines), register, LAYER_TYPES, walk_layers
    initializers  the `init` / `init_args` settings of layers that draw weights
    dense         linear
    activations   relu, tanh, sigmoid, identity
    reshape       flatten
    dropout       dropout
    norms         batchnorm1d, layernorm1d
    residual      residual (a block of layers, added back to its input)
    sequence      embedding, rnn, lstm, transformer (token sequences)
    model         the model: section: a layer's written forms, ModelConfig

To add a layer type: a LayerSpec subclass with `@register` in its family's module (or a new
module imported in model.py), a row in docs/config.md's layer table, and its tests.
"""

from needle.train.layers.activations import Identity, ReLU, Sigmoid, Tanh
from needle.train.layers.dense import Linear
from needle.train.layers.dropout import Dropout
from needle.train.layers.initializers import initializer_arguments
from needle.train.layers.model import Layer, ModelConfig, normalize_layer
from needle.train.layers.norms import BatchNorm1d, LayerNorm1d
from needle.train.layers.registry import (
    LAYER_TYPES,
    LayerMismatch,
    LayerSpec,
    Shape,
    batch_shape,
    register,
    walk_layers,
)
from needle.train.layers.reshape import Flatten
from needle.train.layers.residual import Residual

__all__ = [
    "LAYER_TYPES",
    "BatchNorm1d",
    "Dropout",
    "Flatten",
    "Identity",
    "Layer",
    "LayerMismatch",
    "LayerNorm1d",
    "LayerSpec",
    "Linear",
    "ModelConfig",
    "ReLU",
    "Residual",
    "Shape",
    "Sigmoid",
    "Tanh",
    "batch_shape",
    "initializer_arguments",
    "normalize_layer",
    "register",
    "walk_layers",
]
