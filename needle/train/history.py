"""A run's metrics read back from its folder as plain series, one value per epoch: what
`needle plot` draws and what any script can read without parsing the files itself."""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from needle.errors import NeedleError, UsageError
from needle.train.rundir import CONFIG_FILE, METRICS_JSONL

# A name that stands for a metric on both splits: "loss" is train_loss and val_loss.
SPLITS = ("train", "val")
GROUPS = ("loss", "accuracy", "perplexity")


@dataclass(frozen=True)
class History:
    """Every column of a run's metrics.jsonl, in epoch order: `series[name][i]` is that
    metric at `epochs[i]`; None where the run did not record it (an lr from before lr was
    kept). Diverged values stay as written (nan, inf)."""

    run_dir: Path
    epochs: tuple[int, ...]
    series: dict[str, tuple[float | None, ...]]

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def language_model(self) -> bool:
        return "val_perplexity" in self.series

    @property
    def metrics(self) -> list[str]:
        """The names `select` takes: each recorded metric, then the groups of both splits."""
        recorded = [name for name in self.series if self._recorded(name)]
        groups = [g for g in GROUPS if all(f"{s}_{g}" in recorded for s in SPLITS)]
        return recorded + groups

    def _recorded(self, name: str) -> bool:
        return any(value is not None for value in self.series[name])

    def select(self, metric: str) -> dict[str, tuple[float | None, ...]]:
        """The series `metric` names: itself, or for a group (`loss`) its train_ and val_
        series. Raises UsageError naming the metrics this run has."""
        if metric in GROUPS and metric in self.metrics:
            return {f"{s}_{metric}": self.series[f"{s}_{metric}"] for s in SPLITS}
        if metric in self.series and self._recorded(metric):
            return {metric: self.series[metric]}
        known = self.metrics
        close = difflib.get_close_matches(metric, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UsageError(
            f"run '{self.run_dir}' has no metric '{metric}'; {hint}it has: {', '.join(known)}"
        )


STATS_PREFIX = "stats."  # metrics.jsonl's per-layer statistics (train.log_stats), flattened


def layer_stat(history: History, stat: str) -> dict[str, tuple[float | None, ...]]:
    """Layer name → the per-epoch series of `stat` (grad_norm, weight_norm, update_ratio,
    dead_relu) of a `train.log_stats` run. Raises UsageError naming the statistics the run
    has, or saying it logged none."""
    found: dict[str, dict[str, tuple[float | None, ...]]] = {}
    for name, values in history.series.items():
        if name.startswith(STATS_PREFIX):
            layer, _, kind = name[len(STATS_PREFIX) :].rpartition(".")
            found.setdefault(kind, {})[layer] = values
    if not found:
        raise UsageError(
            f"run '{history.run_dir}' has no per-layer statistics: it was trained without "
            "train.log_stats (set train.log_stats: true to record them)"
        )
    if stat not in found:
        raise UsageError(
            f"run '{history.run_dir}' has no statistic '{stat}'; it has: {', '.join(found)}"
        )
    return found[stat]


def read_history(run_dir: Path) -> History:
    """The metrics of the run in `run_dir`, from its metrics.jsonl (a row per finished
    epoch). Raises UsageError if the folder is not a run's, NeedleError if the file is
    damaged."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS_JSONL
    if not run_dir.is_dir():
        raise UsageError(f"run folder '{run_dir}' not found")
    if not path.is_file():
        after = f"no {METRICS_JSONL} (needle train writes one after each epoch)"
        if (run_dir / CONFIG_FILE).is_file():
            raise UsageError(f"run '{run_dir}' has {after} yet")
        raise UsageError(f"'{run_dir}' is not a run folder: it has {after}")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise NeedleError(f"{path}:{number}: not a JSON line: {err.msg}") from None
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
            raise NeedleError(f"{path}:{number}: a row must be an object with an integer epoch")
        rows.append(row)
    flat = [_flatten(row) for row in rows]
    names = list(dict.fromkeys(key for row in flat for key in row))  # the file's column order
    series = {name: tuple(row.get(name) for row in flat) for name in names}
    return History(run_dir, tuple(row["epoch"] for row in rows), series)


def _flatten(row: dict, prefix: str = "") -> dict[str, float]:
    """A row's numbers by name, a nested mapping's as dotted names (`layers.0.grad_norm`);
    the epoch, and values that are not numbers, left out."""
    numbers: dict[str, float] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            numbers.update(_flatten(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and name != "epoch":
            numbers[name] = float(value)
    return numbers


def default_metrics(histories: Sequence[History]) -> list[str]:
    """What a plot of these runs shows unless told: for one run its loss, its accuracy (a
    language model's perplexity instead) and its learning rate, train and val together; for
    several, train_loss, val_loss, the val accuracy (or perplexity) and lr, a line per run
    in each. Only metrics every run recorded."""
    perplexity = all(h.language_model for h in histories)
    score = "perplexity" if perplexity else "accuracy"
    wanted = (
        ["loss", score, "lr"]
        if len(histories) == 1
        else ["train_loss", "val_loss", f"val_{score}", "lr"]
    )
    return [name for name in wanted if all(name in h.metrics for h in histories)]


def finite_points(
    epochs: tuple[int, ...], values: tuple[float | None, ...]
) -> tuple[list[int], list[float]]:
    """The (epoch, value) pairs of a series that can be drawn: missing and non-finite values
    (a diverged loss, an overflowed perplexity) left out."""
    pairs = [(e, v) for e, v in zip(epochs, values, strict=True) if v is not None]
    pairs = [(e, v) for e, v in pairs if math.isfinite(v)]
    return [e for e, _ in pairs], [v for _, v in pairs]
