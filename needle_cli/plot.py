"""`needle plot`: a run's curves per epoch, or several runs' overlaid, in the terminal or as a
PNG (`needle.train.history` reads them; `needle_cli.charts` draws them)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from needle_cli.render import console, print_json

if TYPE_CHECKING:
    from rich.console import Console

    from needle.train.history import History
    from needle_cli.charts import Panel

HELP = """Draw a run's loss, accuracy and learning rate per epoch, or several runs' overlaid.

Reads each run folder's metrics.jsonl. One run: a panel each for its loss (train and val),
accuracy (a language model's perplexity instead) and learning rate. Several runs: train_loss,
val_loss, val_accuracy (or val_perplexity) and lr, a line per run. --metric picks the panels:
any column of metrics.jsonl, or loss, accuracy, perplexity for both splits at once.
--stat draws a train.log_stats run's per-layer statistic per epoch instead (grad_norm,
weight_norm, update_ratio or dead_relu), a line per layer.
--png writes the panels as an image instead (needs matplotlib: pip install 'needle[plot]').
"""

EPILOG = """Examples:

\b
  needle plot runs/quickstart-1
  needle plot runs/quickstart-1 runs/quickstart-2 --metric val_loss
  needle plot runs/ptb_lstm-1 --metric val_perplexity --metric lr
  needle plot runs/quickstart-1 --png curves.png
  needle plot runs/quickstart-1 --stat grad_norm
  needle plot runs/quickstart-1 --json
"""


def register(app: typer.Typer) -> None:
    """Add `needle plot` to the app."""
    app.command("plot", help=HELP, epilog=EPILOG)(plot)


def plot(
    runs: Annotated[
        list[Path],
        typer.Argument(metavar="RUN_DIR...", help="Run folders.", show_default=False),
    ],
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            metavar="NAME",
            help="A panel of this metric, e.g. val_loss, lr or loss (train and val); "
            "repeatable [default: loss, accuracy or perplexity, lr].",
            show_default=False,
        ),
    ] = None,
    stat: Annotated[
        list[str] | None,
        typer.Option(
            "--stat",
            metavar="NAME",
            help="A panel of a per-layer statistic (grad_norm, weight_norm, update_ratio, "
            "dead_relu), a line per layer; repeatable.",
            show_default=False,
        ),
    ] = None,
    png: Annotated[
        Path | None,
        typer.Option(
            "--png",
            metavar="FILE",
            help="Write the panels to this PNG file instead.",
            show_default=False,
        ),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option(
            metavar="COLUMNS",
            min=30,
            help="Width in columns [default: the terminal's, at most 100].",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the series drawn as JSON instead.")
    ] = False,
) -> None:
    from needle.errors import NeedleError
    from needle.train.history import default_metrics, read_history

    histories = [read_history(run) for run in runs]
    for history in histories:
        if not history.epochs:
            raise NeedleError(f"run '{history.run_dir}' has no finished epoch to plot yet")
    metrics = metric or ([] if stat else default_metrics(histories))
    panels = [panel(name, histories) for name in metrics]
    panels += [stat_panel(name, histories) for name in stat or ()]
    if as_json:
        print_json({"panels": [_panel_json(p) for p in panels]})
    elif png is not None:
        from needle_cli.charts import write_png

        write_png(panels, png)
        typer.echo(f"wrote {png}")
    else:
        echo_panels(console(), panels, width=width)


def panel(metric: str, histories: list[History]) -> Panel:
    """The lines of `metric` for each run; a label says the run only when there are several."""
    from needle.train.history import finite_points
    from needle_cli.charts import Line, Panel

    lines = []
    for history in histories:
        for name, values in history.select(metric).items():
            x, y = finite_points(history.epochs, values)
            if not x:
                continue  # every value diverged: nothing to draw for this one
            label = name if len(histories) == 1 else f"{history.name} {name}"
            if len(histories) > 1 and name == metric:
                label = history.name
            lines.append(Line(label, x, y))
    if not lines:
        from needle.errors import NeedleError

        raise NeedleError(f"no finite value of {metric} to plot (did the run diverge?)")
    return Panel(metric, lines)


def stat_panel(stat: str, histories: list[History]) -> Panel:
    """A line per layer (and run, when there are several) of the per-layer statistic `stat`."""
    from needle.train.history import finite_points, layer_stat
    from needle_cli.charts import Line, Panel

    lines = []
    for history in histories:
        for layer, values in layer_stat(history, stat).items():
            x, y = finite_points(history.epochs, values)
            if x:
                label = layer if len(histories) == 1 else f"{history.name} {layer}"
                lines.append(Line(label, x, y))
    if not lines:
        from needle.errors import NeedleError

        raise NeedleError(f"no finite value of {stat} to plot")
    return Panel(stat, lines)


def _panel_json(panel: Panel) -> dict:
    return {
        "metric": panel.title,
        "lines": [{"label": line.label, "epoch": line.x, "value": line.y} for line in panel.lines],
    }


def echo_panels(
    out: Console, panels: list[Panel], *, width: int | None = None, height: int | None = None
) -> None:
    """Print `panels` on `out`: in colour on a terminal, plain text in a pipe or with NO_COLOR."""
    from rich.text import Text

    from needle_cli.charts import MAX_WIDTH, PANEL_HEIGHT, PIPE_WIDTH, panels_text

    if width is None:
        width = min(out.width, MAX_WIDTH) if out.is_terminal else PIPE_WIDTH
    color = out.is_terminal and not out.no_color
    text = panels_text(panels, width=width, height=height or PANEL_HEIGHT, color=color)
    out.print(Text.from_ansi(text), soft_wrap=True)
