"""What a layer type is: one class that says, in one place, its name and settings (a pydantic
spec with its short form), the shape it puts out for the shape it takes, its parameter count,
and the `nn` module it builds. `register` adds a class to `LAYER_TYPES`, which the config, the
JSON Schema, the model builder, the docs test and the mutation test all read.

Shapes are per sample, without the batch: `(784,)` for flat features, `(1, 28, 28)` for an
image, `(seq_len,)` for a sequence of tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Protocol

from needle import nn
from needle.train.fields import Strict
from needle.train.source import KeyPath

Shape = tuple[int, ...]


def batch_shape(shape: Shape) -> str:
    """A sample shape as the batches it makes: (64,) -> "(batch, 64)"."""
    return "(" + ", ".join(["batch", *(str(size) for size in shape)]) + ")"


class LayerMismatch(Exception):
    """A layer that cannot take the shape it is given. `at` is the setting to blame, below
    the layer's type key (`("dim",)`, or `()` for the layer itself); the model builder adds
    the config position."""

    def __init__(self, message: str, *, at: KeyPath = ()) -> None:
        super().__init__(message)
        self.message, self.at = message, at


def features(layer: str, in_shape: Shape) -> int:
    """The feature count of a flat sample shape, for layers that take (batch, features);
    LayerMismatch naming both shapes for any other."""
    if len(in_shape) == 1:
        return in_shape[0]
    flat = (math.prod(in_shape),)
    raise LayerMismatch(
        f"{layer} takes (batch, features) but is given {batch_shape(in_shape)}; a flatten "
        f"before it makes {batch_shape(flat)}"
    )


def image(layer: str, in_shape: Shape) -> tuple[int, int, int]:
    """(channels, height, width) of an image sample shape, for layers that take NCHW batches;
    LayerMismatch naming the shape for any other."""
    if len(in_shape) == 3:
        return in_shape  # type: ignore[return-value]
    hint = "a reshape: [C, H, W] before it makes images of flat features"
    if len(in_shape) != 1:
        hint = "images have three sizes per sample, (channels, height, width)"
    raise LayerMismatch(
        f"{layer} takes images (batch, channels, height, width) but is given "
        f"{batch_shape(in_shape)}; {hint}"
    )


class Shapes(Protocol):
    """What a layer's shape rule may ask of the model being planned."""

    num_classes: int  # the data's classes (a text's vocabulary size, for an embedding)

    def block(self, layers: Sequence[LayerSpec], in_shape: Shape, at: KeyPath) -> Shape:
        """The shape a nested Sequential (`at`, below the layer's type key) puts out."""
        ...


class Builder(Shapes, Protocol):
    """What a layer may ask of the model being built."""

    def sequential(self, layers: Sequence[LayerSpec], in_shape: Shape) -> nn.Sequential:
        """A nested Sequential, built in layer order."""
        ...

    def initializer(self, layer: LayerSpec) -> Callable[..., Any]:
        """The layer's configured initializer with its arguments bound: called with
        (fan_in, fan_out) like `needle.init`'s."""
        ...


class LayerSpec(Strict):
    """One layer type: its settings are the pydantic fields; `type` is its registry name, filled
    in from the key it is written under.

    Class settings:
        short: the field a short form fills (`linear: 64` is out_features), or None.
        sets_size: the field that decides the output's size, where an output of the wrong
            size is reported (linear: out_features), or None.
    """

    type: str
    short: ClassVar[str | None] = None
    sets_size: ClassVar[str | None] = None

    def out_shape(self, in_shape: Shape, shapes: Shapes) -> Shape:
        """The sample shape this layer puts out for `in_shape`; LayerMismatch if it cannot
        take it. The default keeps the shape (activations, dropout)."""
        return in_shape

    def param_count(self, in_shape: Shape) -> int:
        """Trainable numbers this layer holds itself (a nested block's are counted apart)."""
        return 0

    def flops(self, in_shape: Shape) -> int:
        """Floating-point operations of this layer's forward pass per sample, a multiply-add
        counted as 2 (a nested block's are counted apart). The default, 0, is for layers
        whose cost is negligible beside the products (activations, reshapes, dropout)."""
        return 0

    def param_count_in(self, in_shape: Shape, shapes: Shapes) -> int:
        """`param_count`, for layers whose count depends on the data too (an embedding's on
        the vocabulary)."""
        return self.param_count(in_shape)

    def build(self, in_shape: Shape, builder: Builder) -> nn.Module:
        """The `nn` module, drawing its weights (if any) from numpy's global RNG."""
        raise NotImplementedError

    def initializer_settings(self) -> tuple[str | None, dict[str, Any] | None] | None:
        """(init, init_args) as written on a layer that draws weights, else None."""
        return None

    def blocks(self) -> Iterable[tuple[KeyPath, Sequence[LayerSpec]]]:
        """The nested Sequentials this layer holds, each with its key below the type key."""
        return ()


LAYER_TYPES: dict[str, type[LayerSpec]] = {}


def register(cls: type[LayerSpec]) -> type[LayerSpec]:
    """Add a layer type, named by its `type` default, to LAYER_TYPES (a class decorator).
    Names are listed in messages and the schema in the order they are registered."""
    name = cls.model_fields["type"].default
    if not isinstance(name, str) or name in LAYER_TYPES:
        raise ValueError(f"{cls.__name__} needs a new name as its type default (got {name!r})")
    if cls.short is not None and cls.short not in cls.model_fields:
        raise ValueError(f"{cls.__name__}.short names no field of it: {cls.short!r}")
    LAYER_TYPES[name] = cls
    return cls


def walk_layers(layers: Sequence[LayerSpec], at: KeyPath) -> Iterable[tuple[KeyPath, LayerSpec]]:
    """(path, layer) for every layer, nested blocks' contents included, in build order."""
    for i, layer in enumerate(layers):
        yield at + (i,), layer
        for below, block in layer.blocks():
            yield from walk_layers(block, at + (i, layer.type) + below)
