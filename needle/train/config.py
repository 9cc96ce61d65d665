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

from needle.devices import DEVICES
from needle.errors import ConfigError, UsageError
from needle.train.constructors import name_or_mapping
from needle.train.datasets import GENERATOR, DataConfig, names
from needle.train.early_stopping import EarlyStoppingConfig, metric_or_mapping
from needle.train.fields import (
    Positive,
    PositiveFloat,
    Strict,
    check_choice,
)
from needle.train.layers import LayerSpec, ModelConfig, Residual
from needle.train.optimizers import OptimizerConfig
from needle.train.overrides import apply_override
from needle.train.schedules import ScheduleConfig, check_schedule
from needle.train.source import KeyPath, SourceMap, read_yaml, show_value

# Derived from the dataset registry, for the modules that still ask config for them.
GENERATED = names(GENERATOR)
DATASETS = names()
# `train.device`'s choices: every device needle has, enabled here or not (a config names
# where it runs; whether this machine has that device is checked when the run starts).
DEVICE_NAMES = tuple(DEVICES)


class TrainSettings(Strict):
    """`train:` how long and in what batches to train, with which optimizer and schedule,
    and when to stop early."""

    epochs: Positive = Field(10, description="passes over the training data")
    batch_size: Positive = Field(64, description="samples per step")
    shuffle: bool = Field(True, description="reshuffle the training data every epoch")
    optimizer: Annotated[OptimizerConfig, BeforeValidator(name_or_mapping)] = Field(
        default_factory=OptimizerConfig, description="the optimizer: a name or a mapping"
    )
    schedule: Annotated[ScheduleConfig, BeforeValidator(name_or_mapping)] = Field(
        default_factory=ScheduleConfig,
        description="the learning-rate schedule: a name or a mapping",
    )
    clip_grad_norm: PositiveFloat | None = Field(
        None, description="scale the gradients to this global norm at most (default: no clipping)"
    )
    early_stopping: Annotated[EarlyStoppingConfig | None, BeforeValidator(metric_or_mapping)] = (
        Field(None, description="stop when a metric stops improving: a metric or a mapping")
    )
    log_stats: bool = Field(
        False,
        description="write per-layer weight and gradient norms, update ratios and dead ReLUs "
        "into metrics.jsonl each epoch",
    )
    device: str | None = Field(
        None,
        description="where the run computes: cpu_numpy (numpy arrays), cpu (needle's NDArray) "
        "or cuda (NDArray over CuPy: needs a GPU); default: NEEDLE_BACKEND's",
        json_schema_extra={"enum": list(DEVICE_NAMES)},
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str | None) -> str | None:
        return None if value is None else check_choice("device", DEVICE_NAMES, value)

    @model_validator(mode="after")
    def _check_together(self) -> TrainSettings:
        check_schedule(self)
        return self


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

    def error(self, path: KeyPath, message: str, *, key: bool = False) -> ConfigError:
        """A ConfigError ("file:line:col: key.path: message") for a problem found after
        validation (layers that do not fit, data that does not match the model)."""
        return self.source.error(path, message, key=key)


# -- loading ---------------------------------------------------------------------------------


def _format_error(err: dict[str, Any], source: SourceMap) -> ConfigError:
    """One pydantic error as a ConfigError at the key it is about."""
    ctx = err.get("ctx") or {}
    at = tuple(ctx.get("needle_at", ()))
    return source.error(
        tuple(err["loc"]) + at,
        _message(err),
        key=bool(ctx.get("needle_key")),
        hide=0 if ctx.get("needle_show", True) else len(at),
    )


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
    """Validate raw config data; raise one ConfigError holding every mistake, in file order."""
    if data is None:
        raise ConfigError(
            source.label,
            "the config is empty; it needs at least a model: section (see configs/reference.yaml)",
        )
    if not isinstance(data, dict):
        raise source.error(
            (),
            "the config must be a mapping of keys (seed, data, model, train) "
            f"(got {show_value(data)})",
        )
    try:
        config = TrainConfig.model_validate(data)
    except ValidationError as err:
        found = sorted(
            (_format_error(e, source) for e in err.errors()),
            key=lambda e: (e.line or 0, e.column or 0, str(e)),
        )
        raise found[0].with_others(found[1:]) from None
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
    overrides. A mistake in the file or an override raises ConfigError (file, line, column,
    key path, message); a file that cannot be read, UsageError.

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
    data["train"]["schedule"] = _Flow(data["train"]["schedule"])
    if "early_stopping" in data["train"]:
        data["train"]["early_stopping"] = _Flow(data["train"]["early_stopping"])
    return data


def config_to_yaml(config: TrainConfig) -> str:
    """The resolved config as YAML: every default filled in."""
    return yaml.dump(config_data(config), Dumper=_Dumper, sort_keys=False)
