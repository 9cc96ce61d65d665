"""`needle predict`: a trained model on new data, the class and probabilities of each sample,
or a language model's next tokens after a prompt (`needle.train.predict`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from needle_cli.render import CheckpointChoice, JsonLine, RunTarget, console, print_json

if TYPE_CHECKING:
    from rich.console import Console

    from needle.train.predict import Continuation, Predictions

PREDICT_EPILOG = """Examples:

\b
  needle predict runs/quickstart-1 --data points.csv
  needle predict runs/quickstart-1 --data points.csv --out preds.csv
  needle predict runs/mnist_mlp-1 --data data/mnist/t10k-images-idx3-ubyte.gz --json
  needle predict runs/mnist_cnn-1 --data digits.npz --checkpoint best --out preds.csv --force
  needle predict runs/text_transformer-1 --prompt "3 4 5" --tokens 8
  needle predict runs/text_transformer-1 --prompt "3 4 5" --temperature 0.8 --seed 1
"""


def register(app: typer.Typer) -> None:
    """Add `needle predict` to the app."""
    app.command("predict", epilog=PREDICT_EPILOG)(predict)


# Rows and class columns a terminal table shows; --out and --json hold them all.
ROWS_SHOWN = 20
CLASSES_SHOWN = 10


def predict(
    target: RunTarget,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="PATH",
            help="Samples to classify: a .csv (its label column optional), an .npz (X, y "
            "optional), an idx file of images, or a CIFAR-10 or MNIST folder.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Write a .csv of index, predicted, p_0 … p_k-1 (atomically).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out file.")] = False,
    label_column: Annotated[
        str | None,
        typer.Option(
            "--label-column",
            metavar="NAME",
            help="The header of a --data .csv's label column, left out of the features "
            "[default: the run's data.label_column, else label].",
        ),
    ] = None,
    prompt: Annotated[
        str | None,
        typer.Option(
            "--prompt",
            metavar="TEXT",
            help="A language model run: the text to continue, in the run's vocabulary.",
        ),
    ] = None,
    tokens: Annotated[
        int, typer.Option("--tokens", metavar="N", help="How many tokens to write after --prompt.")
    ] = 10,
    temperature: Annotated[
        float,
        typer.Option(
            "--temperature",
            metavar="T",
            help="0: the most probable token each step; above 0: drawn from softmax(logits/T).",
        ),
    ] = 0.0,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            metavar="N",
            help="The seed tokens are drawn with at a temperature above 0 [default: the run's].",
        ),
    ] = None,
    checkpoint: CheckpointChoice = "last",
    as_json: JsonLine = False,
) -> None:
    """Predict classes of new data, or continue a language model's prompt."""
    from needle.errors import UsageError

    if (data is None) == (prompt is None):
        raise UsageError(
            "give --data FILE (a classifier's samples) or --prompt TEXT (a language model's "
            "text to continue), one of them"
        )
    if prompt is not None:
        if out is not None or label_column is not None:
            raise UsageError("--out and --label-column go with --data, not --prompt")
        from needle.train.predict import continue_text

        continued = continue_text(
            target,
            prompt=prompt,
            tokens=tokens,
            temperature=temperature,
            seed=seed,
            checkpoint=checkpoint,
        )
        if as_json:
            print_json(continued.to_json(), one_line=True)
        else:
            _continuation(console(), continued)
        return
    from needle.train.predict import check_out, save_predictions
    from needle.train.predict import predict as predict_run

    if out is not None:
        check_out(out, force=force)  # before the work, not after
    result = predict_run(target, data=data, label_column=label_column, checkpoint=checkpoint)
    if out is not None:
        save_predictions(result, out, force=force)
    if as_json:
        print_json({**result.to_json(), **({"out": str(out)} if out else {})}, one_line=True)
    elif out is not None:
        classes = result.probabilities.shape[1]
        console().print(f"wrote {len(result):,} predictions ({classes} classes) to {out}")
    else:
        _prediction_table(console(), result)


def _prediction_table(out: Console, result: Predictions) -> None:
    from rich.table import Table

    out.print(f"{result.checkpoint} (epoch {result.epoch}) on {result.data}")
    classes = result.probabilities.shape[1]
    shown = min(classes, CLASSES_SHOWN)
    table = Table()
    for column in ("index", "predicted", *(f"p_{c}" for c in range(shown))):
        table.add_column(column, justify="right")
    for i in range(min(len(result), ROWS_SHOWN)):
        cells = (f"{p:.4f}" for p in result.probabilities[i, :shown])
        table.add_row(str(i), str(int(result.classes[i])), *cells)
    out.print(table)
    rest = [f"{len(result) - ROWS_SHOWN:,} more samples"] if len(result) > ROWS_SHOWN else []
    rest += [f"{classes - shown} more classes"] if classes > shown else []
    if rest:
        out.print(f"{' and '.join(rest)}: --out FILE or --json holds them all")


def _continuation(out: Console, result: Continuation) -> None:
    from rich.text import Text

    line = Text(result.separator.join(result.prompt), style="dim")
    line.append(result.separator)
    line.append(result.text, style="bold")
    out.print(line)
    how = "greedy" if result.temperature == 0 else f"temperature {result.temperature:g}"
    seed = "" if result.seed is None else f", seed {result.seed}"
    out.print(
        f"{len(result.tokens)} tokens, {how}{seed}; {result.checkpoint} (epoch {result.epoch})"
    )
