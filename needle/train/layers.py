"""The layer types a config names: one spec class each, the short and long forms, and the
initializer arguments a layer may pass."""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BeforeValidator,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from needle import init
from needle.errors import did_you_mean
from needle.train.fields import (
    Positive,
    PositiveFloat,
    Probability,
    Strict,
    check_choice,
    field_error,
)
from needle.train.source import KeyPath, show_value

# -- layers ----------------------------------------------------------------------------------

# The initializer arguments a config may pass: what each initializer takes besides the fans,
# minus what the model builder decides (dtype, device, requires_grad, the shape of the draw).
_BUILDER_KWARGS = {"dtype", "device", "requires_grad", "shape"}


def initializer_arguments(name: str) -> list[str]:
    """The keyword arguments the initializer `name` accepts from a config."""
    params = inspect.signature(init.get_initializer(name)).parameters.values()
    return [
        p.name
        for p in params
        if p.name not in ("fan_in", "fan_out")
        and p.kind is not p.VAR_KEYWORD
        and p.name not in _BUILDER_KWARGS
    ]


def _check_init_args(name: str, args: dict[str, Any], at: KeyPath) -> None:
    """Raise a positioned error for the first argument `name` cannot take."""
    valid = initializer_arguments(name)
    for key, value in args.items():
        here = at + (key,)
        if key not in valid:
            hint = did_you_mean(str(key), valid) or f" valid: {', '.join(valid)}"
            raise field_error(
                f"{name} takes no argument {show_value(key)};{hint}", at=here, key=True
            )
        if key == "nonlinearity":
            if not isinstance(value, str):
                raise field_error(f"must be a nonlinearity name (got {show_value(value)})", at=here)
            check_choice("nonlinearity", init.NONLINEARITIES, value, at=here)
        elif key == "mode":
            if not isinstance(value, str):
                raise field_error(f"must be fan_in or fan_out (got {show_value(value)})", at=here)
            check_choice("mode", init.FAN_MODES, value, at=here)
        elif key in ("gain", "param"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise field_error(f"must be a number (got {show_value(value)})", at=here)
            if not math.isfinite(value) or (key == "gain" and value <= 0):
                raise field_error(
                    f"must be a finite number{' > 0' * (key == 'gain')} (got {show_value(value)})",
                    at=here,
                )


class LayerSpec(Strict):
    """One layer of the model's Sequential. Subclasses set `type` to their registry name."""

    type: str

    def describe(self) -> str:
        return self.type


class Linear(LayerSpec):
    """`linear: 64` or `linear: {out_features: 64, bias: true, init: ..., init_args: {...}}`."""

    type: Literal["linear"] = "linear"
    out_features: Positive = Field(description="output size")
    bias: bool = Field(True, description="add a learned bias row")
    init: str | None = Field(None, description="this layer's initializer (model.init)")
    init_args: dict[str, Any] | None = Field(
        None, description="arguments for this layer's initializer (model.init_args)"
    )

    @field_validator("init")
    @classmethod
    def _check_init(cls, value: str | None) -> str | None:
        return None if value is None else check_choice("initializer", init.INITIALIZERS, value)


class ReLU(LayerSpec):
    """`relu`: max(x, 0)."""

    type: Literal["relu"] = "relu"


class Tanh(LayerSpec):
    """`tanh`."""

    type: Literal["tanh"] = "tanh"


class Sigmoid(LayerSpec):
    """`sigmoid`: 1 / (1 + e^-x)."""

    type: Literal["sigmoid"] = "sigmoid"


class Identity(LayerSpec):
    """`identity`: y = x."""

    type: Literal["identity"] = "identity"


class Flatten(LayerSpec):
    """`flatten`: (B, d1, d2, ...) -> (B, d1*d2*...)."""

    type: Literal["flatten"] = "flatten"


class Dropout(LayerSpec):
    """`dropout: 0.1` or `dropout: {p: 0.1}`: drop probability p in [0, 1)."""

    type: Literal["dropout"] = "dropout"
    p: Probability = Field(0.5, description="probability of zeroing each entry")


class BatchNorm1d(LayerSpec):
    """`batchnorm1d` or `batchnorm1d: {eps: 1e-5, momentum: 0.1}`; dim from the previous layer."""

    type: Literal["batchnorm1d"] = "batchnorm1d"
    dim: Positive | None = Field(None, description="feature count; inferred when left out")
    eps: PositiveFloat = Field(1e-5, description="added to the variance")
    momentum: Probability = Field(0.1, description="running-statistics update rate")


class LayerNorm1d(LayerSpec):
    """`layernorm1d` or `layernorm1d: {eps: 1e-5}`; dim from the previous layer."""

    type: Literal["layernorm1d"] = "layernorm1d"
    dim: Positive | None = Field(None, description="feature count; inferred when left out")
    eps: PositiveFloat = Field(1e-5, description="added to the variance")


class Residual(LayerSpec):
    """`residual: [layers...]`: y = block(x) + x; the block must end with as many features as
    it starts with."""

    type: Literal["residual"] = "residual"
    layers: list[Layer] = Field(min_length=1, description="the block, a Sequential")


# The shape a short form fills: `linear: 64` is out_features, `dropout: 0.1` is p.
SHORT_FIELDS = {"linear": "out_features", "dropout": "p", "residual": "layers"}


def _normalize_layer(value: Any) -> Any:
    """Turn each written form of a layer into {"type": name, **settings} for the union."""
    if isinstance(value, str):
        name, settings = value, None
    elif isinstance(value, dict) and len(value) == 1:
        ((name, settings),) = value.items()
    elif isinstance(value, dict):
        keys = ", ".join(str(k) for k in value) or "none"
        raise field_error(
            f"a layer is one key, its type, such as {{linear: 64}} (got keys: {keys})"
        )
    else:
        raise field_error(
            "a layer is a name such as relu, or one key such as {linear: 64} "
            f"(got {show_value(value)})"
        )
    if not isinstance(name, str) or name not in LAYER_TYPES:
        hint = did_you_mean(str(name), LAYER_TYPES) or f" valid: {', '.join(LAYER_TYPES)}"
        raise field_error(
            f"unknown layer type {show_value(name)};{hint}", at=(name,), key=True, show=False
        )
    if settings is None:
        return {"type": name}
    if isinstance(settings, dict):
        if "type" in settings:
            raise field_error("unknown key 'type'", at=(name, "type"), key=True)
        return {**settings, "type": name}
    short = SHORT_FIELDS.get(name)
    if short is None:
        raise field_error(
            f"{name} takes a mapping of settings or nothing (got {show_value(settings)})",
            at=(name,),
        )
    return {"type": name, short: settings}


LAYER_CLASSES = (
    Linear,
    ReLU,
    Tanh,
    Sigmoid,
    Identity,
    Flatten,
    Dropout,
    BatchNorm1d,
    LayerNorm1d,
    Residual,
)
LAYER_TYPES: dict[str, type[LayerSpec]] = {
    cls.model_fields["type"].default: cls for cls in LAYER_CLASSES
}

Layer = Annotated[
    Union[LAYER_CLASSES],  # noqa: UP007 - a tuple of classes cannot be spelled with |
    Field(discriminator="type"),
    BeforeValidator(_normalize_layer),
    WithJsonSchema({"needle_layer": True}),  # replaced by json_schema(): the written forms
]
Residual.model_rebuild()


class ModelConfig(Strict):
    """`model:` a Sequential of layers, and the initializer every Linear layer uses."""

    init: str = Field(
        "kaiming_uniform",
        description="initializer for every Linear layer",
        json_schema_extra={"enum": sorted(init.INITIALIZERS)},
    )
    init_args: dict[str, Any] = Field(
        default_factory=dict, description="its arguments, such as {nonlinearity: relu}"
    )
    layers: list[Layer] = Field(min_length=1, description="the layers, in order")

    @field_validator("init")
    @classmethod
    def _check_init(cls, value: str) -> str:
        return check_choice("initializer", init.INITIALIZERS, value)

    @model_validator(mode="after")
    def _check_initializers(self) -> ModelConfig:
        _check_init_args(self.init, self.init_args, ("init_args",))
        for path, layer in walk_layers(self.layers, ("layers",)):
            if isinstance(layer, Linear) and layer.init_args:
                name = layer.init or self.init
                _check_init_args(name, layer.init_args, path + ("linear", "init_args"))
        return self

    def initializer(self, layer: Linear) -> tuple[str, dict[str, Any]]:
        """The (initializer, arguments) a Linear layer uses: its own `init` (with its own
        `init_args` or none), else the model's `init` with the layer's or the model's args."""
        if layer.init is not None:
            return layer.init, dict(layer.init_args or {})
        return self.init, dict(self.init_args if layer.init_args is None else layer.init_args)


def walk_layers(layers: Sequence[LayerSpec], at: KeyPath) -> Iterable[tuple[KeyPath, LayerSpec]]:
    """(path, layer) for every layer, residual blocks' contents included, in build order."""
    for i, layer in enumerate(layers):
        yield at + (i,), layer
        if isinstance(layer, Residual):
            yield from walk_layers(layer.layers, at + (i, "residual", "layers"))
