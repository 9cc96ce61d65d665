"""`needle train`: build the model a config describes and train it, or resume a run.

Parses the options, calls `needle.train.runner` and renders what it returns
(`needle_cli.progress` draws the run as it goes). numpy and needle are imported inside the
command so that `needle --help` stays fast.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from needle_cli.progress import RunDisplay, describe_data, ending_lines, percent
from needle_cli.render import JsonLine, Overrides, console, number, print_json

if TYPE_CHECKING:
    from rich.console import Console

    from needle.train.reports import RunResult
    from needle.train.signals import StopFlag

CURVE_ROWS = 12  # the end-of-run loss curve's height

TRAIN_HELP = """Train a model from a YAML config, or continue a run.

Each run gets a new folder under --out holding the resolved config, metrics (CSV and JSON
lines), a checkpoint and a summary. Ctrl-C, SIGTERM or closing the terminal (SIGHUP)
finishes the current step, saves a checkpoint and prints the command that resumes it; a
second Ctrl-C stops at once and says which checkpoint was kept. Keys are documented in
docs/config.md.
"""

# Each example is one line (\b keeps click from rewrapping it); a test checks that each
# parses, names a command that exists and a config file that is in configs/.
TRAIN_EPILOG = """Examples:

\b
  needle train configs/quickstart.yaml
  needle train configs/quickstart.yaml --set train.epochs=5 --set train.optimizer.lr=0.003
  needle train configs/quickstart.yaml --set model.layers.0.linear=128 --dry-run
  needle train configs/mnist_mlp.yaml --set data.path=data/mnist --dry-run
  needle train --resume runs/quickstart-1 --set train.epochs=40
"""


def register(app: typer.Typer) -> None:
    """Add `needle train` to the app."""
    app.command("train", help=TRAIN_HELP, epilog=TRAIN_EPILOG)(train)


# -- train -----------------------------------------------------------------------------------


def _warnings_as_lines(command: Callable[..., None]) -> Callable[..., None]:
    """Run `command` showing each NeedleWarning the library gives as one `warning: ...` line
    on stderr (every time, not once per place as Python's default), other warnings as usual."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        import warnings

        from needle.errors import NeedleWarning

        with warnings.catch_warnings():
            shown = warnings.showwarning

            def show(message, category, filename, lineno, file=None, line=None):
                if issubclass(category, NeedleWarning):
                    typer.echo(f"warning: {message}", err=True)
                else:
                    shown(message, category, filename, lineno, file, line)

            warnings.simplefilter("always", NeedleWarning)
            warnings.showwarning = show
            command(*args, **kwargs)

    return run


@_warnings_as_lines
def train(
    config: Annotated[
        Path | None,
        typer.Argument(metavar="CONFIG", help="YAML config file.", show_default=False),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Folder for run folders [default: runs]."),
    ] = None,
    overrides: Overrides = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            metavar="RUN_DIR",
            help="Continue this run from its last checkpoint (no CONFIG needed).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Build data and model, print the model summary, exit."),
    ] = False,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the resolved config as YAML and exit.")
    ] = False,
    as_json: JsonLine = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print no progress.")] = False,
) -> None:
    from needle.errors import UsageError
    from needle.train import runner, signals
    from needle.train.config import config_to_yaml, load_config

    overrides = overrides or []
    if config is not None and resume is not None:
        raise UsageError(
            "give a CONFIG file to start a run or --resume RUN_DIR to continue one, not both"
        )
    if config is None and resume is None:
        raise UsageError("give a CONFIG file to start a run, or --resume RUN_DIR to continue one")
    if resume is not None and (out is not None or dry_run or print_config):
        raise UsageError("--out, --dry-run and --print-config apply to a new run, not --resume")
    out_console = console()

    if config is not None:
        loaded = load_config(config, overrides)
        if print_config:
            typer.echo(config_to_yaml(loaded), nl=False)
            if not dry_run:
                return
        if dry_run:
            _dry_run(loaded, out_console, as_json)
            return

    display = RunDisplay(out_console, quiet=quiet or as_json and not out_console.is_terminal)
    stop = signals.StopFlag()
    try:
        with signals.stop_on_signals(stop, on_signal=_announcer(stop)), display:
            if config is not None:
                result = runner.train(
                    loaded,
                    out=out or Path("runs"),
                    name=config.stem,
                    callbacks=display.callbacks(),
                    stop=stop,
                )
            else:
                result = runner.resume(resume, overrides, callbacks=display.callbacks(), stop=stop)
    except KeyboardInterrupt:
        if stop.forced is None:
            raise
        _stopped_at_once(display.run_dir or resume, stop.forced)

    if result.status == "interrupted":
        epoch, step = result.stopped_at
        typer.echo(
            f"stopped at epoch {epoch}, step {step}; checkpoint saved to {result.checkpoint}\n"
            f"resume with: {result.resume_command}",
            err=True,
        )
    elif not quiet and not as_json:
        _final_table(out_console, result)
        if out_console.is_terminal:
            _loss_curve(out_console, result)
    if as_json:
        print_json(result.to_json(), one_line=True)
    if result.status == "interrupted":
        raise typer.Exit(128 + (result.signum or signal.SIGINT))


def _signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def _announcer(stop: StopFlag) -> Callable[[int], None]:
    """What a run says when a signal comes: that it stops after this step. After a hangup
    the terminal is gone and every write to it would fail (EIO), so the descriptors that
    went to a terminal when the run began are pointed at os.devnull first: the run still
    saves its checkpoint, and the messages still reach a log that stderr went to."""
    terminals = [fd for fd in (1, 2) if os.isatty(fd)]

    def announce(signum: int) -> None:
        hangup = signum == getattr(signal, "SIGHUP", None)
        if hangup:
            devnull = os.open(os.devnull, os.O_WRONLY)
            for fd in terminals:
                os.dup2(devnull, fd)
            os.close(devnull)
        if stop.forced is None:
            name = _signal_name(signum)
            line = f"{name}: stopping after this step to save a checkpoint ({name} again "
            line += "stops at once)"
            if hangup:  # to stderr itself: the live bar, if any, is gone with the terminal
                typer.echo(line, err=True)
            else:  # to sys.stderr as it is now: under a live bar, rich's proxy puts it above
                print(line, file=sys.stderr, flush=True)

    return announce


def _stopped_at_once(run_dir: Path | None, signum: int) -> NoReturn:
    """Report a run stopped by a second signal: what its folder kept, and how to resume."""
    from needle.train.checkpoint import load_checkpoint
    from needle.train.reports import resume_command
    from needle.train.rundir import CHECKPOINT_FILE

    how = f"stopped at once by a second {_signal_name(signum)}"
    path = run_dir / CHECKPOINT_FILE if run_dir is not None else None
    if path is None or not path.is_file():
        typer.echo(f"{how} before training began: nothing to resume", err=True)
    else:
        kept = load_checkpoint(path)
        if kept.step:
            at = f"at epoch {kept.epoch + 1}, step {kept.step}"
        else:
            at = f"after epoch {kept.epoch}" if kept.epoch else "from before the first step"
        typer.echo(
            f"{how}; kept the last checkpoint, {at}, in {path}\n"
            f"resume with: {resume_command(run_dir)}",
            err=True,
        )
    raise typer.Exit(128 + signum)


def _final_table(out: Console, result: RunResult) -> None:
    from rich.table import Table

    last = result.last
    out.print(f"run {result.run_dir}", soft_wrap=True)
    table = Table()
    columns = ["epochs", "time", "train loss", "train acc", "val loss", "val acc"]
    cells = [
        f"{result.epochs}/{result.total_epochs}",
        f"{result.seconds:.1f}s",
        number(last.train_loss),
        percent(last.train_accuracy),
        number(last.val_loss),
        percent(last.val_accuracy),
    ]
    if result.language_model:
        columns[3:3], cells[3:3] = ["train ppl"], [number(last.train_perplexity)]
        columns[6:6], cells[6:6] = ["val ppl"], [number(last.val_perplexity)]
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(*cells)
    out.print(table)
    for line in ending_lines(result):
        out.print(line, soft_wrap=True)


def _loss_curve(out: Console, result: RunResult) -> None:
    """A small plot of the run's train and val loss per epoch, as `needle plot` draws it."""
    from needle.errors import NeedleError
    from needle.train.history import read_history
    from needle_cli.plot import echo_panels, panel

    history = read_history(result.run_dir)
    if len(history.epochs) < 2:
        return  # one point is no curve
    try:
        losses = panel("loss", [history])
    except NeedleError:
        return  # no finite loss to draw: the table above has said so
    echo_panels(out, [losses], width=min(out.width, 72), height=CURVE_ROWS)


def _dry_run(config, out: Console, as_json: bool) -> None:
    from rich.table import Table

    from needle.train.build import total_flops
    from needle.train.layers import batch_shape
    from needle.train.schedules import epoch_rates
    from needle.train.session import prepare
    from needle.train.source import dotted

    session = prepare(config)
    data, rows, total = session.data, session.plan, session.parameter_count
    flops = total_flops(rows)
    steps = len(session.train_loader)
    settings = config.train
    if as_json:
        print_json(
            {
                "train": {
                    "epochs": settings.epochs,
                    "steps": steps,
                    "optimizer": settings.optimizer.model_dump(exclude_none=True),
                    "schedule": settings.schedule.model_dump(exclude_none=True),
                    "epoch_lr": epoch_rates(settings, steps),
                    "clip_grad_norm": settings.clip_grad_norm,
                    "early_stopping": settings.early_stopping
                    and settings.early_stopping.model_dump(),
                },
                "data": {
                    "source": data.source,
                    "train": len(data.train.y),
                    "val": len(data.val.y),
                    "in_features": data.in_features,
                    "num_classes": data.num_classes,
                },
                "layers": [
                    {**row.__dict__, "out_features": row.out_features, "at": dotted(row.at)}
                    for row in rows
                ],
                "parameters": total,
                "flops": flops,
            },
            one_line=True,
        )
        return
    out.print(f"data: {data.source}: {describe_data(data)}")
    for line in _train_lines(settings, steps):
        out.print(line, soft_wrap=True)
    table = Table(title="model", title_justify="left")
    for column, justify in (
        ("#", "left"),
        ("layer", "left"),
        ("output", "right"),
        ("params", "right"),
        ("FLOPs", "right"),
        ("init", "left"),
    ):
        table.add_column(column, justify=justify)
    table.add_row("", "input", batch_shape(data.sample_shape), "", "", "")
    for row in rows:
        name = "  " * row.depth + row.layer
        shape, params, row_flops = batch_shape(row.out_shape), f"{row.params:,}", f"{row.flops:,}"
        table.add_row(row.index, name, shape, params, row_flops, row.init)
    out.print(table)
    out.print(
        f"{total:,} parameters, {flops:,} FLOPs per sample (forward, a multiply-add as 2); "
        "dry run: nothing trained, nothing written"
    )


def _named(name: str, settings: dict) -> str:
    """`cosine (warmup_epochs 1, min_lr 0)`: a name and its settings, as written."""
    shown = ", ".join(
        f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in settings.items()
    )
    return f"{name} ({shown})" if shown else name


def _train_lines(settings, steps: int) -> list[str]:
    """What `--dry-run` says of `train:`: the length and the optimizer, and the schedule,
    clipping and early stopping when the config asks for them."""
    from needle.train.schedules import epoch_rates

    optimizer, schedule = settings.optimizer, settings.schedule
    lines = [
        f"train: {settings.epochs} epochs of {steps} steps, "
        + _named(optimizer.name, optimizer.arguments())
    ]
    if schedule.name != "constant":
        rates = epoch_rates(settings, steps)
        shown = ", ".join(f"{r:.3g}" for r in rates[:8]) + (", …" if len(rates) > 8 else "")
        written = schedule.model_dump(exclude={"name"}, exclude_none=True)
        lines.append(
            f"schedule: {_named(schedule.name, written)}; lr at each epoch's start: {shown}"
        )
    if settings.clip_grad_norm is not None:
        lines.append(
            f"clip_grad_norm: each step's gradients scaled to a global norm of at most "
            f"{settings.clip_grad_norm:g}"
        )
    stopping = settings.early_stopping
    if stopping is not None:
        lines.append(
            f"early stopping: after {stopping.patience} epochs in a row in which "
            f"{stopping.metric} ({stopping.mode}) does not improve by more than "
            f"{stopping.min_delta:g}"
        )
    return lines
