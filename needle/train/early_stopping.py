"""The best epoch so far, and early stopping on it.

`Monitor` follows one metric of each epoch (`val_loss` unless `train.early_stopping` names
another) and knows the best value, its epoch and the epochs since it; the run folder keeps a
checkpoint of that epoch as `best.npz`, and `EarlyStopping` ends the run once `patience`
epochs in a row have not improved on it by more than `min_delta`. The monitor's state goes
into every checkpoint, so a resumed run goes on counting where it stopped.

    train:
      early_stopping: {metric: val_loss, mode: min, patience: 5, min_delta: 0}
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, field_validator, model_validator

from needle.train.fields import NonNegative, Positive, Strict, check_choice
from needle.train.loop import EpochMetrics, Hooks, LoopState

METRICS = ("val_loss", "val_accuracy", "train_loss", "train_accuracy")
MODES = ("min", "max")


class EarlyStoppingConfig(Strict):
    """`train.early_stopping:` a metric name, or a mapping with its settings."""

    metric: str = Field("val_loss", description=f"the metric followed: {', '.join(METRICS)}")
    mode: str | None = Field(
        None, description="min or max: which way is better (default: max for accuracies, else min)"
    )
    patience: Positive = Field(5, description="epochs without improvement before stopping")
    min_delta: NonNegative = Field(0.0, description="the least change that counts as improving")

    @field_validator("metric")
    @classmethod
    def _check_metric(cls, value: str) -> str:
        return check_choice("metric", METRICS, value)

    @field_validator("mode")
    @classmethod
    def _check_mode(cls, value: str | None) -> str | None:
        return None if value is None else check_choice("mode", MODES, value)

    @model_validator(mode="after")
    def _fill_mode(self) -> EarlyStoppingConfig:
        if self.mode is None:
            self.mode = default_mode(self.metric)
        return self


def default_mode(metric: str) -> str:
    return "max" if metric.endswith("accuracy") else "min"


def metric_or_mapping(value: Any) -> Any:
    """The short form `early_stopping: val_accuracy` as `{metric: val_accuracy}`."""
    return {"metric": value} if isinstance(value, str) else value


class Monitor(Hooks):
    """The best value of `metric` (lower with mode "min", higher with "max") over the epochs,
    its epoch, and the epochs since; an epoch improves on it by more than `min_delta`.
    `improved` says whether the latest epoch did."""

    def __init__(self, metric: str = "val_loss", mode: str = "min", min_delta: float = 0.0):
        self.metric, self.mode, self.min_delta = metric, mode, min_delta
        self.best: float | None = None
        self.best_epoch = 0
        self.since = 0  # epochs since the best one
        self.improved = False

    @classmethod
    def for_config(cls, config: EarlyStoppingConfig | None) -> Monitor:
        if config is None:
            return cls()
        return cls(config.metric, config.mode, config.min_delta)

    def on_epoch_end(self, state: LoopState, metrics: EpochMetrics) -> None:
        value = getattr(metrics, self.metric)
        if self.best is None:
            self.improved = math.isfinite(value)
        elif self.mode == "min":
            self.improved = value < self.best - self.min_delta
        else:
            self.improved = value > self.best + self.min_delta
        if self.improved:
            self.best, self.best_epoch, self.since = value, metrics.epoch, 0
        else:
            self.since += 1

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps: plain data, empty before the first epoch."""
        if self.best is None:
            return {}
        return {
            "metric": self.metric,
            "mode": self.mode,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "since": self.since,
        }

    def load(self, state: dict[str, Any]) -> None:
        """Go on from a checkpoint's `state()`; one that followed another metric or mode (the
        config changed on resume) is left behind, and the count starts again."""
        if state and (state["metric"], state["mode"]) == (self.metric, self.mode):
            self.best, self.best_epoch = state["best"], state["best_epoch"]
            self.since = state["since"]


class EarlyStopping(Hooks):
    """Ends the run after `patience` epochs in a row that did not improve on `monitor`'s best."""

    def __init__(self, monitor: Monitor, patience: int) -> None:
        self.monitor, self.patience = monitor, patience

    def on_epoch_end(self, state: LoopState, metrics: EpochMetrics) -> None:
        if self.monitor.since >= self.patience:
            m, n = self.monitor, self.patience
            state.request_stop(
                f"early stopping: {m.metric} did not improve by {m.min_delta:g} "
                f"for {n} epoch{'s' if n > 1 else ''}"
            )
