"""Training configs: the YAML schema, loading with positions, `--set` overrides, JSON Schema.

A config is plain data in four sections (`seed`, `data`, `model`, `train`), validated with
pydantic. Every mistake becomes one line naming the file, line and column, the key path, what
is wrong and the value found:

    config.yaml:12:15: model.layers[2].linear.out_features: must be greater than 0 (got -3)

YAML is read with PyYAML's safe loader, walking the node tree ourselves so that each value and
each key keeps its position; tags outside plain YAML (`!!python/...`) are refused before
anything is constructed. Layers and initializers are named from needle's registries only.

Public API: `load_config(path, overrides=())`, `parse_config(text, label, overrides=())`,
`config_to_yaml(config)`, `json_schema()`, and the models `TrainConfig`, `DataConfig`,
`ModelConfig`, `TrainSettings`, `OptimizerConfig` and the layer specs in `LAYER_TYPES`.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from needle import init
from needle.errors import UsageError, did_you_mean, unknown_choice
from needle.normalize import NORMALIZATIONS

KeyPath = tuple[str | int, ...]

# -- positions: where each value came from ---------------------------------------------------


def dotted(path: Sequence[str | int]) -> str:
    """("model", "layers", 2, "linear") -> "model.layers[2].linear"."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass
class SourceMap:
    """Where each value and key of a config was written: a file position or a `--set`."""

    label: str  # the file name as the user gave it
    values: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)  # 1-based line, column
    keys: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    overrides: dict[KeyPath, str] = field(default_factory=dict)  # path -> "--set a.b=1"

    def resolve(self, loc: Sequence[str | int]) -> tuple[KeyPath, KeyPath]:
        """Match a validation location against what was written.

        Returns (the deepest written path along `loc`, the path to show the user). Segments the
        file does not have are skipped: a union's tag (`train.optimizer` has no `adam` level),
        and the field a short form fills (`linear: 64` has no `out_features` level). Skipped
        segments in the middle are dropped from the shown path; trailing ones (a missing key,
        a short form's field) stay, because they say which setting is meant.
        """
        found: KeyPath = ()
        shown: list[str | int] = []
        pending: list[str | int] = []
        for part in loc:
            if found + (part,) in self.values:
                found += (part,)
                shown.append(part)
                pending = []
            else:
                pending.append(part)
        return found, tuple(shown + pending)

    def where(self, path: KeyPath, *, key: bool = False) -> str:
        """Where `path` was written: "file:line:col" (of its key with `key=True`), or the
        `--set` that wrote it."""
        for depth in range(len(path), -1, -1):
            if path[:depth] in self.overrides:
                return self.overrides[path[:depth]]
        if key and path in self.keys:
            line, col = self.keys[path]
        else:
            line, col = self.values.get(path, (1, 1))
        return f"{self.label}:{line}:{col}"

    def replace(self, path: KeyPath, label: str) -> None:
        """Record that a `--set` wrote `path`: positions inside it no longer apply."""
        for table in (self.values, self.keys, self.overrides):
            for known in [p for p in table if p[: len(path)] == path]:
                del table[known]
        self.values[path] = (0, 0)
        self.overrides[path] = label


def _show(value: Any) -> str:
    """A value as the user would write it in YAML, short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


# -- safe YAML with positions ----------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, plus YAML 1.2 floats: `1e-3` is a number, not the string '1e-3'."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)

_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + name for name in ("str", "int", "float", "bool", "null", "map", "seq")
}
_MAX_NODES = 100_000  # aliases can expand a small file into a huge tree ("billion laughs")
_MAX_DEPTH = 64  # real configs nest about 8 deep; far deeper would exhaust Python's stack
_TOO_DEEP = f"the config nests more than {_MAX_DEPTH} levels deep"


def _pos(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def read_yaml(text: str, label: str, *, inline: bool = False) -> tuple[Any, SourceMap]:
    """Parse one YAML document of plain data; return it and the position of every value/key.

    Raises UsageError "label:line:col: ..." for syntax errors, tags other than plain YAML's,
    duplicate keys, keys that are not scalars, alias cycles and nesting deeper than
    `_MAX_DEPTH`. Nothing is constructed from a tag, so `!!python/object/apply:os.system`
    fails before it could run. `inline=True` reads a `--set` value: positions are columns of
    the value, "label: column 3 of the value: ...".
    """
    source = SourceMap(label)
    loader = _Loader(text)

    def where(mark: yaml.Mark) -> str:
        line, col = _pos(mark)
        return f"{label}: column {col} of the value" if inline else f"{label}:{line}:{col}"

    def fail(mark: yaml.Mark, message: str) -> UsageError:
        return UsageError(f"{where(mark)}: {message}")

    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            # PyYAML composes nested collections recursively; the stack gives out first.
            raise fail(loader.get_mark(), _TOO_DEEP) from None
        if node is None:
            return None, source
        count = 0

        def build(node: yaml.Node, path: KeyPath, active: set[int]) -> Any:
            nonlocal count
            count += 1
            if count > _MAX_NODES:
                raise fail(node.start_mark, f"the config has more than {_MAX_NODES} values")
            if len(path) > _MAX_DEPTH:
                raise fail(node.start_mark, _TOO_DEEP)
            if node.tag not in _PLAIN_TAGS:
                raise fail(
                    node.start_mark,
                    f"YAML tag '{node.tag.replace('tag:yaml.org,2002:', '!!')}' is not allowed: "
                    "configs are plain data "
                    "(mappings, lists, numbers, strings, true/false, null)",
                )
            source.values[path] = _pos(node.start_mark)
            if isinstance(node, yaml.ScalarNode):
                return loader.construct_object(node)
            if id(node) in active:
                raise fail(node.start_mark, "a YAML alias refers to the mapping or list it is in")
            active = active | {id(node)}
            if isinstance(node, yaml.SequenceNode):
                return [build(item, path + (i,), active) for i, item in enumerate(node.value)]
            loader.flatten_mapping(node)  # resolve `<<: *defaults` merge keys
            mapping: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _PLAIN_TAGS:
                    raise fail(key_node.start_mark, "keys must be plain names")
                key = loader.construct_object(key_node)
                if key in mapping:
                    line, col = source.keys[path + (key,)]
                    first = f"at column {col}" if inline else f"on line {line}"
                    raise fail(
                        key_node.start_mark,
                        f"{dotted(path + (key,))}: duplicate key (first written {first})",
                    )
                source.keys[path + (key,)] = _pos(key_node.start_mark)
                mapping[key] = build(value_node, path + (key,), active)
            return mapping

        return build(node, (), set()), source
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        raise UsageError(
            f"{where(mark) if mark else label}: YAML syntax error: {problem}"
        ) from None
    except yaml.YAMLError as err:
        raise UsageError(f"{label}: YAML syntax error: {err}") from None
    finally:
        loader.dispose()


# -- overrides -------------------------------------------------------------------------------

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|(\d+)")


def parse_key_path(text: str, *, label: str | None = None) -> KeyPath:
    """Read a key path: `model.layers[2].linear` (or `model.layers.2.linear`) becomes
    ("model", "layers", 2, "linear"). `label` names the source in messages."""
    label = label or f"--set {text}"
    path: list[str | int] = []
    rest = text
    while rest:
        match = _SEGMENT.match(rest)
        if not match:
            raise UsageError(
                f"{label}: cannot read the key path at '{rest}' "
                "(write names and list indices, such as model.layers[2].linear)"
            )
        name, bracket, bare = match.groups()
        path.append(name if name is not None else int(bracket or bare))
        rest = rest[match.end() :]
        if rest.startswith("."):
            rest = rest[1:]
            if not rest:
                raise UsageError(f"{label}: the key path ends with '.'")
        elif rest and not rest.startswith("["):
            raise UsageError(f"{label}: cannot read the key path at '{rest}'")
    return tuple(path)


def apply_override(data: dict[str, Any], source: SourceMap, override: str) -> None:
    """Apply one `key.path=value` to the raw config; the value is read as YAML."""
    label = f"--set {override}"
    key_text, sep, value_text = override.partition("=")
    if not sep or not key_text.strip():
        raise UsageError(f"--set {override}: expected key.path=value, such as train.epochs=5")
    path = parse_key_path(key_text.strip(), label=label)
    value, _ = read_yaml(value_text, label, inline=True)
    node: Any = data
    for depth, part in enumerate(path[:-1]):
        _check_container(node, part, path[: depth + 1], label)
        if isinstance(node, dict) and part not in node:
            node[part] = {}  # `--set data.path=x` may name a section the file leaves out
            source.replace(path[: depth + 1], label)
        node = node[part]
    _check_container(node, path[-1], path, label)
    node[path[-1]] = value
    source.replace(path, label)


def _check_container(node: Any, part: str | int, path: KeyPath, label: str) -> None:
    parent = dotted(path[:-1]) or "the config"
    if isinstance(part, int):
        if not isinstance(node, list):
            raise UsageError(f"{label}: {parent} is not a list (got {_show(node)})")
        if not 0 <= part < len(node):
            last = len(node) - 1
            raise UsageError(f"{label}: {parent} has {len(node)} entries (0 to {last}), not {part}")
    elif not isinstance(node, dict):
        hint = " (use an index, such as [0])" if isinstance(node, list) else ""
        raise UsageError(f"{label}: {parent} is not a mapping (got {_show(node)}){hint}")


# -- schema ----------------------------------------------------------------------------------


class Strict(BaseModel):
    """A config section: strict types, finite numbers, unknown keys refused with a suggestion."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            # a layer's `type` is filled in from its key by _normalize_layer, never written
            names = [name for name in cls.model_fields if name != "type"]
            for key in data:
                if key not in cls.model_fields:
                    raise _error(
                        f"unknown key {_show(key)};"
                        + (did_you_mean(str(key), names) or f" valid keys: {', '.join(names)}"),
                        at=(key,),
                        key=True,
                    )
        return data


def _error(
    message: str, *, at: KeyPath = (), key: bool = False, show: bool = True
) -> PydanticCustomError:
    """A validation error with our own wording, pointing `at` a path below the validated value
    (on its key with `key=True`; `show=False` keeps `at` out of the key path shown). The
    message is final: no "(got ...)" is appended."""
    context = {"needle_at": list(at), "needle_key": key, "needle_show": show}
    return PydanticCustomError("needle", message, context)


def _choice(kind: str, choices: Iterable[str], value: str, *, at: KeyPath = ()) -> str:
    """`value` if it names one of `choices`, else the registry's own error (with a
    did-you-mean) pointing `at` a path below the validated value."""
    if value not in choices:
        raise _error(str(unknown_choice(kind, value, choices)), at=at)
    return value


Positive = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


def _interval(low: float, high: float, *, open_low: bool = False) -> Any:
    """A float type for [low, high), or (low, high) with `open_low`: a mistake gets one
    message naming both bounds (pydantic's own names only the bound crossed), and the JSON
    Schema gets the same bounds."""
    shown = f"{'(' if open_low else '['}{low:g}, {high:g})"

    def check(written: Any, as_float: Callable[[Any], float]) -> float:
        value = as_float(written)  # type and finiteness first, with their own messages
        if not ((low < value) if open_low else (low <= value)) or not value < high:
            raise _error(f"must be in {shown} (got {_show(written)})")
        return value

    lower = "exclusiveMinimum" if open_low else "minimum"
    schema = {"type": "number", lower: low, "exclusiveMaximum": high}
    return Annotated[float, WrapValidator(check), WithJsonSchema(schema)]


Probability = _interval(0, 1)  # a drop probability or a moving-average rate
Fraction = _interval(0, 1, open_low=True)

GENERATED = ("spirals", "moons", "circles", "blobs", "xor")
FILE_DATASETS = ("mnist", "fashion_mnist", "npz", "csv")
DATASETS = GENERATED + FILE_DATASETS
# classes each generator makes by default; None = any number of classes >= 2 is possible
_GENERATOR_CLASSES = {
    "spirals": (3, None),
    "blobs": (3, None),
    "moons": (2, 2),
    "circles": (2, 2),
    "xor": (2, 2),
}
_GENERATOR_NOISE = {"spirals": 0.2, "moons": 0.1, "circles": 0.05, "blobs": 1.0, "xor": 0.1}


class DataConfig(Strict):
    """`data:` which dataset to train on and how much of it to hold out for validation."""

    dataset: str = Field(
        "spirals",
        json_schema_extra={"enum": list(DATASETS)},
        description="built-in generators: "
        + ", ".join(GENERATED)
        + "; files: "
        + ", ".join(FILE_DATASETS),
    )
    path: str | None = Field(
        None,
        description="file datasets: a folder of the four idx files (mnist, fashion_mnist), "
        "or one .npz / .csv file",
    )
    samples: Positive | None = Field(None, description="generators: number of points (1000)")
    classes: Annotated[int, Field(ge=2)] | None = Field(
        None, description="generators: number of classes (spirals, blobs: 3; others: 2)"
    )
    noise: NonNegative | None = Field(None, description="generators: noise scale")
    val_fraction: Fraction | None = Field(
        None, description="share held out for validation when the data has no test split (0.2)"
    )
    label_column: str | None = Field(None, description="csv: the header of the label column")
    normalize: str = Field(
        "none",
        json_schema_extra={"enum": list(NORMALIZATIONS)},
        description="rescale each feature with statistics of the training split: none, "
        "minmax (to [0, 1]) or standard (mean 0, standard deviation 1)",
    )

    @field_validator("dataset")
    @classmethod
    def _check_dataset(cls, value: str) -> str:
        return _choice("dataset", DATASETS, value)

    @field_validator("normalize")
    @classmethod
    def _check_normalize(cls, value: str) -> str:
        return _choice("normalization", NORMALIZATIONS, value)

    @model_validator(mode="after")
    def _fill_and_check(self) -> DataConfig:
        name = self.dataset
        generated = name in GENERATED
        only = {
            "samples": generated,
            "classes": generated,
            "noise": generated,
            "path": not generated,
            "label_column": name == "csv",
            "val_fraction": name not in ("mnist", "fashion_mnist"),
        }
        for key, applies in only.items():
            if not applies and getattr(self, key) is not None:
                reason = {
                    "path": f"'{name}' is generated, it reads no file",
                    "val_fraction": f"'{name}' has its own validation split (the t10k files)",
                    "label_column": "it applies to csv files only",
                }.get(key, f"it applies to the generators ({', '.join(GENERATED)}) only")
                raise _error(f"not used with dataset '{name}': {reason}", at=(key,), key=True)
        if not generated and self.path is None:
            raise _error(f"dataset '{name}' reads a file: set data.path", at=("path",))
        if generated:
            default, fixed = _GENERATOR_CLASSES[name]
            if self.classes is not None and fixed is not None and self.classes != fixed:
                raise _error(
                    f"'{name}' makes exactly {fixed} classes (got {self.classes})", at=("classes",)
                )
            self.samples = 1000 if self.samples is None else self.samples
            self.classes = default if self.classes is None else self.classes
            self.noise = _GENERATOR_NOISE[name] if self.noise is None else self.noise
            if self.samples < 2 * self.classes:
                raise _error(
                    f"{self.samples} samples is too few for {self.classes} classes and a "
                    f"validation split (need at least {2 * self.classes})",
                    at=("samples",),
                )
        if name == "csv" and self.label_column is None:
            self.label_column = "label"
        if self.val_fraction is None and name not in ("mnist", "fashion_mnist"):
            self.val_fraction = 0.2
        return self


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
            raise _error(f"{name} takes no argument {_show(key)};{hint}", at=here, key=True)
        if key == "nonlinearity":
            if not isinstance(value, str):
                raise _error(f"must be a nonlinearity name (got {_show(value)})", at=here)
            _choice("nonlinearity", init.NONLINEARITIES, value, at=here)
        elif key == "mode":
            if not isinstance(value, str):
                raise _error(f"must be fan_in or fan_out (got {_show(value)})", at=here)
            _choice("mode", init.FAN_MODES, value, at=here)
        elif key in ("gain", "param"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _error(f"must be a number (got {_show(value)})", at=here)
            if not math.isfinite(value) or (key == "gain" and value <= 0):
                raise _error(
                    f"must be a finite number{' > 0' * (key == 'gain')} (got {_show(value)})",
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
        return None if value is None else _choice("initializer", init.INITIALIZERS, value)


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
_SHORT_FIELD = {"linear": "out_features", "dropout": "p", "residual": "layers"}


def _normalize_layer(value: Any) -> Any:
    """Turn each written form of a layer into {"type": name, **settings} for the union."""
    if isinstance(value, str):
        name, settings = value, None
    elif isinstance(value, dict) and len(value) == 1:
        ((name, settings),) = value.items()
    elif isinstance(value, dict):
        keys = ", ".join(str(k) for k in value) or "none"
        raise _error(f"a layer is one key, its type, such as {{linear: 64}} (got keys: {keys})")
    else:
        raise _error(
            "a layer is a name such as relu, or one key such as {linear: 64} "
            f"(got {_show(value)})"
        )
    if not isinstance(name, str) or name not in LAYER_TYPES:
        hint = did_you_mean(str(name), LAYER_TYPES) or f" valid: {', '.join(LAYER_TYPES)}"
        raise _error(f"unknown layer type {_show(name)};{hint}", at=(name,), key=True, show=False)
    if settings is None:
        return {"type": name}
    if isinstance(settings, dict):
        if "type" in settings:
            raise _error("unknown key 'type'", at=(name, "type"), key=True)
        return {**settings, "type": name}
    short = _SHORT_FIELD.get(name)
    if short is None:
        raise _error(
            f"{name} takes a mapping of settings or nothing (got {_show(settings)})", at=(name,)
        )
    return {"type": name, short: settings}


_LAYER_CLASSES = (
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
    cls.model_fields["type"].default: cls for cls in _LAYER_CLASSES
}

Layer = Annotated[
    Union[_LAYER_CLASSES],  # noqa: UP007 - a tuple of classes cannot be spelled with |
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
        return _choice("initializer", init.INITIALIZERS, value)

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


OPTIMIZERS = {
    "sgd": {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0},
    "adam": {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    "adamw": {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
}


class OptimizerConfig(Strict):
    """`train.optimizer:` `adam`, or `{name: sgd, lr: 0.1, momentum: 0.9}` and so on."""

    name: str = Field(
        "adam", description="sgd, adam or adamw", json_schema_extra={"enum": sorted(OPTIMIZERS)}
    )
    lr: PositiveFloat | None = Field(None, description="learning rate (0.01)")
    momentum: Probability | None = Field(None, description="sgd: momentum (0)")
    beta1: Probability | None = Field(None, description="adam, adamw: first-moment rate (0.9)")
    beta2: Probability | None = Field(None, description="adam, adamw: second-moment rate (0.999)")
    eps: PositiveFloat | None = Field(
        None, description="adam, adamw: added to the denominator (1e-8)"
    )
    weight_decay: NonNegative | None = Field(
        None, description="L2 penalty (0); adamw: decoupled weight decay (0.01)"
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _choice("optimizer", OPTIMIZERS, value)

    @model_validator(mode="after")
    def _fill_and_check(self) -> OptimizerConfig:
        defaults = OPTIMIZERS[self.name]
        for key in ("lr", "momentum", "beta1", "beta2", "eps", "weight_decay"):
            if key not in defaults:
                if getattr(self, key) is not None:
                    users = [n for n, d in OPTIMIZERS.items() if key in d]
                    raise _error(
                        f"{self.name} has no setting {key} (it belongs to {', '.join(users)})",
                        at=(key,),
                        key=True,
                    )
            elif getattr(self, key) is None:
                setattr(self, key, defaults[key])
        return self

    def arguments(self) -> dict[str, float]:
        """Keyword arguments for the optimizer's constructor."""
        return {key: getattr(self, key) for key in OPTIMIZERS[self.name]}


def _optimizer_short_form(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class TrainSettings(Strict):
    """`train:` how long and in what batches to train, and with which optimizer."""

    epochs: Positive = Field(10, description="passes over the training data")
    batch_size: Positive = Field(64, description="samples per step")
    shuffle: bool = Field(True, description="reshuffle the training data every epoch")
    optimizer: Annotated[OptimizerConfig, BeforeValidator(_optimizer_short_form)] = Field(
        default_factory=OptimizerConfig, description="the optimizer: a name or a mapping"
    )


class TrainConfig(Strict):
    """A whole training config: `seed`, `data`, `model`, `train`."""

    seed: Annotated[int, Field(ge=0, lt=2**32)] = Field(
        0, description="seeds numpy's RNG: data, initial weights, shuffling, dropout"
    )
    data: DataConfig = Field(default_factory=DataConfig, description="the dataset")
    model: ModelConfig = Field(description="the network")
    train: TrainSettings = Field(default_factory=TrainSettings, description="the training run")

    _source: SourceMap | None = PrivateAttr(default=None)

    @property
    def source(self) -> SourceMap:
        """Where each value was written (an empty map for configs built in code)."""
        return self._source or SourceMap("<config>")

    def error(self, path: KeyPath, message: str, *, key: bool = False) -> UsageError:
        """A UsageError "file:line:col: key.path: message" for a problem found after
        validation (layers that do not fit, data that does not match the model)."""
        found, shown = self.source.resolve(path)
        at = self.source.where(found, key=key and found == tuple(path))
        return UsageError(f"{at}: {dotted(shown)}: {message}")


# -- loading ---------------------------------------------------------------------------------


def _format_error(err: dict[str, Any], source: SourceMap) -> tuple[tuple[int, int], str]:
    """One pydantic error as (sort key, "where: key.path: what (got X)")."""
    ctx = err.get("ctx") or {}
    loc = tuple(err["loc"]) + tuple(ctx.get("needle_at", ()))
    found, shown = source.resolve(loc)
    if not ctx.get("needle_show", True):
        shown = shown[: len(shown) - len(ctx["needle_at"])]
    on_key = bool(ctx.get("needle_key")) and found == loc
    where = source.where(found, key=on_key)
    position = (source.keys if on_key else source.values).get(found, (0, 0))
    message = _message(err)
    prefix = f"{where}: {dotted(shown)}: " if shown else f"{where}: "
    return position, prefix + message


def _message(err: dict[str, Any]) -> str:
    kind, ctx, got = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "needle":
        return err["msg"]
    if kind == "missing":
        return "required key is missing"
    if kind == "greater_than":
        bound = ctx["gt"]
        # an integer bound means an integer field (pydantic passes 0.0 for float fields)
        if bound == 0 and isinstance(bound, int):
            text = "must be a positive integer"
        else:
            text = f"must be greater than {bound:g}"
    elif kind == "greater_than_equal":
        text = f"must be at least {ctx['ge']:g}"
    elif kind == "less_than":
        text = f"must be less than {ctx['lt']:g}"
    elif kind == "less_than_equal":
        text = f"must be at most {ctx['le']:g}"
    elif kind == "too_short":
        return "must not be empty"
    else:
        text = {
            "int_type": "must be an integer",
            "int_parsing": "must be an integer",
            "int_from_float": "must be an integer",
            "float_type": "must be a number",
            "float_parsing": "must be a number",
            "finite_number": "must be a finite number",
            "bool_type": "must be true or false",
            "bool_parsing": "must be true or false",
            "string_type": "must be a string",
            "dict_type": "must be a mapping",
            "model_type": "must be a mapping",
            "model_attributes_type": "must be a mapping",
            "list_type": "must be a list",
            "extra_forbidden": "unknown key",
        }.get(kind, err["msg"].lower())
    return f"{text} (got {_show(got)})"


def validate_config(data: Any, source: SourceMap) -> TrainConfig:
    """Validate raw config data; raise one UsageError whose lines each name a mistake."""
    if data is None:
        raise UsageError(
            f"{source.label}: the config is empty; it needs at least a model: section "
            "(see configs/reference.yaml)"
        )
    if not isinstance(data, dict):
        raise UsageError(
            f"{source.where(())}: the config must be a mapping of keys (seed, data, model, "
            f"train) (got {_show(data)})"
        )
    try:
        config = TrainConfig.model_validate(data)
    except ValidationError as err:
        lines = sorted(_format_error(e, source) for e in err.errors())
        raise UsageError("\nerror: ".join(line for _, line in lines)) from None
    config._source = source
    return config


def parse_config(text: str, label: str, overrides: Sequence[str] = ()) -> TrainConfig:
    """Parse and validate config `text` (named `label` in messages), then `key.path=value`
    overrides, which are validated like the file."""
    data, source = read_yaml(text, label)
    if overrides and data is None:
        data = {}
    for override in overrides:
        if not isinstance(data, dict):
            break  # validate_config says what is wrong with the file itself
        apply_override(data, source, override)
    return validate_config(data, source)


def read_config_text(path: str | Path) -> str:
    """The text of a config file, or a UsageError saying why it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"config file '{path}' not found")
    if path.is_dir():
        raise UsageError(f"config '{path}' is a folder, not a YAML file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"config '{path}' is not UTF-8 text") from None
    except OSError as err:
        raise UsageError(f"cannot read config '{path}': {err.strerror}") from None


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read, parse and validate the YAML config at `path`, then apply `key.path=value`
    overrides. Every mistake raises UsageError with file:line:col.

    Example:
        >>> config = load_config("configs/quickstart.yaml", ["train.epochs=2"])  # doctest: +SKIP
        >>> config.train.epochs
        2
    """
    return parse_config(read_config_text(path), str(path), overrides)


# -- writing ---------------------------------------------------------------------------------


class _Flow(dict):
    """A mapping written on one line: a layer's settings, an initializer's arguments."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Flow, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, True)
)


def _layer_data(layer: LayerSpec) -> Any:
    if isinstance(layer, Residual):
        return {"residual": [_layer_data(inner) for inner in layer.layers]}
    settings = layer.model_dump(exclude={"type"}, exclude_none=True)
    if "init_args" in settings:
        settings["init_args"] = _Flow(settings["init_args"])
    return {layer.type: _Flow(settings)} if settings else layer.type


def config_data(config: TrainConfig) -> dict[str, Any]:
    """The resolved config as plain data in the written forms (loads back to an equal config)."""
    data = config.model_dump(exclude_none=True)
    data["model"]["init_args"] = _Flow(data["model"]["init_args"])
    data["model"]["layers"] = [_layer_data(layer) for layer in config.model.layers]
    data["train"]["optimizer"] = _Flow(data["train"]["optimizer"])
    return data


def config_to_yaml(config: TrainConfig) -> str:
    """The resolved config as YAML: every default filled in."""
    return yaml.dump(config_data(config), Dumper=_Dumper, sort_keys=False)


def _replace_layer_refs(node: Any) -> Any:
    if isinstance(node, dict):
        if node == {"needle_layer": True}:
            return {"$ref": "#/$defs/Layer"}
        return {key: _replace_layer_refs(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_replace_layer_refs(item) for item in node]
    return node


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file, short forms included, for editors."""
    schema = TrainConfig.model_json_schema()
    defs = schema.setdefault("$defs", {})
    variants: list[dict[str, Any]] = [{"enum": sorted(LAYER_TYPES)}]
    for name, cls in LAYER_TYPES.items():
        settings = cls.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(settings.pop("$defs", {}))
        settings["properties"].pop("type", None)
        if "required" in settings:
            settings["required"] = [r for r in settings["required"] if r != "type"]
        settings["additionalProperties"] = False
        defs[cls.__name__ + "Settings"] = settings
        forms: list[dict[str, Any]] = [
            {"$ref": f"#/$defs/{cls.__name__}Settings"},
            {"type": "null"},
        ]
        if name in _SHORT_FIELD:
            forms.append(settings["properties"][_SHORT_FIELD[name]])
        variants.append(
            {
                "type": "object",
                "properties": {name: {"anyOf": forms}},
                "required": [name],
                "additionalProperties": False,
            }
        )
    defs["Layer"] = {
        "description": "a layer: a name, or one key naming its type",
        "anyOf": variants,
    }
    for cls in _LAYER_CLASSES:
        defs.pop(cls.__name__, None)
    train = defs["TrainSettings"]["properties"]["optimizer"]
    train["anyOf"] = [{"enum": sorted(OPTIMIZERS)}, {"$ref": "#/$defs/OptimizerConfig"}]
    train.pop("$ref", None)
    schema = _replace_layer_refs(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "needle training config"
    return schema


def json_schema_text() -> str:
    """`json_schema()` as indented JSON text."""
    return json.dumps(json_schema(), indent=2)
