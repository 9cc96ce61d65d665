"""A config made real: data, model, optimizer and loaders (`prepare`), with the sample shape
the model takes (`model_input`)."""

from __future__ import annotations

import contextlib
import math
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from needle import nn, optim
from needle.data import DataLoader, NDArrayDataset
from needle.devices import (
    NEEDS,
    Device,
    all_devices,
    default_device,
    device_named,
    using_device,
)
from needle.errors import ConfigError, NeedleError, NeedleWarning
from needle.train.build import LayerSummary, build_model, plan_model
from needle.train.checkpoint import Checkpoint, EpochMetrics
from needle.train.config import GENERATED, TrainConfig
from needle.train.datasets import Data, load_data, unscaled_warning
from needle.train.datasets.augment import augmentation
from needle.train.language import LanguageModel, Windows
from needle.train.layers import LAYER_TYPES, Shape
from needle.train.normalize import Normalization
from needle.train.source import KeyPath

# -- the pieces of a run ---------------------------------------------------------------------


@dataclass
class Session:
    """A config made real: data, model, optimizer and loaders."""

    config: TrainConfig
    data: Data
    model: nn.Sequential
    plan: list[LayerSummary]  # the model, a row per layer (`build.plan_model`)
    optimizer: optim.Optimizer
    train_loader: DataLoader | Windows  # Windows for a language model
    val_loader: DataLoader | Windows
    device: Device  # where the model and the batches live (`train.device`)

    @property
    def parameter_count(self) -> int:
        return sum(row.params for row in self.plan if row.depth == 0)

    def checkpoint(
        self, epoch: int, history: Sequence[EpochMetrics], config: dict[str, Any], **extra: Any
    ) -> Checkpoint:
        """The session's state now (parameters, optimizer, RNG) after `epoch` epochs;
        `config` is `config_data(self.config)`, made once by the caller. A stop inside an
        epoch (`step` in `extra`) keeps a language model's carried hidden state too."""
        if extra.get("step") and isinstance(self.model, LanguageModel):
            extra["carried"] = self.model.carried_state()
        return Checkpoint(
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            optimizer_name=self.config.train.optimizer.name,
            rng=np.random.get_state(),
            epoch=epoch,
            history=list(history),
            config=config,
            in_features=self.data.in_features,
            num_classes=self.data.num_classes,
            normalization=self.data.normalization,
            sample_shape=self.data.sample_shape,
            vocabulary=self.data.vocabulary,
            **extra,
        )


def prepare(config: TrainConfig, *, normalization: Normalization | None = None) -> Session:
    """Load the data (scaled with a resumed run's `normalization`, if it has one) and build the
    model and optimizer on `train.device`, checking that everything fits, before anything is
    written. Seeds numpy's global RNG with `config.seed` first. Features that look unscaled
    get a NeedleWarning."""
    device = run_device(config)
    with using_device(device):
        return _prepare(config, normalization, device)


def run_device(config: TrainConfig) -> Device:
    """The device `train.device` names (default: `default_device()`), or a ConfigError at
    that key when this machine cannot compute on it."""
    name = config.train.device
    if name is None:
        return default_device()
    device = device_named(name)
    if not device.enabled():
        enabled = ", ".join(d.name for d in all_devices() if d.enabled())
        raise config.error(
            ("train", "device"),
            f"{name} is not enabled on this machine: {NEEDS} (valid here: {enabled})",
        )
    return device


def _prepare(config: TrainConfig, normalization: Normalization | None, device: Device) -> Session:
    generated = config.data.dataset in GENERATED
    with _memory_for(config, ("data", "samples" if generated else "path"), "the data"):
        data = load_data(config, normalization=normalization)
    if message := unscaled_warning(config, data):
        warnings.warn(NeedleWarning(message), stacklevel=2)
    np.random.seed(config.seed)
    if data.language_model:  # windows over a token stream, the hidden state carried
        model, plan = build_checked_model(
            config, data.sample_shape, data.num_classes, label_shape=data.label_shape
        )
        optimizer = config.train.optimizer.build(model.parameters())
        train_windows, val_windows = language_windows(config, data)
        return Session(
            config, data, LanguageModel(model), plan, optimizer, train_windows, val_windows, device
        )
    shape = model_input(config, data.sample_shape, data.num_classes)
    model, plan = build_checked_model(config, shape, data.num_classes)
    optimizer = config.train.optimizer.build(model.parameters())
    batch = config.train.batch_size
    # Augmentation draws from numpy's global RNG as each training batch is made, after the
    # epoch's shuffle and in batch order: a resume that redraws the shuffle and replays the
    # batches done meets the same numbers (see skip_batches).
    augment = augmentation(config, data, shape)
    train_set = NDArrayDataset(as_input(data.train.X, shape), data.train.y, batch_transform=augment)
    train_loader = DataLoader(train_set, batch_size=batch, shuffle=config.train.shuffle)
    val_set = NDArrayDataset(as_input(data.val.X, shape), data.val.y)  # never augmented
    val_loader = DataLoader(val_set, batch_size=batch)
    return Session(config, data, model, plan, optimizer, train_loader, val_loader, device)


@contextlib.contextmanager
def _memory_for(config: TrainConfig, at: KeyPath, what: str) -> Iterator[None]:
    """Report running out of memory while making `what` at the config key that asked for it;
    a run-time failure (exit 1), since the same config may fit a bigger machine."""
    try:
        yield
    except MemoryError as err:
        detail = f" ({err})" if str(err) else ""
        error = config.error(at, f"not enough memory for {what}{detail}")
        error.exit_code = NeedleError.exit_code  # positioned like a mistake, but a failure
        raise error from None


def model_input(config: TrainConfig, sample_shape: Shape, num_classes: int) -> Shape:
    """The sample shape `config.model` takes for data of `sample_shape`: the data's own when
    the model fits it, else the flattened sample when the model fits that: a model written
    for flat features (an MLP, as every config was before images kept their shape) gets its
    images flattened, as a `flatten` first would, and trains exactly as it did on flat data.

    When neither fits, the error of the plan that got further through the layers is raised
    (an MLP with the wrong class count hears about its last layer, a CNN lacking a flatten
    about the layer that needed it)."""
    flat = (math.prod(sample_shape),)
    try:
        plan_model(config, sample_shape, num_classes)
        return tuple(sample_shape)
    except ConfigError as shaped:
        if len(sample_shape) == 1:
            raise
        try:
            plan_model(config, flat, num_classes)
        except ConfigError as flattened:
            raise (flattened if _reached(flattened) > _reached(shaped) else shaped) from None
        return flat


def _reached(err: ConfigError) -> int:
    """How far through the top-level layers a plan got before `err` (the class-count check,
    after the last layer, counts as furthest)."""
    found = re.match(r"model\.layers\[(\d+)\]", err.key or "")
    return int(found.group(1)) if found else sys.maxsize


def as_input(X: np.ndarray, input_shape: Shape) -> np.ndarray:
    """Samples `X` (N, *sample_shape) as the model takes them: (N, *input_shape), a view."""
    return X.reshape(len(X), *input_shape)


def language_windows(config: TrainConfig, data: Data) -> tuple[Windows, Windows]:
    """A token stream's training and validation windows (train.batch_size columns, bptt
    rows each), or a ConfigError at train.batch_size when a split is too short for them."""
    batch = config.train.batch_size
    for split, name in ((data.train, "training"), (data.val, "validation")):
        if len(split) < 2 * batch:
            raise config.error(
                ("train", "batch_size"),
                f"the {name} text has {len(split)} tokens, too few for {batch} streams of at "
                f"least 2; lower train.batch_size to at most {max(1, len(split) // 2)}",
            )
    bptt = data.sample_shape[0]
    return Windows(data.train.X, batch, bptt), Windows(data.val.X, batch, bptt)


def build_checked_model(
    config: TrainConfig, input_shape: Shape, num_classes: int, *, label_shape: Shape = ()
) -> tuple[nn.Sequential, list[LayerSummary]]:
    """`build_model` and its plan, with running out of memory reported at the largest layer
    (of those that hold no block, whose rows count their blocks' parameters too)."""
    rows = plan_model(config, input_shape, num_classes, label_shape=label_shape)
    total = sum(row.params for row in rows if row.depth == 0)
    holders = {row.index.rpartition(".")[0] for row in rows}  # "3" holds "3.1"
    largest = max((row for row in rows if row.index not in holders), key=lambda r: r.params)
    sets_size = LAYER_TYPES[largest.layer].sets_size
    at = largest.at + ((largest.layer, sets_size) if sets_size else ())
    what = f"a model of {total:,} parameters, {largest.params:,} of them in this layer"
    with _memory_for(config, at, what):
        return build_model(config, input_shape, num_classes, label_shape=label_shape), rows


def skip_batches(loader: DataLoader, done: int, rng: tuple) -> Iterator:
    """The rest of an epoch stopped after `done` batches: the caller has restored the RNG to
    the epoch's start, so iterating redraws the same shuffle; the finished batches are
    skipped, then the RNG is set to where the stop left it."""
    batches = iter(loader)
    for _ in range(done):
        next(batches)
    np.random.set_state(rng)
    yield from batches
