"""The `model:` section: a Sequential of registered layer types, each written as a name or
as one key naming its type, and the initializer every weight-drawing layer uses."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from needle import init
from needle.errors import did_you_mean
from needle.train.fields import Strict, check_choice, field_error
from needle.train.layers import (
    activations,
    conv,
    dense,
    dropout,
    norms,
    pool,
    reshape,
    residual,
    sequence,
)
from needle.train.layers.initializers import check_init_args
from needle.train.layers.registry import LAYER_TYPES, LayerSpec, walk_layers
from needle.train.source import show_value

# Each family module registers its types when imported. Their order here is the order names
# are listed in messages, the schema and the docs, whatever order they were imported in.
FAMILIES = (dense, activations, reshape, dropout, norms, residual, conv, pool, sequence)
_registered = dict(LAYER_TYPES)
LAYER_TYPES.clear()
for _family in FAMILIES:
    LAYER_TYPES.update(
        (name, cls) for name, cls in _registered.items() if cls.__module__ == _family.__name__
    )
if len(LAYER_TYPES) != len(_registered):
    raise ImportError(
        f"layer types outside FAMILIES: {sorted(set(_registered) - set(LAYER_TYPES))}"
    )


def normalize_layer(value: Any) -> Any:
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
    short = LAYER_TYPES[name].short
    if short is None:
        raise field_error(
            f"{name} takes a mapping of settings or nothing (got {show_value(settings)})",
            at=(name,),
        )
    return {"type": name, short: settings}


Layer = Annotated[
    Union[tuple(LAYER_TYPES.values())],  # noqa: UP007 - a tuple of classes cannot be spelled with |
    Field(discriminator="type"),
    BeforeValidator(normalize_layer),
    WithJsonSchema({"needle_layer": True}),  # replaced by json_schema(): the written forms
]
for _cls in LAYER_TYPES.values():  # types whose settings hold layers (residual) need Layer
    if not _cls.__pydantic_complete__:
        _cls.model_rebuild(_types_namespace={"Layer": Layer})


class ModelConfig(Strict):
    """`model:` a Sequential of layers, and the initializer every Linear layer uses."""

    init: str = Field(
        "kaiming_uniform",
        description="initializer for every Linear and Conv layer",
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
        check_init_args(self.init, self.init_args, ("init_args",))
        for path, layer in walk_layers(self.layers, ("layers",)):
            own = layer.initializer_settings()
            if own is not None and own[1]:
                name = own[0] or self.init
                check_init_args(name, own[1], path + (layer.type, "init_args"))
        return self

    def initializer(self, layer: LayerSpec) -> tuple[str, dict[str, Any]]:
        """The (initializer, arguments) a weight-drawing layer uses: its own `init` (with its
        own `init_args` or none), else the model's `init` with the layer's or the model's
        args."""
        own = layer.initializer_settings()
        if own is None:
            raise ValueError(f"a {layer.type} layer draws no weights")
        name, args = own
        if name is not None:
            return name, dict(args or {})
        return self.init, dict(self.init_args if args is None else args)
