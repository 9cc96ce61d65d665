"""`needle train`, `needle evaluate`, `needle schema` and `needle data download`.

Each command parses its options, calls one library function (`needle.runs`, `needle.config`,
`needle.download`) and renders what it returns. numpy and needle are imported inside the
command functions so that `needle --help` stays fast.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from needle_cli.render import console, number, print_json

if TYPE_CHECKING:
    from rich.console import Console

    from needle.datasets import Data
    from needle.runs import EpochMetrics, Evaluation, RunResult

TRAIN_HELP = """Train a model from a YAML config, or continue a run.

Each run gets a new folder under --out holding the resolved config, metrics (CSV and JSON
lines), a checkpoint and a summary. Ctrl-C (or SIGTERM) finishes the current step, saves a
checkpoint and prints the command that resumes it. Keys are documented in docs/config.md.
"""

TRAIN_EPILOG = """Examples:

\b
  needle train configs/quickstart.yaml
  needle train configs/quickstart.yaml --set train.epochs=5 --set train.optimizer.lr=0.003
  needle train configs/mnist_mlp.yaml --dry-run
  needle train --resume runs/quickstart-1 --set train.epochs=40
"""


def register(app: typer.Typer) -> None:
    """Add `train`, `evaluate`, `schema` and `data download` to the app."""
    app.command("train", help=TRAIN_HELP, epilog=TRAIN_EPILOG)(train)
    app.command("evaluate")(evaluate)
    app.command("schema")(schema)
    data_app = typer.Typer(help="Get datasets.", no_args_is_help=True)
    data_app.command("download")(download)
    app.add_typer(data_app, name="data")


# The `--json` option of train, evaluate and data download.
JsonLine = Annotated[
    bool, typer.Option("--json", help="End stdout with one JSON line of the results.")
]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


# -- train -----------------------------------------------------------------------------------


def train(
    config: Annotated[
        Path | None,
        typer.Argument(metavar="CONFIG", help="YAML config file.", show_default=False),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Folder for run folders [default: runs]."),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY.PATH=VALUE",
            help="Override a config value, e.g. train.epochs=5 or model.layers[0].linear=128; "
            "repeatable; validated like the file.",
        ),
    ] = None,
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
    from needle import runs
    from needle.config import config_to_yaml, load_config
    from needle.errors import UsageError

    overrides = overrides or []
    if (config is None) == (resume is None):
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

    display = _Display(out_console, quiet=quiet or as_json and not out_console.is_terminal)
    with runs.stop_on_signals(runs.StopFlag()) as stop, display:
        if config is not None:
            result = runs.train(
                loaded,
                out=out or Path("runs"),
                name=config.stem,
                callbacks=display.callbacks(),
                stop=stop,
            )
        else:
            result = runs.resume(resume, overrides, callbacks=display.callbacks(), stop=stop)

    if result.status == "interrupted":
        epoch, step = result.stopped_at
        typer.echo(
            f"stopped at epoch {epoch}, step {step}; checkpoint saved to {result.checkpoint}\n"
            f"resume with: {result.resume_command}",
            err=True,
        )
    elif not quiet and not as_json:
        _final_table(out_console, result)
    if as_json:
        print_json(result.to_json(), one_line=True)
    if result.status == "interrupted":
        raise typer.Exit(128 + (result.signum or signal.SIGINT))


class _Display:
    """Progress for a run: a live bar in a terminal, a plain line per epoch elsewhere (pipes,
    CI logs), nothing when quiet."""

    def __init__(self, out: Console, *, quiet: bool) -> None:
        self.out = out
        self.quiet = quiet
        self.epochs = 0  # set when the run starts
        self.progress = None
        self.task = None

    def __enter__(self) -> _Display:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def callbacks(self):
        from needle.runs import Callbacks

        if self.quiet:
            return Callbacks()
        if not self.out.is_terminal:
            return Callbacks(on_start=self._start_line, on_epoch=self._epoch_line)
        return Callbacks(on_start=self._start_bar, on_step=self._step, on_epoch=self._epoch_bar)

    def _describe_start(self, start) -> str:
        what = "resuming" if start.resumed else "training"
        return f"{what} {start.run_dir}: {start.data.source}, {_describe_data(start.data)}"

    def _start_line(self, start) -> None:
        self.epochs = start.epochs
        self.out.print(self._describe_start(start), soft_wrap=True)

    def _epoch_line(self, m: EpochMetrics) -> None:
        self.out.print(_epoch_text(m, self.epochs), soft_wrap=True)

    def _start_bar(self, start) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.epochs = start.epochs
        self.out.print(self._describe_start(start))
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  acc {task.fields[acc]}"),
            TimeElapsedColumn(),
            console=self.out,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train",
            total=start.steps,
            completed=start.step,
            epoch=start.epoch,
            epochs=start.epochs,
            loss="-",
            acc="-",
        )

    def _step(self, p) -> None:
        self.progress.update(
            self.task,
            completed=p.step,
            epoch=p.epoch,
            loss=number(p.loss),
            acc=_percent(p.accuracy),
        )

    def _epoch_bar(self, m: EpochMetrics) -> None:
        self.progress.console.print(_epoch_text(m, self.epochs))
        self.progress.reset(self.task, completed=0)


def _describe_data(data: Data) -> str:
    return (
        f"{len(data.train.y)} train / {len(data.val.y)} val samples, "
        f"{data.in_features} features, {data.num_classes} classes"
    )


def _epoch_text(m: EpochMetrics, epochs: int) -> str:
    return (
        f"epoch {m.epoch}/{epochs}  train loss {number(m.train_loss)} "
        f"acc {_percent(m.train_accuracy)}  val loss {number(m.val_loss)} "
        f"acc {_percent(m.val_accuracy)}  {m.seconds:.2f}s"
    )


def _final_table(out: Console, result: RunResult) -> None:
    from rich.table import Table

    last = result.last
    out.print(f"run {result.run_dir}", soft_wrap=True)
    table = Table()
    for column in ("epochs", "time", "train loss", "train acc", "val loss", "val acc"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{result.epochs}/{result.total_epochs}",
        f"{result.seconds:.1f}s",
        number(last.train_loss),
        _percent(last.train_accuracy),
        number(last.val_loss),
        _percent(last.val_accuracy),
    )
    out.print(table)


def _dry_run(config, out: Console, as_json: bool) -> None:
    from rich.table import Table

    from needle.runs import prepare

    session = prepare(config)
    data, rows, total = session.data, session.plan, session.parameter_count
    if as_json:
        print_json(
            {
                "data": {
                    "source": data.source,
                    "train": len(data.train.y),
                    "val": len(data.val.y),
                    "in_features": data.in_features,
                    "num_classes": data.num_classes,
                },
                "layers": [row.__dict__ for row in rows],
                "parameters": total,
            },
            one_line=True,
        )
        return
    out.print(f"data: {data.source}: {_describe_data(data)}")
    table = Table(title="model", title_justify="left")
    for column, justify in (
        ("#", "left"),
        ("layer", "left"),
        ("output", "right"),
        ("params", "right"),
        ("init", "left"),
    ):
        table.add_column(column, justify=justify)
    table.add_row("", "input", f"(batch, {data.in_features})", "", "")
    for row in rows:
        name = "  " * row.depth + row.layer
        table.add_row(row.index, name, f"(batch, {row.out_features})", f"{row.params:,}", row.init)
    out.print(table)
    out.print(f"{total:,} parameters; dry run: nothing trained, nothing written")


# -- evaluate --------------------------------------------------------------------------------

# Beyond this many classes the confusion matrix is too wide to read in a terminal.
CONFUSION_LIMIT = 20


def evaluate(
    target: Annotated[
        Path,
        typer.Argument(metavar="RUN_DIR|CHECKPOINT", help="A run folder or a checkpoint .npz."),
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="PATH",
            help="Evaluate on this .npz, .csv or MNIST folder instead of the run's "
            "validation split.",
        ),
    ] = None,
    as_json: JsonLine = False,
) -> None:
    """Loss, accuracy and confusion matrix of a trained model."""
    from needle.runs import evaluate as evaluate_run

    result = evaluate_run(target, data=data)
    if as_json:
        print_json(result.to_json(), one_line=True)
        return
    _evaluation_tables(console(), result)


def _evaluation_tables(out: Console, result: Evaluation) -> None:
    from rich.table import Table

    out.print(f"{result.checkpoint} (epoch {result.epoch}) on {result.data}")
    table = Table()
    for column in ("samples", "loss", "accuracy"):
        table.add_column(column, justify="right")
    table.add_row(f"{result.samples:,}", number(result.loss), _percent(result.accuracy))
    out.print(table)
    classes = len(result.confusion)
    if classes > CONFUSION_LIMIT:
        out.print(f"confusion matrix: {classes} classes, too many to show (see --json)")
        return
    out.print("confusion matrix (rows: true class, columns: predicted)")
    matrix = Table()
    matrix.add_column("", justify="right")
    for c in range(classes):
        matrix.add_column(str(c), justify="right")
    for c, row in enumerate(result.confusion):
        matrix.add_row(str(c), *(str(int(v)) for v in row))
    out.print(matrix)


# -- schema ----------------------------------------------------------------------------------


def schema() -> None:
    """Print the JSON Schema of config files, for editors (e.g. yaml-language-server)."""
    from needle.config import json_schema_text

    typer.echo(json_schema_text())


# -- data download ---------------------------------------------------------------------------


def download(
    dataset: Annotated[
        str,
        typer.Argument(
            metavar="DATASET",
            help="A name from needle.download's table, e.g. mnist, cifar10 or ptb.",
        ),
    ],
    to: Annotated[
        Path | None,
        typer.Option("--to", metavar="DIR", help="Destination folder [default: data/DATASET]."),
    ] = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror",
            metavar="URL",
            help="Base URL holding the dataset's files [default: $NEEDLE_DATA_MIRROR, else "
            "the dataset's usual mirror].",
        ),
    ] = None,
    as_json: JsonLine = False,
) -> None:
    """Download a dataset's published files, checking pinned SHA-256 sums (archives are
    unpacked next to them)."""
    from needle.download import download as fetch

    folder = to or Path("data") / dataset
    out = console()
    live = out.is_terminal and not as_json

    def progress(name: str, done: int, total: int | None) -> None:
        # Live byte counts in a terminal only; logs get the one line per file below.
        size = f"{done / 1e6:.1f}" + (f"/{total / 1e6:.1f}" if total else "")
        out.print(f"{name}: {size} MB", end="\r")

    result = fetch(dataset, folder, mirror=mirror, on_progress=progress if live else None)
    if as_json:
        print_json(
            {
                "dataset": result.dataset,
                "folder": str(result.folder),
                "mirror": result.mirror,
                "files": [
                    {"name": f.name, "status": f.status, "bytes": f.size, "sha256": f.sha256}
                    for f in result.files
                ],
                "unpacked": [str(path) for path in result.unpacked],
            },
            one_line=True,
        )
        return
    for f in result.files:
        out.print(f"{f.status:>10}  {f.path}  ({f.size:,} bytes, sha256 ok)")
    if result.unpacked:
        out.print(f"{'unpacked':>10}  {len(result.unpacked)} files into {result.folder}")
    ready = f"{dataset} is ready in {result.folder}"
    out.print(f"{ready}; {result.use_with}" if result.use_with else ready)
