"""From a validated config to a needle model: check that the layers fit, then build them.

Input sizes are inferred: each Linear takes the features the previous layer puts out, and the
first takes the data's. `plan_model` walks the layers once, computing each one's output size
and parameter count and refusing, with the config position, anything that cannot work: a
residual block that changes the feature count, a norm whose `dim` disagrees with its input, a
last layer whose size is not the number of classes. `build_model` constructs the plan with
`needle.nn`, drawing weights from numpy's global RNG in layer order, as the course does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from needle import init, nn
from needle.train.config import TrainConfig
from needle.train.layers import Linear, ModelConfig, Residual
from needle.train.source import KeyPath


@dataclass(frozen=True)
class LayerSummary:
    """One row of a model summary: a layer, its output shape and parameters."""

    index: str  # "3" at the top level, "3.1" inside the residual block at 3
    layer: str  # "linear", "relu", "residual", ...
    out_features: int  # the output is (batch, out_features)
    params: int
    init: str  # "kaiming_uniform(nonlinearity=relu)" for linear layers, else ""
    depth: int  # nesting inside residual blocks


def plan_model(config: TrainConfig, in_features: int, num_classes: int) -> list[LayerSummary]:
    """Check that `config.model` fits data of `in_features` features and `num_classes`
    classes; return a summary row per layer. Raises UsageError at the culprit's position."""
    rows: list[LayerSummary] = []
    out = _plan(config, config.model.layers, ("model", "layers"), "", 0, in_features, rows)
    if out != num_classes:
        at: KeyPath = ("model", "layers")
        for i, layer in enumerate(config.model.layers):
            if isinstance(layer, Linear):
                at = ("model", "layers", i, "linear", "out_features")
        raise config.error(
            at,
            f"the model puts out {out} values per sample but the data has {num_classes} "
            f"classes; the last layer must put out {num_classes}",
        )
    return rows


def _plan(
    config: TrainConfig,
    layers: list,
    at: KeyPath,
    prefix: str,
    depth: int,
    features: int,
    rows: list[LayerSummary],
) -> int:
    for i, layer in enumerate(layers):
        path, index = at + (i,), f"{prefix}{i}"
        params, scheme = 0, ""
        if isinstance(layer, Linear):
            params = features * layer.out_features + layer.out_features * layer.bias
            name, args = config.model.initializer(layer)
            scheme = name + "(" + ", ".join(f"{k}={v}" for k, v in args.items()) + ")"
            features = layer.out_features
        elif layer.type in ("batchnorm1d", "layernorm1d"):
            if layer.dim is not None and layer.dim != features:
                raise config.error(
                    path + (layer.type, "dim"),
                    f"dim is {layer.dim} but the previous layer puts out {features} features",
                )
            params = 2 * features
        elif isinstance(layer, Residual):
            rows.append(LayerSummary(index, "residual", features, 0, "", depth))
            first = len(rows)
            inner = _plan(
                config,
                layer.layers,
                path + ("residual", "layers"),
                f"{index}.",
                depth + 1,
                features,
                rows,
            )
            if inner != features:
                raise config.error(
                    path + ("residual",),
                    f"the block takes {features} features and puts out {inner}; a residual "
                    f"adds its input back, so the block must end with {features}",
                )
            total = sum(row.params for row in rows[first:] if row.depth == depth + 1)
            rows[first - 1] = LayerSummary(index, "residual", features, total, "", depth)
            continue
        rows.append(LayerSummary(index, layer.type, features, params, scheme, depth))
    return features


def build_model(config: TrainConfig, in_features: int, num_classes: int) -> nn.Sequential:
    """The `nn.Sequential` that `config.model` describes, for data of `in_features` features
    and `num_classes` classes, checked first by `plan_model`.

    Weights are drawn from numpy's global RNG in layer order: seed it first (`np.random.seed`)
    for reproducible models. With the default init (kaiming_uniform) a Linear layer draws
    exactly what `nn.Linear` draws.

    Example:
        >>> config = load_config("configs/quickstart.yaml")  # doctest: +SKIP
        >>> np.random.seed(config.seed)
        >>> model = build_model(config, in_features=2, num_classes=3)
    """
    plan_model(config, in_features, num_classes)
    return nn.Sequential(*_build(config.model, config.model.layers, in_features))


def _build(model: ModelConfig, layers: list, features: int) -> list[nn.Module]:
    modules: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, Linear):
            modules.append(_linear(model, layer, features))
            features = layer.out_features
        elif isinstance(layer, Residual):
            modules.append(nn.Residual(nn.Sequential(*_build(model, layer.layers, features))))
        elif layer.type == "dropout":
            modules.append(nn.Dropout(layer.p))
        elif layer.type == "batchnorm1d":
            modules.append(nn.BatchNorm1d(features, eps=layer.eps, momentum=layer.momentum))
        elif layer.type == "layernorm1d":
            modules.append(nn.LayerNorm1d(features, eps=layer.eps))
        else:
            modules.append(_PLAIN[layer.type]())
    return modules


_PLAIN = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
    "flatten": nn.Flatten,
}


def _linear(model: ModelConfig, layer: Linear, in_features: int) -> nn.Linear:
    """nn.Linear with weight ~ init(in, out) and bias ~ init(out, 1) as a row, the course's
    convention for any initializer."""
    name, args = model.initializer(layer)
    draw = functools.partial(init.get_initializer(name), **args)
    return nn.Linear(in_features, layer.out_features, bias=layer.bias, initializer=draw)
