"""The dataset registry: every dataset a config can name, each registered once, with the
`data.*` settings it takes, their defaults, why it refuses the others, and how it loads.

DataConfig's checks and defaults (`datasets.settings`), the JSON Schema, the loader
(`datasets.load`) and the table in docs/config.md all read `DATASET_TYPES`; nothing else
lists dataset names. Generators register in `datasets.generators`, file formats in
`datasets.files`, in the order they are shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    from needle.train.config import TrainConfig
    from needle.train.datasets.split import Split

GENERATOR = "generator"  # made from the config's seed, no files
FILE = "file"  # read from data.path
KINDS = (GENERATOR, FILE)  # in the order they are listed

# The `data.*` keys a dataset may or may not take (dataset and normalize apply to all), with
# what each means, for the JSON Schema and the docs.
SETTINGS = {
    "samples": "number of points",
    "classes": "number of classes",
    "noise": "noise scale",
    "path": "the folder or file the data is in",
    "label_column": "the header of the label column",
    "val_fraction": "share held out for validation (after a seeded shuffle; text: its end)",
    "bptt": "tokens per window of a language model (its hidden state carries across)",
    "tokens": "how text is cut into tokens: word or char",
}

REQUIRED = None  # a setting's default when the config must write it (data.path)

Loader = Callable[["TrainConfig", np.random.Generator], "tuple[Split, Split]"]
Reader = Callable[["Path", "TrainConfig | None", str], "Split"]


@dataclass(frozen=True)
class DatasetType:
    """One dataset a config can name as `data.dataset`.

    `settings` are the `data.*` keys it takes, each with its default (REQUIRED: the config
    must write it); any other key of SETTINGS is refused, with the reason in `unused` where
    there is more to say than which datasets take it. `load(config, rng)` returns the
    training and validation splits, drawing every random number from `rng` (seeded with
    `config.seed`), never from numpy's global generator.
    """

    name: str
    kind: str  # GENERATOR or FILE
    summary: str  # what it is, one sentence, for docs/config.md
    settings: Mapping[str, Any]
    load: Loader
    unused: Mapping[str, str] = field(default_factory=dict)
    exact_classes: bool = False  # its `classes` default is the only number it makes
    flat: bool = False  # its samples are always flat (features,), never images
    text: bool = False  # a token stream for language models (datasets.text)
    # One-file formats, for `needle evaluate --data FILE`: the suffix that names the format,
    # what such a file holds (for the message listing them) and `read(path, config,
    # label_column)`, the whole file as one Split (`config` None when no config names it).
    suffix: str | None = None
    holds: str = ""
    read: Reader | None = None

    def why_not(self, key: str) -> str:
        """Why this dataset refuses setting `key`."""
        if key in self.unused:
            return self.unused[key]
        return f"it applies to {takers(key)} only"


DATASET_TYPES: dict[str, DatasetType] = {}


def register(dataset: DatasetType) -> DatasetType:
    """Add `dataset` to DATASET_TYPES under its name (once)."""
    if dataset.name in DATASET_TYPES:
        raise ValueError(f"dataset {dataset.name!r} is registered twice")
    unknown = set(dataset.settings) - set(SETTINGS)
    if unknown:
        raise ValueError(f"dataset {dataset.name!r}: no data setting {sorted(unknown)}")
    DATASET_TYPES[dataset.name] = dataset
    return dataset


def names(kind: str | None = None) -> tuple[str, ...]:
    """The registered datasets' names, generators first, each kind in the order registered;
    only those of `kind` when given."""
    kinds = KINDS if kind is None else (kind,)
    return tuple(d.name for k in kinds for d in DATASET_TYPES.values() if d.kind == k)


def defaults_text(key: str) -> str:
    """The defaults of setting `key` across the datasets that take it, for descriptions:
    "1000", or "spirals, blobs: 3; moons, circles, xor: 2"."""
    by_value: dict[Any, list[str]] = {}
    for name in names():
        if (default := DATASET_TYPES[name].settings.get(key, REQUIRED)) is not REQUIRED:
            by_value.setdefault(default, []).append(name)
    if len(by_value) == 1:
        return f"{next(iter(by_value))}"
    return "; ".join(f"{', '.join(users)}: {value}" for value, users in by_value.items())


def takers(key: str) -> str:
    """The datasets that take setting `key`, named as a group where they are one:
    "the generators (spirals, ...)", "file datasets", "csv files", "every dataset but mnist"."""
    users = [name for name in names() if key in DATASET_TYPES[name].settings]
    others = [name for name in names() if name not in users]
    if users == list(names(GENERATOR)):
        return f"the generators ({', '.join(users)})"
    if users == list(names(FILE)):
        return "file datasets"
    if all(DATASET_TYPES[name].kind == FILE for name in users):
        return f"{', '.join(users)} files"
    if len(others) < len(users):
        return f"every dataset but {', '.join(others)}"
    return f"datasets {', '.join(users)}"
