"""The layer types a config names, one definition each, registered by name.

    registry      LayerSpec (what a layer type defines), register, LAYER_TYPES, walk_layers
    initializers  the `init` / `init_args` settings of layers that draw weights
    dense         linear
    activations   relu, tanh, sigmoid, identity
    reshape       flatten, reshape
    dropout       dropout
    norms         batchnorm1d, layernorm1d
    residual      residual (a block of layers, added back to its input)
    conv          conv, batchnorm2d (image samples: channels, height, width)
    pool          maxpool2d, avgpool2d, global_avgpool
    sequence      embedding, rnn, lstm, transformer (token sequences)
    model         the model: section: a layer's written forms, ModelConfig

To add a layer type: a LayerSpec subclass with `@register` in its family's module (or a new
module imported in model.py), a row in docs/config.md's layer table, and its tests.
"""

from needle.train.layers.activations import Identity, ReLU, Sigmoid, Tanh
from needle.train.layers.conv import BatchNorm2d, Conv
from needle.train.layers.dense import Linear
from needle.train.layers.dropout import Dropout
from needle.train.layers.initializers import initializer_arguments
from needle.train.layers.model import Layer, ModelConfig, normalize_layer
from needle.train.layers.norms import BatchNorm1d, LayerNorm1d
from needle.train.layers.pool import AvgPool2d, GlobalAvgPool, MaxPool2d
from needle.train.layers.registry import (
    LAYER_TYPES,
    LayerMismatch,
    LayerSpec,
    Shape,
    batch_shape,
    register,
    walk_layers,
)
from needle.train.layers.reshape import Flatten, Reshape
from needle.train.layers.residual import Residual

__all__ = [
    "LAYER_TYPES",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv",
    "Dropout",
    "Flatten",
    "GlobalAvgPool",
    "Identity",
    "Layer",
    "LayerMismatch",
    "LayerNorm1d",
    "LayerSpec",
    "Linear",
    "MaxPool2d",
    "ModelConfig",
    "ReLU",
    "Reshape",
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
