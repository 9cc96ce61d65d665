"""Hyperparameter sweeps: trials from a grid and seeded random draws, each an ordinary run.

A trial is a list of `--set` overrides (`train.optimizer.lr=0.01`) applied to one config, so
it trains through `runner.train` exactly as `needle train CONFIG --set …` would, into a run
folder of its own. The trials are

    the grid's product      every combination of `--grid KEY=V1,V2,…` (values read as YAML)
    × N random draws         `--range KEY=LO:HI` uniform, `LO:HI:log` log-uniform
                             (exp of a uniform draw between log LO and log HI), from `seed`

and run in worker processes (spawned: each imports needle afresh, so none inherits the
caller's state), or as tasks on a Ray cluster (`sweep_ray`). A trial is named by a hash of
its overrides, stable across runs, and the sweep folder's `sweep.json` records each finished
one (rewritten atomically after each), so running the same sweep again skips those done and
resumes those interrupted.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from needle.errors import NeedleError, UsageError
from needle.fileio import write_text
from needle.train.early_stopping import default_mode
from needle.train.signals import StopFlag
from needle.train.source import read_yaml

SWEEP_FILE = "sweep.json"
COMPLETED = "completed"

# -- trials ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """`KEY=LO:HI[:log]`: a value drawn uniformly (or log-uniformly) from [lo, hi]; integers
    when both ends are written as integers."""

    key: str
    lo: float
    hi: float
    log: bool = False
    integer: bool = False

    def draw(self, rng: np.random.Generator) -> int | float:
        if self.log:
            value = math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))
        else:
            value = rng.uniform(self.lo, self.hi)
        return min(max(round(value), int(self.lo)), int(self.hi)) if self.integer else value


@dataclass(frozen=True)
class Trial:
    """One point of a sweep: its overrides in order, and their values by key for display."""

    overrides: tuple[str, ...]

    @property
    def id(self) -> str:
        """A hash of the overrides: the same settings name the same trial in every sweep."""
        text = json.dumps(sorted(self.overrides))
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    @property
    def settings(self) -> dict[str, str]:
        return dict(o.split("=", 1) for o in self.overrides)


def _key(text: str, flag: str) -> tuple[str, str]:
    key, sep, rest = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"{flag} {text}: expected KEY=…, such as train.optimizer.lr=…")
    return key.strip(), rest


def _top_level_values(rest: str, flag: str) -> list[str]:
    """`rest` split at the commas outside brackets, braces and quoted strings: `[64,64],[128]`
    is two values, each a YAML list, as `--set model.hidden=[64,64]` is one. A quote opens a
    string only where YAML's would, at the start of a value or of a list or mapping item, so
    a plain `it's` is one value, as it was before brackets were read."""
    values, depth, quote, start, last, escaped = [], 0, "", 0, "", False
    for i, char in enumerate(rest):
        if quote:  # inside a string only its closing quote counts; "…" escapes with a backslash
            if escaped:
                escaped = False
            elif quote == '"' and char == "\\":
                escaped = True
            elif char == quote:
                quote, last = "", char
            continue
        if char in "'\"" and last in ("", "[", "{", ",", ":"):
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth < 0:
                raise UsageError(f"{flag}: '{char}' at position {i + 1} of '{rest}' closes nothing")
        elif char == "," and depth == 0:
            values.append(rest[start:i].strip())
            start, last = i + 1, ""
            continue
        if not char.isspace():
            last = char
    if depth or quote:
        raise UsageError(f"{flag}: '{rest}' leaves a {quote or 'bracket'} open")
    return [*values, rest[start:].strip()]


def parse_grid(text: str) -> tuple[str, list[str]]:
    """`KEY=V1,V2,…` as the key and its values' texts (each a YAML value, as in --set; a
    comma inside brackets, braces or quotes belongs to its value)."""
    key, rest = _key(text, "--grid")
    values = _top_level_values(rest, f"--grid {text}")
    if not rest.strip() or any(not v for v in values):
        raise UsageError(f"--grid {text}: a value is empty; write KEY=V1,V2 such as {key}=0.1,0.01")
    for value in values:
        read_yaml(value, f"--grid {text}", inline=True)
    return key, values


def parse_range(text: str) -> Range:
    """`KEY=LO:HI` or `KEY=LO:HI:log` as a Range; lo < hi, both positive for log."""
    key, rest = _key(text, "--range")
    parts = rest.split(":")
    usage = f"write KEY=LO:HI or KEY=LO:HI:log, such as {key}=0.0001:0.1:log"
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].strip() != "log"):
        raise UsageError(f"--range {text}: cannot read '{rest}'; {usage}")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise UsageError(f"--range {text}: the ends must be numbers; {usage}") from None
    log = len(parts) == 3
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise UsageError(f"--range {text}: LO must be below HI (got {lo:g} and {hi:g})")
    if log and lo <= 0:
        raise UsageError(f"--range {text}: a log range needs LO > 0 (got {lo:g})")
    integer = all(re.fullmatch(r"\s*[+-]?\d+\s*", p) for p in parts[:2])
    return Range(key, lo, hi, log=log, integer=integer)


def make_trials(
    grid: Sequence[str] = (), ranges: Sequence[str] = (), *, random: int = 0, seed: int = 0
) -> list[Trial]:
    """The trials of `--grid` texts × `random` draws of the `--range` texts (seeded)."""
    axes = [parse_grid(g) for g in grid]
    drawn = [parse_range(r) for r in ranges]
    keys = [k for k, _ in axes] + [r.key for r in drawn]
    if len(set(keys)) < len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise UsageError(f"'{twice}' is swept twice; give each key one --grid or --range")
    if drawn and random < 1:
        raise UsageError("--range needs --random N (how many draws), N at least 1")
    if random and not drawn:
        raise UsageError(f"--random {random} needs a --range KEY=LO:HI to draw from")
    combos = [
        [f"{key}={value}" for (key, _), value in zip(axes, values, strict=True)]
        for values in itertools.product(*(values for _, values in axes))
    ]
    if not drawn:
        trials = [Trial(tuple(c)) for c in combos if c]
    else:
        rng = np.random.default_rng(seed)
        draws = [[f"{r.key}={r.draw(rng)!r}" for r in drawn] for _ in range(random)]
        trials = [Trial(tuple(c + d)) for c in combos for d in draws]
    if not trials:
        raise UsageError("nothing to sweep: give --grid KEY=V1,V2 or --random N --range KEY=LO:HI")
    return list(dict.fromkeys(trials))  # a repeated draw of an integer range runs once


# -- results ---------------------------------------------------------------------------------


@dataclass
class TrialResult:
    """How one trial ended: plain data, as `sweep.json` keeps it."""

    id: str
    overrides: list[str]
    status: str  # "completed", "interrupted", an early stop's reason, "failed: …", "skipped"
    run_dir: str | None = None
    best_metric: str | None = None
    best_value: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    seconds: float = 0.0
    reused: bool = False  # done in an earlier sweep with the same arguments

    @property
    def finished(self) -> bool:
        return self.run_dir is not None and not self.status.startswith(("interrupted", "failed"))


@dataclass
class SweepResult:
    config: str
    out: Path
    trials: list[TrialResult] = field(default_factory=list)
    interrupted: bool = False

    @property
    def best(self) -> TrialResult | None:
        """The finished trial with the best `best_value` (by its metric's direction)."""
        done = [t for t in self.trials if t.finished and t.best_value is not None]
        if not done:
            return None
        sign = -1.0 if default_mode(done[0].best_metric or "val_loss") == "max" else 1.0
        return min(done, key=lambda t: sign * t.best_value)

    def to_json(self) -> dict[str, Any]:
        best = self.best
        return {
            "config": self.config,
            "out": str(self.out),
            "interrupted": self.interrupted,
            "trials": [asdict(t) for t in self.trials],
            "best": asdict(best) if best else None,
        }


def _read_record(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {t["id"]: t for t in data["trials"]}
    except (ValueError, KeyError, TypeError):
        raise NeedleError(f"'{path}' is damaged; move it away to start the sweep afresh") from None


def _write_record(path: Path, config: str, trials: dict[str, TrialResult]) -> None:
    record = {"config": config, "trials": [asdict(t) for t in trials.values()]}
    write_text(path, json.dumps(record, indent=2) + "\n")


# -- running ---------------------------------------------------------------------------------

_WORKER_STOP: Any = None  # each worker's copy of the sweep's stop event


class _EventStop(StopFlag):
    """A run's stop flag that also reads the sweep's event (set by the parent process)."""

    @property
    def requested(self) -> bool:
        return self.signum is not None or bool(_WORKER_STOP and _WORKER_STOP.is_set())


def _init_worker(event: Any) -> None:
    global _WORKER_STOP
    _WORKER_STOP = event
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _run_trial(
    config_path: str, trial_id: str, overrides: list[str], out: str, resume_dir: str | None
) -> dict[str, Any]:
    from needle.train.config import load_config
    from needle.train.runner import resume, train
    from needle.train.signals import stop_on_signals

    if _WORKER_STOP is not None and _WORKER_STOP.is_set():
        return {"status": "skipped"}
    start = time.perf_counter()
    try:
        with stop_on_signals(_EventStop()) as stop:
            if resume_dir:
                result = resume(resume_dir, callbacks=None, stop=stop)
            else:
                config = load_config(config_path, overrides)
                result = train(config, out=out, name=f"trial-{trial_id}", stop=stop)
    except NeedleError as err:
        return {"status": f"failed: {err}", "seconds": time.perf_counter() - start}
    return outcome_of(result)


def outcome_of(result: Any) -> dict[str, Any]:
    """A finished or stopped run's report as a TrialResult's fields (less id and overrides)."""
    last = result.last
    return {
        "status": result.status,
        "run_dir": str(result.run_dir),
        "best_metric": result.best_metric,
        "best_value": result.best_value,
        "val_loss": last.val_loss if last else None,
        "val_accuracy": last.val_accuracy if last else None,
        "seconds": result.seconds,
    }


def run_sweep(
    config_path: str | Path,
    trials: Sequence[Trial],
    *,
    out: str | Path,
    workers: int | None = None,
    ray: str | None = None,
    stop: StopFlag | None = None,
    on_trial: Callable[[TrialResult], None] | None = None,
) -> SweepResult:
    """Run `trials` of the config at `config_path` into `out` (one run folder each, and
    `out/sweep.json`), `workers` at a time (default: the CPUs, at most one per trial), or as
    tasks on the Ray cluster at the address `ray` (`needle.train.sweep_ray`) instead.

    Every trial's config is validated first, so a key that is not the config's fails before
    any runs (the first trial's ConfigError). Trials `sweep.json` lists as finished are
    reused; interrupted ones resume. `stop.request()` (Ctrl-C) stops the running trials
    cleanly (resumable) and starts no more; `on_trial` is called as each trial ends.
    """
    from needle.train.config import load_config

    config_path, out = str(config_path), Path(out)
    for trial in trials:
        load_config(config_path, trial.overrides)
    if ray is not None:  # a cluster that cannot be reached is said before any folder is made
        from needle.train.sweep_ray import check_cluster

        check_cluster(ray)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NeedleError(f"cannot create the sweep folder '{out}': {err.strerror}") from None
    record_path = out / SWEEP_FILE
    record = _read_record(record_path)
    results: dict[str, TrialResult] = {}
    for tid, data in record.items():
        results[tid] = TrialResult(**{k: v for k, v in data.items() if k != "reused"})
    todo: list[tuple[Trial, str | None]] = []
    for trial in trials:
        known = results.get(trial.id)
        if known and known.finished and known.run_dir and Path(known.run_dir).is_dir():
            known.reused = True
        else:
            resumable = known and known.run_dir and Path(known.run_dir).is_dir()
            todo.append((trial, known.run_dir if resumable else None))
    stop = stop or StopFlag()

    def record_outcome(trial: Trial, outcome: dict[str, Any]) -> None:
        result = TrialResult(trial.id, list(trial.overrides), **outcome)
        results[trial.id] = result
        _write_record(record_path, config_path, results)
        if on_trial is not None:
            on_trial(result)

    if todo and ray is not None:
        from needle.train.sweep_ray import run_on_ray

        run_on_ray(ray, config_path, todo, out, stop, record_outcome)
    elif todo:
        workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
        context = multiprocessing.get_context("spawn")
        event = context.Event()
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(event,)
        ) as pool:
            pending: dict[Future, Trial] = {
                pool.submit(_run_trial, config_path, t.id, list(t.overrides), str(out), r): t
                for t, r in todo
            }
            while pending:
                done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                if stop.requested and not event.is_set():
                    event.set()
                    for future in pending:
                        future.cancel()
                for future in done:
                    trial = pending.pop(future)
                    if future.cancelled():
                        continue
                    outcome = future.result()
                    if outcome["status"] != "skipped":
                        record_outcome(trial, outcome)
    ordered = [results.get(t.id) or TrialResult(t.id, list(t.overrides), "not run") for t in trials]
    return SweepResult(config_path, out, ordered, interrupted=stop.requested)
