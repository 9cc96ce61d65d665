"""A run's folder: its name, and the config, metrics and summary files written into it."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from needle.errors import NeedleError
from needle.fileio import write_text
from needle.train.checkpoint import EpochMetrics
from needle.train.config import TrainConfig, config_to_yaml
from needle.train.reports import BEST_CHECKPOINT, RunResult, resume_command

CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "checkpoint.npz"
BEST_FILE = BEST_CHECKPOINT  # the checkpoint of the best epoch so far (early_stopping.Monitor)
METRICS_CSV = "metrics.csv"
METRICS_JSONL = "metrics.jsonl"
SUMMARY_FILE = "summary.json"

METRIC_FIELDS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "seconds",
    "lr",
)
PERPLEXITY_FIELDS = ("train_perplexity", "val_perplexity")  # language models'


def new_run_dir(out: Path, name: str) -> Path:
    """A fresh folder `out/name-N`, N one past the highest in use; never an existing one."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NeedleError(f"cannot create the runs folder '{out}': {err.strerror}") from None
    taken = [p.name[len(name) + 1 :] for p in out.glob(f"{name}-*")]
    n = max((int(t) for t in taken if t.isdigit()), default=0) + 1
    while True:
        candidate = out / f"{name}-{n}"
        try:
            candidate.mkdir()  # atomic: two runs started at once get different folders
            return candidate
        except FileExistsError:
            n += 1
        except OSError as err:
            raise NeedleError(f"cannot create run folder '{candidate}': {err.strerror}") from None


def write_metrics(
    run_dir: Path,
    history: Sequence[EpochMetrics],
    *,
    perplexity: bool = False,
    stats: Mapping[int, Any] | None = None,
) -> None:
    """metrics.csv and metrics.jsonl, a row per epoch; a language model's (`perplexity`)
    with its train_perplexity and val_perplexity too. `stats` (epoch → per-layer statistics,
    `train.log_stats`) adds a "stats" entry to those epochs' JSON lines, not to the CSV."""
    fields = METRIC_FIELDS + (PERPLEXITY_FIELDS if perplexity else ())
    rows = [{f: getattr(m, f) for f in fields} for m in history]
    lines = [",".join(fields)] + [",".join(_cell(row[f]) for f in fields) for row in rows]
    write_text(run_dir / METRICS_CSV, "\n".join(lines) + "\n")
    stats = stats or {}
    for row in rows:
        if row["epoch"] in stats:
            row["stats"] = stats[row["epoch"]]
    write_text(run_dir / METRICS_JSONL, "".join(json.dumps(row) + "\n" for row in rows))


def _cell(value: Any) -> str:
    return "" if value is None else repr(value)  # None: an lr a run from before it lacks


def write_summary(result: RunResult, extra: dict[str, Any] | None = None) -> None:
    summary = {**result.to_json(), **(extra or {})}
    write_text(result.run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")


def process_record(run_dir: Path, *, resumed: bool) -> dict[str, Any]:
    """What summary.json records of the process writing it: when the run first started (a
    resumed run keeps the time its summary had), and the process id and host, so that a
    reader can tell a run still going from one whose process died (`needle runs`)."""
    started = time.time()
    if resumed:
        try:
            before = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
            if isinstance(before.get("started"), (int, float)):
                started = float(before["started"])
        except (OSError, ValueError, AttributeError):
            pass  # no summary, or a damaged one: this session's start is the best known
    return {"started": started, "pid": os.getpid(), "host": socket.gethostname()}


def absolute_data_path(config: TrainConfig) -> TrainConfig:
    """`config` with `data.path` absolute (`~` expanded), as resolved from this folder now."""
    if config.data.path is None:
        return config
    path = os.path.abspath(os.path.expanduser(config.data.path))
    return config.model_copy(update={"data": config.data.model_copy(update={"path": path})})


def check_data_found(config: TrainConfig, fix: str) -> None:
    """Raise a positioned UsageError ending with `fix` if `data.path` names nothing."""
    path = config.data.path
    if path is not None and not os.path.exists(os.path.expanduser(path)):
        kind = "folder" if config.data.dataset in ("mnist", "fashion_mnist") else "file"
        raise config.error(("data", "path"), f"{kind} '{path}' not found; {fix}")


def write_config(run_dir: Path, config: TrainConfig) -> None:
    header = (
        "# The resolved config of this run, written by `needle train`.\n"
        f"# Continue it with: {resume_command(run_dir)}\n"
    )
    write_text(run_dir / CONFIG_FILE, header + config_to_yaml(config))
