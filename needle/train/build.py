"""From a validated config to a needle model: check that the layers fit, then build them.

Input shapes are inferred: each layer takes the sample shape the previous one puts out, and
the first takes the data's. `plan_model` walks the layers once, asking each layer type (see
`needle.train.layers`) for its output shape and parameter count, and refuses, with the config
position, anything that cannot work: a residual block that changes the shape, a norm whose
`dim` disagrees with its input, a last layer that does not put out one value per class.
`build_model` builds each layer's `nn` module, drawing weights from numpy's global RNG in layer
order, as the course does.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from needle import init, nn
from needle.train.config import TrainConfig
from needle.train.layers import LayerMismatch, LayerSpec, Shape, batch_shape
from needle.train.source import KeyPath


@dataclass(frozen=True)
class LayerSummary:
    """One row of a model summary: a layer, its output shape and parameters."""

    index: str  # "3" at the top level, "3.1" inside the residual block at 3
    layer: str  # "linear", "relu", "residual", ...
    out_shape: Shape  # per sample: the output is (batch, *out_shape)
    params: int  # its own and its blocks'
    init: str  # "kaiming_uniform(nonlinearity=relu)" for layers that draw weights, else ""
    depth: int  # nesting inside blocks (residual)
    at: KeyPath  # where the config writes it: ("model", "layers", 3, "residual", "layers", 1)
    flops: int = 0  # per sample, forward pass, a multiply-add as 2; its own and its blocks'

    @property
    def out_features(self) -> int:
        """Numbers per sample put out (out_shape's only size, for flat data)."""
        return math.prod(self.out_shape)


def total_flops(rows: Sequence[LayerSummary]) -> int:
    """A planned model's floating-point operations per sample, forward pass (the top-level
    rows: a block's rows are in its layer's)."""
    return sum(row.flops for row in rows if row.depth == 0)


def plan_model(
    config: TrainConfig, input_shape: Shape, num_classes: int, *, label_shape: Shape = ()
) -> list[LayerSummary]:
    """Check that `config.model` fits samples of `input_shape` and `num_classes` classes,
    putting out `label_shape` + (num_classes,) per sample (a language model's label_shape is
    (seq_len,): a class per position); return a summary row per layer, in build order. Raises
    UsageError at the culprit's position."""
    planner = _Planner(config, [], num_classes)
    out = planner.walk(config.model.layers, ("model", "layers"), "", 0, tuple(input_shape))
    if out != (*label_shape, num_classes):
        at: KeyPath = ("model", "layers")
        for i, layer in enumerate(config.model.layers):
            if layer.sets_size is not None:
                at = ("model", "layers", i, layer.type, layer.sets_size)
        puts_out = f"{out[0]} values per sample" if len(out) == 1 else batch_shape(out)
        if label_shape:
            must = f"; the last layer must put out {batch_shape((*label_shape, num_classes))}"
            raise config.error(
                at,
                f"the model puts out {puts_out} but the data's vocabulary is {num_classes} "
                f"tokens, a next token at each of {label_shape[0]} positions{must}",
            )
        raise config.error(
            at,
            f"the model puts out {puts_out} but the data has {num_classes} classes; the last "
            f"layer must put out {num_classes}",
        )
    return planner.rows


@dataclass
class _Planner:
    """Walks the layers for their shapes and summary rows."""

    config: TrainConfig
    rows: list[LayerSummary]
    num_classes: int

    def walk(
        self, layers: Sequence[LayerSpec], at: KeyPath, prefix: str, depth: int, shape: Shape
    ) -> Shape:
        for i, layer in enumerate(layers):
            here = _Here(self, at + (i, layer.type), f"{prefix}{i}", depth)
            first = len(self.rows)
            try:
                out = layer.out_shape(shape, here)  # a block's rows are added meanwhile
            except LayerMismatch as err:
                raise self.config.error(here.at + err.at, err.message) from None
            inner = [row for row in self.rows[first:] if row.depth == depth + 1]
            params = layer.param_count_in(shape, here) + sum(row.params for row in inner)
            flops = layer.flops(shape) + sum(row.flops for row in inner)
            scheme = _scheme(self.config, layer)
            row = LayerSummary(
                here.index, layer.type, out, params, scheme, depth, at + (i,), flops=flops
            )
            self.rows.insert(first, row)
            shape = out
        return shape


@dataclass(frozen=True)
class _Here:
    """A layer's place in the plan (`at` ends with its type key): its blocks' rows go below
    its own."""

    planner: _Planner
    at: KeyPath
    index: str
    depth: int

    @property
    def num_classes(self) -> int:
        return self.planner.num_classes

    def block(self, layers: Sequence[LayerSpec], in_shape: Shape, at: KeyPath) -> Shape:
        return self.planner.walk(layers, self.at + at, f"{self.index}.", self.depth + 1, in_shape)


def _scheme(config: TrainConfig, layer: LayerSpec) -> str:
    if layer.initializer_settings() is None:
        return ""
    name, args = config.model.initializer(layer)
    return name + "(" + ", ".join(f"{k}={v}" for k, v in args.items()) + ")"


def build_model(
    config: TrainConfig, input_shape: Shape, num_classes: int, *, label_shape: Shape = ()
) -> nn.Sequential:
    """The `nn.Sequential` that `config.model` describes, for samples of `input_shape` and
    `num_classes` classes, checked first by `plan_model`.

    Weights are drawn from numpy's global RNG in layer order: seed it first (`np.random.seed`)
    for reproducible models. With the default init (kaiming_uniform) a Linear layer draws
    exactly what `nn.Linear` draws.

    Example:
        >>> config = load_config("configs/quickstart.yaml")  # doctest: +SKIP
        >>> np.random.seed(config.seed)
        >>> model = build_model(config, input_shape=(2,), num_classes=3)
    """
    plan_model(config, input_shape, num_classes, label_shape=label_shape)
    return _Builder(config, num_classes).sequential(config.model.layers, tuple(input_shape))


@dataclass(frozen=True)
class _Builder:
    """Builds planned layers: each is given its input shape and its initializer."""

    config: TrainConfig
    num_classes: int

    def sequential(self, layers: Sequence[LayerSpec], in_shape: Shape) -> nn.Sequential:
        modules, shape = [], in_shape
        for layer in layers:
            modules.append(layer.build(shape, self))
            shape = layer.out_shape(shape, self)
        return nn.Sequential(*modules)

    def block(self, layers: Sequence[LayerSpec], in_shape: Shape, at: KeyPath) -> Shape:
        for layer in layers:
            in_shape = layer.out_shape(in_shape, self)
        return in_shape

    def initializer(self, layer: LayerSpec) -> Callable[..., Any]:
        name, args = self.config.model.initializer(layer)
        return functools.partial(init.get_initializer(name), **args)
