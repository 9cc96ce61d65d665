"""`data:`, the config section naming a dataset, checked and filled in from the registry:
which settings the named dataset takes, their defaults, and why it refuses the others."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator

from needle.train.datasets.augment import AugmentConfig
from needle.train.datasets.registry import (
    DATASET_TYPES,
    FILE,
    GENERATOR,
    REQUIRED,
    SETTINGS,
    defaults_text,
    names,
    takers,
)
from needle.train.datasets.text import TOKENS
from needle.train.fields import Fraction, NonNegative, Positive, Strict, check_choice, field_error
from needle.train.normalize import NORMALIZATIONS


def _describe(key: str) -> str:
    """A setting's description for the JSON Schema: who takes it, what it is, its defaults."""
    defaults = defaults_text(key)
    return f"{takers(key)}: {SETTINGS[key]}" + (f" ({defaults})" if defaults else "")


class DataConfig(Strict):
    """`data:` which dataset to train on and how much of it to hold out for validation."""

    dataset: str = Field(
        "spirals",
        json_schema_extra={"enum": list(names())},
        description=f"built-in generators: {', '.join(names(GENERATOR))}; "
        f"files: {', '.join(names(FILE))}",
    )
    path: str | None = Field(None, description=_describe("path"))
    samples: Positive | None = Field(None, description=_describe("samples"))
    classes: Annotated[int, Field(ge=2)] | None = Field(None, description=_describe("classes"))
    noise: NonNegative | None = Field(None, description=_describe("noise"))
    val_fraction: Fraction | None = Field(None, description=_describe("val_fraction"))
    label_column: str | None = Field(None, description=_describe("label_column"))
    augment: AugmentConfig | None = Field(
        None,
        description="random flips and crops of the training images (datasets "
        f"{', '.join(n for n in names() if not (DATASET_TYPES[n].flat or DATASET_TYPES[n].text))}"
        ", when they hold images)",
    )
    bptt: Positive | None = Field(None, description=_describe("bptt"))
    tokens: str | None = Field(
        None, json_schema_extra={"enum": list(TOKENS)}, description=_describe("tokens")
    )
    normalize: str = Field(
        "none",
        json_schema_extra={"enum": list(NORMALIZATIONS)},
        description="rescale each feature with statistics of the training split: none, "
        "minmax (to [0, 1]) or standard (mean 0, standard deviation 1)",
    )

    @field_validator("dataset")
    @classmethod
    def _check_dataset(cls, value: str) -> str:
        return check_choice("dataset", DATASET_TYPES, value)

    @field_validator("tokens")
    @classmethod
    def _check_tokens(cls, value: str | None) -> str | None:
        return None if value is None else check_choice("tokens", TOKENS, value)

    @field_validator("normalize")
    @classmethod
    def _check_normalize(cls, value: str) -> str:
        return check_choice("normalization", NORMALIZATIONS, value)

    @model_validator(mode="after")
    def _fill_and_check(self) -> DataConfig:
        dataset = DATASET_TYPES[self.dataset]
        name = dataset.name
        for key in SETTINGS:
            if key not in dataset.settings and getattr(self, key) is not None:
                reason = dataset.why_not(key)
                raise field_error(f"not used with dataset '{name}': {reason}", at=(key,), key=True)
        for key, default in dataset.settings.items():
            if getattr(self, key) is not None:
                continue
            if default is REQUIRED:  # only a file's path
                raise field_error(f"dataset '{name}' reads a file: set data.{key}", at=(key,))
            setattr(self, key, default)
        if self.augment is not None and (dataset.flat or dataset.text):
            kind = "token windows" if dataset.text else "flat features"
            raise field_error(
                f"not used with dataset '{name}': its samples are {kind}; augmentation "
                "needs images (channels, height, width)",
                at=("augment",),
                key=True,
            )
        if dataset.text and self.normalize != "none":
            raise field_error(
                f"not used with dataset '{name}': token ids are not features to rescale",
                at=("normalize",),
                key=True,
            )
        fixed = dataset.settings.get("classes")
        if dataset.exact_classes and self.classes != fixed:
            raise field_error(
                f"'{name}' makes exactly {fixed} classes (got {self.classes})", at=("classes",)
            )
        if "samples" in dataset.settings and self.samples < 2 * self.classes:
            raise field_error(
                f"{self.samples} samples is too few for {self.classes} classes and a "
                f"validation split (need at least {2 * self.classes})",
                at=("samples",),
            )
        return self
