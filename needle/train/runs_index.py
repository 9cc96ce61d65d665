"""Run folders read back as plain data: what `needle runs` lists and `needle compare` sets
side by side.

A run's status is what its summary.json says ("completed", "interrupted", "diverged", early
stopping's reason…), except "running", which a summary says from the run's first step until
it ends: a process killed outright (SIGKILL, out of memory, a power cut) never gets to say
otherwise. So a "running" summary is checked against the pid and host it records: on this
host, a pid with no process reads "crashed"; one alive reads "running" (a pid reused since
by another program would read so too); on another host, or in a summary from before pids
were recorded, nothing can be checked and it reads "running?". A folder whose files are
missing or damaged is listed with what could be read, and the problems in `problems`.
"""

from __future__ import annotations

import json
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from needle.errors import UsageError
from needle.train.rundir import CHECKPOINT_FILE, CONFIG_FILE, METRICS_JSONL, SUMMARY_FILE

RUN_FILES = (CONFIG_FILE, SUMMARY_FILE, CHECKPOINT_FILE, METRICS_JSONL)  # any makes a run
METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
LM_METRICS = ("train_perplexity", "val_perplexity")


@dataclass(frozen=True)
class RunInfo:
    """One run folder, as far as its files could be read."""

    name: str  # the folder's name
    path: Path
    status: str  # see the module docstring; "unknown" when no summary could be read
    epochs: int | None  # epochs done
    total_epochs: int | None  # epochs the config asks for
    best_metric: str | None  # what "best" was judged by (val_loss, or early stopping's)
    best_value: float | None
    best_epoch: int | None
    final: dict[str, float]  # the last epoch's metrics (those of METRICS it has)
    seconds: float | None  # training time
    started: float | None  # when the run first started, seconds since the epoch
    config: dict[str, Any] = field(repr=False)  # dotted key → value, the whole config
    problems: tuple[str, ...] = ()  # files missing or damaged, one line each

    def to_json(self, keys: list[str] | None = None) -> dict[str, Any]:
        """JSON-ready data; with `keys`, the config's values for those keys only."""
        config = self.config if keys is None else {k: self.config.get(k) for k in keys}
        return {
            "name": self.name,
            "path": str(self.path),
            "status": self.status,
            "epochs": self.epochs,
            "total_epochs": self.total_epochs,
            "best": {"metric": self.best_metric, "value": self.best_value, "epoch": self.best_epoch}
            if self.best_metric is not None
            else None,
            "final": self.final,
            "seconds": self.seconds,
            "started": self.started,
            "config": config,
            "problems": list(self.problems),
        }


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings and lists as dotted key paths to leaf values, as `--set` writes them:
    `{"train": {"optimizer": {"lr": 0.1}}}` → `{"train.optimizer.lr": 0.1}`, a list's items
    as `model.layers[0].linear`."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out if out or not prefix else {prefix: {}}
    if isinstance(data, list):
        out = {}
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}[{i}]"))
        return out if out or not prefix else {prefix: []}
    return {prefix: data}


MISSING = object()  # a key one config has and another lacks


def config_differences(configs: list[dict[str, Any]]) -> list[str]:
    """The dotted keys whose values are not the same in every one of `configs` (flattened),
    a key that some lack included; in the order the keys first appear."""
    keys = list(dict.fromkeys(k for config in configs for k in config))
    return [
        k
        for k in keys
        if len({json.dumps(c.get(k, MISSING), default=repr) for c in configs}) > 1
        # MISSING dumps by repr: never equal to a value a config has
    ]


def _read_json(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"no {path.name}")
    except (OSError, ValueError) as err:
        problems.append(f"{path.name} unreadable ({type(err).__name__})")
    return None


def _read_metrics(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []  # no epoch finished yet
    except OSError as err:
        problems.append(f"{path.name} unreadable ({err.strerror})")
        return []
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError:
            problems.append(f"{path.name} line {n} is not JSON")
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _read_config(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"no {path.name}")
        return {}
    except (OSError, yaml.YAMLError) as err:
        problems.append(f"{path.name} unreadable ({type(err).__name__})")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path.name} is not a mapping")
        return {}
    return flatten(data)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's
    except (OSError, OverflowError):
        return False
    return True


def _status(summary: dict[str, Any] | None) -> str:
    if summary is None or not isinstance(summary.get("status"), str):
        return "unknown"
    status = summary["status"]
    if status != "running":
        return status
    pid, host = summary.get("pid"), summary.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return "running?"
    return "running" if process_alive(pid) else "crashed"


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else None


def read_run(path: Path) -> RunInfo:
    """What the files of run folder `path` say; never raises for a damaged one."""
    problems: list[str] = []
    config = _read_config(path / CONFIG_FILE, problems)
    summary = _read_json(path / SUMMARY_FILE, problems)
    if summary is not None and not isinstance(summary, dict):
        problems.append(f"{SUMMARY_FILE} is not a mapping")
        summary = None
    rows = _read_metrics(path / METRICS_JSONL, problems)
    last = rows[-1] if rows else {}
    s = summary or {}
    keys = METRICS + (LM_METRICS if any(k in last for k in LM_METRICS) else ())
    final = {k: _number(last.get(k)) for k in keys if _number(last.get(k)) is not None}
    best = s.get("best") if isinstance(s.get("best"), dict) else None
    if best is None and rows:  # no summary: the lowest val_loss, the summary's own default
        losses = [(_number(r.get("val_loss")), r.get("epoch")) for r in rows]
        found = [(v, e) for v, e in losses if v is not None]
        if found:
            value, epoch = min(found, key=lambda pair: pair[0])
            best = {"metric": "val_loss", "value": value, "epoch": epoch}
    epochs = s.get("epochs") if isinstance(s.get("epochs"), int) else None
    if epochs is None and rows:
        epochs = len(rows)
    total = s.get("total_epochs")
    if not isinstance(total, int):
        total = config.get("train.epochs") if isinstance(config.get("train.epochs"), int) else None
    seconds = _number(s.get("seconds"))
    if seconds is None and rows:
        seconds = sum(_number(r.get("seconds")) or 0.0 for r in rows)
    started = _number(s.get("started"))
    if started is None:  # a run from before it was recorded: config.yaml is written first
        try:
            started = (path / CONFIG_FILE).stat().st_mtime
        except OSError:
            started = None
    return RunInfo(
        name=path.name,
        path=path,
        status=_status(summary),
        epochs=epochs,
        total_epochs=total,
        best_metric=best.get("metric") if best else None,
        best_value=_number(best.get("value")) if best else None,
        best_epoch=best.get("epoch") if best and isinstance(best.get("epoch"), int) else None,
        final=final,
        seconds=seconds,
        started=started,
        config=config,
        problems=tuple(problems),
    )


def is_run(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_FILES)


@dataclass(frozen=True)
class RunsTable:
    """Runs, by start time, and the config keys whose values differ between them."""

    runs: list[RunInfo]
    differs: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"differs": self.differs, "runs": [r.to_json(self.differs) for r in self.runs]}


def _table(runs: list[RunInfo]) -> RunsTable:
    return RunsTable(runs, config_differences([r.config for r in runs]) if len(runs) > 1 else [])


def list_runs(folder: str | Path = "runs") -> RunsTable:
    """The runs in `folder` (each sub-folder holding a run's files; `folder` itself if it is
    one run), oldest first."""
    folder = Path(folder)
    if not folder.exists():
        raise UsageError(f"runs folder '{folder}' not found")
    if not folder.is_dir():
        raise UsageError(f"'{folder}' is a file; needle runs takes a folder of runs, such as runs")
    paths = [folder] if is_run(folder) else sorted(p for p in folder.iterdir() if is_run(p))
    runs = [read_run(p) for p in paths]
    runs.sort(key=lambda r: (r.started is None, r.started or 0.0, r.name))
    return _table(runs)


def compare_runs(paths: list[str | Path]) -> RunsTable:
    """The runs at `paths`, in the order given, and their config differences."""
    if len(paths) < 2:
        raise UsageError(f"compare takes two runs or more (got {len(paths)})")
    runs = []
    for p in map(Path, paths):
        if not p.exists():
            raise UsageError(f"run folder '{p}' not found")
        if not is_run(p):
            raise UsageError(f"'{p}' is not a run folder: it has none of {', '.join(RUN_FILES)}")
        runs.append(read_run(p))
    return _table(runs)
