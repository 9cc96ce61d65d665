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

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from needle.errors import UsageError
from needle.train.constructors import name_or_mapping
from needle.train.fields import (
    Fraction,
    NonNegative,
    Positive,
    Strict,
    check_choice,
    field_error,
)
from needle.train.layers import LayerSpec, ModelConfig, Residual
from needle.train.normalize import NORMALIZATIONS
from needle.train.optimizers import OptimizerConfig
from needle.train.overrides import apply_override
from needle.train.source import KeyPath, SourceMap, dotted, read_yaml, show_value

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
        return check_choice("dataset", DATASETS, value)

    @field_validator("normalize")
    @classmethod
    def _check_normalize(cls, value: str) -> str:
        return check_choice("normalization", NORMALIZATIONS, value)

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
                raise field_error(f"not used with dataset '{name}': {reason}", at=(key,), key=True)
        if not generated and self.path is None:
            raise field_error(f"dataset '{name}' reads a file: set data.path", at=("path",))
        if generated:
            default, fixed = _GENERATOR_CLASSES[name]
            if self.classes is not None and fixed is not None and self.classes != fixed:
                raise field_error(
                    f"'{name}' makes exactly {fixed} classes (got {self.classes})", at=("classes",)
                )
            self.samples = 1000 if self.samples is None else self.samples
            self.classes = default if self.classes is None else self.classes
            self.noise = _GENERATOR_NOISE[name] if self.noise is None else self.noise
            if self.samples < 2 * self.classes:
                raise field_error(
                    f"{self.samples} samples is too few for {self.classes} classes and a "
                    f"validation split (need at least {2 * self.classes})",
                    at=("samples",),
                )
        if name == "csv" and self.label_column is None:
            self.label_column = "label"
        if self.val_fraction is None and name not in ("mnist", "fashion_mnist"):
            self.val_fraction = 0.2
        return self


class TrainSettings(Strict):
    """`train:` how long and in what batches to train, and with which optimizer."""

    epochs: Positive = Field(10, description="passes over the training data")
    batch_size: Positive = Field(64, description="samples per step")
    shuffle: bool = Field(True, description="reshuffle the training data every epoch")
    optimizer: Annotated[OptimizerConfig, BeforeValidator(name_or_mapping)] = Field(
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
    return f"{text} (got {show_value(got)})"


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
            f"train) (got {show_value(data)})"
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
