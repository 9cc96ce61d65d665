"""Evaluation: a trained model's loss, accuracy and confusion matrix on some data.

`evaluate` takes a run folder (its config.yaml and checkpoint) or a checkpoint file alone (the
config stored inside it), and measures the run's validation split, or another data file, in
evaluation mode (dropout off, batch norm on its running statistics).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from needle import nn
from needle.data import DataLoader, NDArrayDataset
from needle.errors import UsageError
from needle.train.datasets import DATASET_TYPES, Split, load_data, load_path
from needle.train.language import LanguageModel
from needle.train.loop import Totals, perplexity, run_batches
from needle.train.restore import OpenedRun, fits, mismatch, open_run, restored_model
from needle.train.rundir import check_data_found
from needle.train.session import as_input, language_windows, model_input


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
    if label_column is not None and (data is None or Path(data).suffix.lower() != ".csv"):
        raise UsageError(
            f"--label-column names a column of a .csv given with --data (got '{data}')"
            if data is not None
            else "--label-column names a column of a .csv given with --data; the run's own "
            "data uses data.label_column from its config"
        )
    run = open_run(target, checkpoint=checkpoint)
    config, saved, checkpoint_path = run.config, run.saved, run.checkpoint_path
    if DATASET_TYPES[config.data.dataset].text:
        if data is not None:
            raise UsageError(
                f"--data evaluates a classifier on a data file; this run is a language model "
                f"on '{config.data.dataset}', evaluated on its own validation text (drop --data)"
            )
        return _evaluate_language_model(run)
    sample_shape, num_classes = saved.sample_shape, saved.num_classes
    input_shape = model_input(config, sample_shape, num_classes)
    if data is None:
        check_data_found(
            config,
            f"if the data moved, set data.path in {run.label} to where it is now"
            if run.folder
            else "if the data moved, evaluate on it with --data NEW_PATH",
        )
        split = load_data(config, normalization=saved.normalization).val
        described = "validation split"
    else:
        label_column = label_column or config.data.label_column or "label"
        split = load_path(data, label_column=label_column)
        described = str(data)
        if not fits(split.sample_shape, sample_shape, input_shape):
            raise UsageError(f"'{data}' has {mismatch(split.sample_shape, sample_shape)}")
        if split.y.max() >= num_classes:  # load_path refuses a file without samples
            raise UsageError(
                f"'{data}' has labels up to {split.y.max()} but the model knows "
                f"{num_classes} classes (0 to {num_classes - 1})"
            )
        if saved.normalization is not None:  # the statistics training used, not this file's
            split = Split(saved.normalization.apply(split.X), split.y)
    if not fits(split.sample_shape, sample_shape, input_shape):  # the run's data changed
        raise UsageError(
            f"the run's data now has {mismatch(split.sample_shape, sample_shape)} "
            f"(trained as '{checkpoint_path}')"
        )
    split = Split(as_input(split.X, input_shape), split.y)
    model = restored_model(run, input_shape)
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


LM_CONFUSION_LIMIT = 100  # beyond this vocabulary a confusion matrix is too big to keep


def _evaluate_language_model(run: OpenedRun) -> Evaluation:
    """A language model run measured on its validation text, window by window from a zero
    state, as its validation passes were."""
    config = run.config
    fix = f"if the data moved, set data.path in {run.label} to where it is now"
    check_data_found(config, fix)
    data = load_data(config)
    model = restored_model(run, data.sample_shape, label_shape=data.label_shape)
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
        run.saved.epoch,
        run.checkpoint_path,
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
