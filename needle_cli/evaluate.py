"""`needle evaluate`: loss, accuracy and a confusion matrix of a trained model, on its own
validation split or on other data (`needle.train.evaluate`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from needle_cli.progress import percent
from needle_cli.render import CheckpointChoice, JsonLine, RunTarget, console, number, print_json

if TYPE_CHECKING:
    from rich.console import Console

    from needle.train.evaluate import Evaluation

EVALUATE_EPILOG = """Examples:

\b
  needle evaluate runs/quickstart-1
  needle evaluate runs/quickstart-1 --checkpoint best
  needle evaluate runs/quickstart-1/checkpoint.npz --json
  needle evaluate runs/mnist_mlp-1 --data data/fashion_mnist
"""


def register(app: typer.Typer) -> None:
    """Add `needle evaluate` to the app."""
    app.command("evaluate", epilog=EVALUATE_EPILOG)(evaluate)


# Beyond this many classes the confusion matrix is too wide to read in a terminal.
CONFUSION_LIMIT = 20


def evaluate(
    target: RunTarget,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="PATH",
            help="Evaluate on this .npz, .csv or MNIST folder instead of the run's "
            "validation split.",
        ),
    ] = None,
    label_column: Annotated[
        str | None,
        typer.Option(
            "--label-column",
            metavar="NAME",
            help="The header of the label column of a --data .csv [default: the run's "
            "data.label_column, else label].",
        ),
    ] = None,
    checkpoint: CheckpointChoice = "last",
    as_json: JsonLine = False,
) -> None:
    """Loss, accuracy and confusion matrix of a trained model."""
    from needle.train.evaluate import evaluate as evaluate_run

    result = evaluate_run(target, data=data, label_column=label_column, checkpoint=checkpoint)
    if as_json:
        print_json(result.to_json(), one_line=True)
        return
    _evaluation_tables(console(), result)


def _evaluation_tables(out: Console, result: Evaluation) -> None:
    from rich.table import Table

    out.print(f"{result.checkpoint} (epoch {result.epoch}) on {result.data}")
    table = Table()
    if result.perplexity is not None:  # a language model: every number is per token
        for column in ("tokens", "loss", "perplexity", "next-token accuracy"):
            table.add_column(column, justify="right")
        cells = [number(result.loss), number(result.perplexity), percent(result.accuracy)]
        table.add_row(f"{result.samples:,}", *cells)
    else:
        for column in ("samples", "loss", "accuracy"):
            table.add_column(column, justify="right")
        table.add_row(f"{result.samples:,}", number(result.loss), percent(result.accuracy))
    out.print(table)
    classes = len(result.confusion)
    if classes == 0:
        return  # a language model's vocabulary too large to keep one
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
