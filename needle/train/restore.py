"""A finished run opened again: its config and chosen checkpoint (`open_run`), and the model
rebuilt from them with the checkpoint's weights loaded (`restored_model`). `needle evaluate`
and `needle predict` both start here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from needle import nn
from needle.errors import UsageError
from needle.train.checkpoint import Checkpoint, check_fits, load_checkpoint
from needle.train.config import TrainConfig, load_config, validate_config
from needle.train.layers import Shape
from needle.train.rundir import BEST_FILE, CHECKPOINT_FILE, CONFIG_FILE
from needle.train.session import build_checked_model
from needle.train.source import SourceMap

CHECKPOINTS = ("last", "best")


@dataclass(frozen=True)
class OpenedRun:
    """A run's config and one of its checkpoints, read and checked."""

    config: TrainConfig
    saved: Checkpoint
    checkpoint_path: Path
    label: str  # where the config came from, for messages: "runs/x/config.yaml"
    folder: bool  # opened from a run folder (else from a checkpoint file alone)


def open_run(target: str | Path, *, checkpoint: str = "last") -> OpenedRun:
    """A run folder's config.yaml and its "last" (checkpoint.npz) or "best" (best.npz)
    checkpoint, or a checkpoint file with the config stored inside it."""
    target = Path(target)
    if checkpoint not in CHECKPOINTS:
        raise UsageError(f"--checkpoint is last or best (got '{checkpoint}')")
    if checkpoint != "last" and not target.is_dir():
        raise UsageError(
            f"--checkpoint {checkpoint} picks a checkpoint of a run folder; '{target}' is a "
            "checkpoint file already"
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
        return OpenedRun(config, load_checkpoint(checkpoint_path), checkpoint_path, label, True)
    if not target.exists():
        raise UsageError(f"'{target}' not found: give a run folder or a checkpoint .npz")
    saved = load_checkpoint(target)
    label = f"the config stored in '{target}'"
    return OpenedRun(validate_config(saved.config, SourceMap(label)), saved, target, label, False)


def restored_model(run: OpenedRun, input_shape: Shape, *, label_shape: Shape = ()) -> nn.Sequential:
    """The model `run.config` builds for samples of `input_shape`, with the checkpoint's
    parameters loaded (refused if they do not fit it). Seeds numpy's global RNG with the
    run's seed first, as training did, so building draws what it drew then."""
    np.random.seed(run.config.seed)
    model, _ = build_checked_model(
        run.config, input_shape, run.saved.num_classes, label_shape=label_shape
    )
    check_fits(
        run.saved, model, run.config.train.optimizer.name, str(run.checkpoint_path), run.label
    )
    model.load_state_dict(run.saved.model)
    return model


def fits(found: Shape, trained: Shape, input_shape: Shape) -> bool:
    """Whether samples of shape `found` can go where the model trained on `trained` samples
    (taking `input_shape`) expects them: the same shape, or as many values when the model
    takes them flat (a run from before images kept their shape stored (784,) for MNIST)."""
    flat = len(input_shape) == 1
    return found == trained or (flat and math.prod(found) == input_shape[0])


def mismatch(found: Shape, trained: Shape) -> str:
    """What differs between samples of shape `found` and the `trained` ones, for messages."""
    if len(found) == len(trained) == 1:
        return f"{found[0]} features per sample but the model takes {trained[0]}"
    return f"samples of shape {found} but the model takes samples of shape {trained}"
