"""`needle sweep`: a config's trials over a grid and random draws, each an ordinary run
(`needle.train.sweep`), and a table of how they did."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from needle_cli.render import console, number, print_json, table

if TYPE_CHECKING:
    from needle.train.sweep import SweepResult, TrialResult

HELP = """Run a config's trials over a grid of settings and random draws, in parallel.

Each trial is the config with its own --set overrides, trained as an ordinary run folder
under --out (default runs/sweep-CONFIG). --grid KEY=V1,V2 sweeps every combination (values
read as YAML, like --set; a comma inside brackets or quotes stays in its value, so --grid
model.hidden=[64,64],[128] is two lists); --random N draws N settings from each --range
KEY=LO:HI (uniformly, or log-uniformly with :log), crossed with the grid. Prints each
trial's settings, status, best and final val metrics and time, then the best trial and the
command that trains it again. Ctrl-C stops the running trials cleanly and keeps those
finished; the same command again skips the finished trials (out/sweep.json records them) and
resumes the interrupted. With --ray ADDRESS the trials run as tasks on a Ray cluster, and
each trial's run folder is written back here, under --out.
"""

EPILOG = """Examples:

\b
  needle sweep configs/quickstart.yaml --grid train.optimizer.lr=0.001,0.01 --grid train.epochs=5,10
  needle sweep configs/quickstart.yaml --random 8 --range train.optimizer.lr=0.0001:0.1:log
  needle sweep configs/quickstart.yaml --grid train.epochs=5 --workers 2 --out runs/lr --json
  needle sweep configs/quickstart.yaml --grid train.optimizer.lr=0.001,0.01 --ray auto
"""


def register(app: typer.Typer) -> None:
    """Add `needle sweep` to the app."""
    app.command("sweep", help=HELP, epilog=EPILOG)(sweep)


def sweep(
    config: Annotated[
        Path, typer.Argument(metavar="CONFIG", help="A YAML config.", show_default=False)
    ],
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            metavar="KEY=V1,V2",
            help="Values of a config key to try, each with every other --grid's; repeatable.",
            show_default=False,
        ),
    ] = None,
    random: Annotated[
        int,
        typer.Option("--random", metavar="N", min=0, help="Draws from the --range keys."),
    ] = 0,
    ranges: Annotated[
        list[str] | None,
        typer.Option(
            "--range",
            metavar="KEY=LO:HI[:log]",
            help="A range to draw a key's value from (log-uniform with :log); repeatable.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            metavar="W",
            min=1,
            help="Trials at once [default: the CPUs, at most the trials].",
            show_default=False,
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Run the trials as tasks on a Ray cluster instead: auto, ray://HOST:PORT, or"
            " local (a local instance for the sweep); needs pip install 'needle[ray]'.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="The sweep's folder [default: runs/sweep-CONFIG].",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random draws.")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the trials and the best as JSON instead.")
    ] = False,
) -> None:
    from needle.errors import UsageError
    from needle.train.signals import StopFlag, stop_on_signals
    from needle.train.sweep import make_trials, run_sweep
    from needle.train.sweep_ray import import_ray

    if ray is not None and workers is not None:
        raise UsageError("--workers and --ray: give one; on Ray, the cluster's CPUs set how many")
    if ray is not None:
        import_ray()  # before any trial, the one line that says how to install it
    trials = make_trials(grid or (), ranges or (), random=random, seed=seed)
    folder = out or Path("runs") / f"sweep-{config.stem}"
    stop = StopFlag()
    quiet = as_json

    def announce(signum: int) -> None:
        if not quiet:
            typer.echo("stopping: finishing the running trials' current step…", err=True)

    def finished(trial: TrialResult) -> None:
        if not quiet:
            typer.echo(f"trial {trial.id}: {trial.status} ({' '.join(trial.overrides)})", err=True)

    with stop_on_signals(stop, on_signal=announce):
        result = run_sweep(
            config, trials, out=folder, workers=workers, ray=ray, stop=stop, on_trial=finished
        )
    if as_json:
        print_json(result.to_json())
    else:
        render(result)
    if result.interrupted:
        raise typer.Exit(130)


def render(result: SweepResult) -> None:
    out = console()
    keys = list(dict.fromkeys(o.split("=", 1)[0] for t in result.trials for o in t.overrides))
    grid = table()
    for column in ("trial", *keys, "status", "best", "val_loss", "val_accuracy", "time"):
        grid.add_column(column, justify="left" if column in ("trial", "status") else "right")
    best = result.best
    for t in result.trials:
        settings = dict(o.split("=", 1) for o in t.overrides)
        status = f"{t.status} (earlier)" if t.reused else t.status
        grid.add_row(
            t.id + (" *" if best is t else ""),
            *(settings.get(k, "") for k in keys),
            status,
            number(t.best_value) if t.best_value is not None else "-",
            number(t.val_loss) if t.val_loss is not None else "-",
            number(t.val_accuracy) if t.val_accuracy is not None else "-",
            f"{t.seconds:.1f}s",
        )
    out.print(grid)
    if best is None:
        out.print("no trial finished")
        return
    sets = " ".join(f"--set {shlex.quote(o)}" for o in best.overrides)
    out.print(
        f"best: trial {best.id} ({best.best_metric} {number(best.best_value)}), {best.run_dir}"
    )
    out.print(f"  needle train {shlex.quote(result.config)} {sets}")
    if result.interrupted:
        out.print(f"interrupted: run the same command again to finish the sweep in {result.out}")
