"""Evaluation: a trained model's loss, accuracy and confusion matrix on some data.

`evaluate` takes a run folder (its config.yaml and checkpoint) or a checkpoint file alone (the
config stored inside it), and measures the run's validation split, or another data file, in
evaluation mode (dropout off, batch norm on its running statistics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from needle import nn
from needle.data import DataLoader, NDArrayDataset
from needle.errors import UsageError
from needle.train.checkpoint import Checkpoint, check_fits, load_checkpoint
from needle.train.config import TrainConfig, load_config, validate_config
from needle.train.datasets import DATASET_TYPES, Split, load_data, load_path
from needle.train.language import LanguageModel
from needle.train.layers import Shape
from needle.train.loop import Totals, perplexity, run_batches
from needle.train.rundir import BEST_FILE, CHECKPOINT_FILE, CONFIG_FILE, check_data_found
from needle.train.session import as_input, build_checked_model, language_windows, model_input
from needle.train.source import SourceMap


@dataclass(frozen=True)
class Evaluation:
    """Loss, accuracy and confusion matrix of a checkpoint on some data."""

    loss: float
    accuracy: float
    samples: int
    confusion: np.ndarray  # [true class, predicted class] counts
    epoch: int  # epochs the checkpoint had trained
    checkpoint: Path
    data: str  # what was evaluated: "validation split of spirals (...)" or a path
    # a language model's exp(loss per token); its loss, accuracy and samples are per token,
    # and its confusion matrix is kept up to LM_CONFUSION_LIMIT tokens (else it is empty)
    perplexity: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            **({} if self.perplexity is None else {"perplexity": self.perplexity}),
            "accuracy": self.accuracy,
            "samples": self.samples,
            "epoch": self.epoch,
            "checkpoint": str(self.checkpoint),
            "data": self.data,
            "confusion_matrix": self.confusion.tolist(),
        }


CHECKPOINTS = ("last", "best")


def evaluate(
    target: str | Path,
    *,
    data: str | Path | None = None,
    label_column: str | None = None,
    checkpoint: str = "last",
) -> Evaluation:
    """Evaluate a run folder's checkpoint (with its config.yaml) or a checkpoint file (with
    the config stored inside it) on the run's validation split, or on `data` (an .npz, .csv
    or MNIST folder). `label_column` names the label column of a `data` .csv (default: the
    run's `data.label_column`, else "label"). `checkpoint` picks a run folder's "last"
    (checkpoint.npz, the latest state) or "best" (best.npz, its best epoch)."""
    target = Path(target)
    if checkpoint not in CHECKPOINTS:
        raise UsageError(f"--checkpoint is last or best (got '{checkpoint}')")
    if checkpoint != "last" and not target.is_dir():
        raise UsageError(
            f"--checkpoint {checkpoint} picks a checkpoint of a run folder; '{target}' is a "
            "checkpoint file already"
        )
    if label_column is not None and (data is None or Path(data).suffix.lower() != ".csv"):
        raise UsageError(
            f"--label-column names a column of a .csv given with --data (got '{data}')"
            if data is not None
            else "--label-column names a column of a .csv given with --data; the run's own "
            "data uses data.label_column from its config"
        )
    if target.is_dir():
        config_path = target / CONFIG_FILE
        if not config_path.is_file():
            raise UsageError(f"'{target}' is not a run folder: it has no {CONFIG_FILE}")
        config, label = load_config(config_path), str(config_path)
        checkpoint_path = target / (BEST_FILE if checkpoint == "best" else CHECKPOINT_FILE)
        if not checkpoint_path.is_file() and checkpoint == "best":
            raise UsageError(
                f"run '{target}' has no {BEST_FILE}: a run writes it at the end of each epoch "
                "that improves on its best so far; use --checkpoint last"
            )
    elif target.exists():
        checkpoint_path, label = target, f"the config stored in '{target}'"
    else:
        raise UsageError(f"'{target}' not found: give a run folder or a checkpoint .npz")
    saved = load_checkpoint(checkpoint_path)
    if not target.is_dir():
        config = validate_config(saved.config, SourceMap(label))
    if DATASET_TYPES[config.data.dataset].text:
        if data is not None:
            raise UsageError(
                f"--data evaluates a classifier on a data file; this run is a language model "
                f"on '{config.data.dataset}', evaluated on its own validation text (drop --data)"
            )
        return _evaluate_language_model(config, saved, checkpoint_path, label)
    sample_shape, num_classes = saved.sample_shape, saved.num_classes
    input_shape = model_input(config, sample_shape, num_classes)
    if data is None:
        check_data_found(
            config,
            f"if the data moved, set data.path in {config_path} to where it is now"
            if target.is_dir()
            else "if the data moved, evaluate on it with --data NEW_PATH",
        )
        split = load_data(config, normalization=saved.normalization).val
        described = "validation split"
    else:
        label_column = label_column or config.data.label_column or "label"
        split = load_path(data, label_column=label_column)
        described = str(data)
        if not _fits(split.sample_shape, sample_shape, input_shape):
            raise UsageError(f"'{data}' has {_mismatch(split.sample_shape, sample_shape)}")
        if split.y.max() >= num_classes:  # load_path refuses a file without samples
            raise UsageError(
                f"'{data}' has labels up to {split.y.max()} but the model knows "
                f"{num_classes} classes (0 to {num_classes - 1})"
            )
        if saved.normalization is not None:  # the statistics training used, not this file's
            split = Split(saved.normalization.apply(split.X), split.y)
    if not _fits(split.sample_shape, sample_shape, input_shape):  # the run's data changed
        raise UsageError(
            f"the run's data now has {_mismatch(split.sample_shape, sample_shape)} "
            f"(trained as '{checkpoint_path}')"
        )
    split = Split(as_input(split.X, input_shape), split.y)
    np.random.seed(config.seed)
    model, _ = build_checked_model(config, input_shape, num_classes)
    check_fits(saved, model, config.train.optimizer.name, str(checkpoint_path), label)
    model.load_state_dict(saved.model)
    totals, confusion = measure_split(model, split, config.train.batch_size, num_classes)
    return Evaluation(
        totals.loss,
        totals.accuracy,
        totals.size,
        confusion,
        saved.epoch,
        checkpoint_path,
        described,
    )


def _fits(found: Shape, trained: Shape, input_shape: Shape) -> bool:
    """Whether samples of shape `found` can go where the model trained on `trained` samples
    (taking `input_shape`) expects them: the same shape, or as many values when the model
    takes them flat (a run from before images kept their shape stored (784,) for MNIST)."""
    flat = len(input_shape) == 1
    return found == trained or (flat and math.prod(found) == input_shape[0])


def _mismatch(found: Shape, trained: Shape) -> str:
    if len(found) == len(trained) == 1:
        return f"{found[0]} features per sample but the model takes {trained[0]}"
    return f"samples of shape {found} but the model takes samples of shape {trained}"


LM_CONFUSION_LIMIT = 100  # beyond this vocabulary a confusion matrix is too big to keep


def _evaluate_language_model(
    config: TrainConfig, checkpoint: Checkpoint, checkpoint_path: Path, label: str
) -> Evaluation:
    """A language model run measured on its validation text, window by window from a zero
    state, as its validation passes were."""
    check_data_found(config, f"if the data moved, set data.path in {label} to where it is now")
    data = load_data(config)
    np.random.seed(config.seed)
    model, _ = build_checked_model(
        config, data.sample_shape, data.num_classes, label_shape=data.label_shape
    )
    check_fits(checkpoint, model, config.train.optimizer.name, str(checkpoint_path), label)
    model.load_state_dict(checkpoint.model)
    _, windows = language_windows(config, data)
    totals, confusion = Totals(), np.zeros((0, 0), dtype=np.int64)
    if data.num_classes <= LM_CONFUSION_LIMIT:
        confusion = np.zeros((data.num_classes,) * 2, dtype=np.int64)
    targets = (y.numpy().astype(np.int64) for _, y in windows)
    for result, y in zip(run_batches(windows, LanguageModel(model)), targets, strict=True):
        totals.add(result)
        if confusion.size:
            np.add.at(confusion, (y, result.predictions), 1)
    return Evaluation(
        totals.loss,
        totals.accuracy,
        totals.size,
        confusion,
        checkpoint.epoch,
        checkpoint_path,
        f"validation text of {data.source}",
        perplexity(totals.loss),
    )


def measure_split(
    model: nn.Module, split: Split, batch_size: int, num_classes: int
) -> tuple[Totals, np.ndarray]:
    """Loss and accuracy totals of `model` on `split` (evaluation mode), and the confusion
    matrix, counts indexed [true class, predicted class]."""
    loader = DataLoader(NDArrayDataset(split.X, split.y), batch_size=batch_size)
    totals, predicted = Totals(), []
    for result in run_batches(loader, model):  # in order: no shuffle
        totals.add(result)
        predicted.append(result.predictions)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (split.y, np.concatenate(predicted)), 1)
    return totals, confusion
