"""What a run reports as it goes and when it ends: plain data for the CLI to render."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from needle.train.config import TrainConfig
from needle.train.datasets import Data
from needle.train.loop import BatchResult, EpochMetrics, Hooks, LoopState, Totals

# -- what a run reports ----------------------------------------------------------------------

INTERRUPTED = "interrupted"  # the status of a run stopped by a signal (Ctrl-C, SIGTERM, SIGHUP)
BEST_CHECKPOINT = "best.npz"  # beside the latest checkpoint: the best epoch's


@dataclass(frozen=True)
class RunStart:
    """Sent once before the first step."""

    run_dir: Path
    config: TrainConfig
    data: Data
    epoch: int  # the first epoch this session trains (1-based)
    step: int  # batches of that epoch already done (a mid-epoch resume)
    epochs: int
    steps: int  # batches per epoch
    resumed: bool


@dataclass(frozen=True)
class Progress:
    """Sent after every batch of `phase`: "train", a training step of `epoch`, or "validate",
    a batch of the validation pass that ends it. `step` of `steps` counts that phase's
    batches, `samples` is this batch's size, loss and accuracy are running means over the
    phase so far."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    accuracy: float
    samples: int
    phase: str


@dataclass
class Callbacks:
    """Hooks a front end sets to show progress; each is optional. `on_step` gets each
    training step, `on_validate` each batch of the validation pass that ends an epoch."""

    on_start: Callable[[RunStart], None] | None = None
    on_step: Callable[[Progress], None] | None = None
    on_validate: Callable[[Progress], None] | None = None
    on_epoch: Callable[[EpochMetrics], None] | None = None


class Reporter(Hooks):
    """The loop's hooks as a front end's `Callbacks`: plain data (`Progress`, `EpochMetrics`)
    to render, never the live model and optimizer. `val_steps` is the validation pass's
    number of batches."""

    def __init__(self, callbacks: Callbacks, val_steps: int) -> None:
        self.callbacks = callbacks
        self.val_steps = val_steps
        self.val_step = 0

    def on_step(self, state: LoopState, batch: BatchResult) -> None:
        if self.callbacks.on_step:
            self.callbacks.on_step(
                _progress(state, state.step, state.steps, state.totals, batch, "train")
            )

    def on_validate_step(self, state: LoopState, batch: BatchResult) -> None:
        self.val_step += 1
        if self.callbacks.on_validate:
            self.callbacks.on_validate(
                _progress(state, self.val_step, self.val_steps, state.val, batch, "validate")
            )

    def on_evaluate(self, state: LoopState, val: Totals) -> None:
        self.val_step = 0

    def on_epoch_end(self, state: LoopState, metrics: EpochMetrics) -> None:
        if self.callbacks.on_epoch:
            self.callbacks.on_epoch(metrics)


def _progress(
    state: LoopState, step: int, steps: int, sums: Totals, batch: BatchResult, phase: str
) -> Progress:
    return Progress(
        state.epoch, state.epochs, step, steps, sums.loss, sums.accuracy, batch.size, phase
    )


@dataclass(frozen=True)
class RunResult:
    """How a run (or a session of it) ended."""

    run_dir: Path
    # "completed", "interrupted" (a signal), "diverged", or the reason a hook stopped it
    status: str
    epochs: int  # epochs completed
    total_epochs: int  # epochs the config asks for
    history: list[EpochMetrics]
    checkpoint: Path
    stopped_at: tuple[int, int] | None = None  # (epoch, step) of an interruption
    signum: int | None = None  # the signal that interrupted it
    unfinished_seconds: float = 0.0  # time spent in an epoch the interruption cut short
    # the best epoch so far by `best_metric` (val_loss, or early stopping's), kept in best.npz
    best_epoch: int | None = None
    best_metric: str | None = None
    best_value: float | None = None
    language_model: bool = False  # its losses are per token: perplexities are reported too

    @property
    def last(self) -> EpochMetrics | None:
        return self.history[-1] if self.history else None

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoint.with_name(BEST_CHECKPOINT)

    @property
    def resume_command(self) -> str:
        return resume_command(self.run_dir)

    @property
    def seconds(self) -> float:
        """Training time: the epochs completed, and the part of one an interruption cut short."""
        return sum(m.seconds for m in self.history) + self.unfinished_seconds

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON-ready data (also written to summary.json)."""
        last = self.last
        return {
            "run_dir": str(self.run_dir),
            "status": self.status,
            "epochs": self.epochs,
            "total_epochs": self.total_epochs,
            "train_loss": last.train_loss if last else None,
            "train_accuracy": last.train_accuracy if last else None,
            "val_loss": last.val_loss if last else None,
            "val_accuracy": last.val_accuracy if last else None,
            **(
                {
                    "train_perplexity": last.train_perplexity if last else None,
                    "val_perplexity": last.val_perplexity if last else None,
                }
                if self.language_model
                else {}
            ),
            "seconds": self.seconds,
            "checkpoint": str(self.checkpoint),
            "stopped_at": list(self.stopped_at) if self.stopped_at else None,
            "lr": last.lr if last else None,
            "best": {
                "epoch": self.best_epoch,
                "metric": self.best_metric,
                "value": self.best_value,
                "checkpoint": str(self.best_checkpoint),
            }
            if self.best_epoch
            else None,
        }


def resume_command(run_dir: Path) -> str:
    """The shell command that continues the run in `run_dir`."""
    return f"needle train --resume {shlex.quote(str(run_dir))}"
