"""`needle runs` and `needle compare`: run folders at a glance and side by side
(`needle.train.runs_index`)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from needle_cli.progress import clock, percent
from needle_cli.render import console, number, print_json, table

if TYPE_CHECKING:
    from rich.console import Console

    from needle.train.runs_index import RunInfo

RUNS_EPILOG = """Examples:

\b
  needle runs
  needle runs runs/sweep --json
"""

COMPARE_EPILOG = """Examples:

\b
  needle compare runs/quickstart-1 runs/quickstart-2
  needle compare runs/mnist_mlp-1 runs/mnist_cnn-1 --json
"""

Json = Annotated[bool, typer.Option("--json", help="Print the table as JSON instead.")]


def register(app: typer.Typer) -> None:
    """Add `needle runs` and `needle compare` to the app."""
    app.command("runs", epilog=RUNS_EPILOG)(runs)
    app.command("compare", epilog=COMPARE_EPILOG)(compare)


def runs(
    folder: Annotated[
        Path, typer.Argument(metavar="[DIR]", help="A folder of run folders, or one run.")
    ] = Path("runs"),
    as_json: Json = False,
) -> None:
    """List runs: status, epochs, best metric, time, and how their configs differ."""
    from needle.train.runs_index import list_runs

    found = list_runs(folder)
    if as_json:
        print_json(found.to_json())
        return
    out = console()
    if not found.runs:
        out.print(f"no runs in {folder}")
        return
    grid = table()
    for column in ("run", "status", "epochs", "best", "time", "started", *found.differs):
        grid.add_column(column, justify="right" if column in ("epochs", "time") else "left")
    for run in found.runs:
        cells = [_epochs(run), _best(run), _time(run.seconds), _started(run.started)]
        diffs = [_value(run.config.get(key, "-")) for key in found.differs]
        grid.add_row(run.name, run.status, *cells, *diffs)
    out.print(grid)
    for run in found.runs:
        if run.problems:
            out.print(f"{run.name}: {'; '.join(run.problems)}")


def compare(
    paths: Annotated[list[Path], typer.Argument(metavar="RUN RUN...", help="Run folders.")],
    as_json: Json = False,
) -> None:
    """Final and best metrics, config differences and curves of runs, side by side."""
    from needle.train.runs_index import compare_runs

    found = compare_runs(paths)
    if as_json:
        print_json(found.to_json())
        return
    grid = table()
    grid.add_column("")
    for run in found.runs:
        grid.add_column(run.name, justify="right")
    metrics = list(dict.fromkeys(k for run in found.runs for k in run.final))
    grid.add_row("status", *(r.status for r in found.runs))
    grid.add_row("epochs", *(_epochs(r) for r in found.runs))
    for metric in metrics:
        grid.add_row(metric, *(_final(r, metric) for r in found.runs))
    grid.add_row("best", *(_best(r) for r in found.runs))
    grid.add_row("time", *(_time(r.seconds) for r in found.runs))
    for key in found.differs:
        grid.add_row(key, *(_value(r.config.get(key, "-")) for r in found.runs))
    out = console()
    out.print(grid)
    if not found.differs:
        out.print("their configs are the same")
    for run in found.runs:
        if run.problems:
            out.print(f"{run.name}: {'; '.join(run.problems)}")
    _curves(out, paths)


def _curves(out: Console, paths: list[Path]) -> None:
    """Their curves overlaid, as `needle plot RUN RUN…` draws them (runs with no finished
    epoch are left out)."""
    from needle.errors import NeedleError
    from needle.train.history import default_metrics, read_history
    from needle_cli.plot import echo_panels, panel

    histories = []
    for path in paths:
        try:
            history = read_history(path)
        except NeedleError:
            continue  # a run without metrics yet: its problems are listed above
        if history.epochs:
            histories.append(history)
    if len(histories) >= 2:
        echo_panels(out, [panel(name, histories) for name in default_metrics(histories)])


def _epochs(run: RunInfo) -> str:
    done = "?" if run.epochs is None else str(run.epochs)
    return done if run.total_epochs is None else f"{done}/{run.total_epochs}"


def _best(run: RunInfo) -> str:
    if run.best_metric is None or run.best_value is None:
        return "-"
    at = f" @{run.best_epoch}" if run.best_epoch is not None else ""
    return f"{run.best_metric} {number(run.best_value)}{at}"


def _final(run: RunInfo, metric: str) -> str:
    value = run.final.get(metric)
    if value is None:
        return "-"
    return percent(value) if metric.endswith("accuracy") else number(value)


def _time(seconds: float | None) -> str:
    return "-" if seconds is None else clock(seconds)


def _started(started: float | None) -> str:
    if started is None:
        return "-"
    return datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M")


def _value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)
