"""The `needle` command: parse, call one library function, render.

Command modules import numpy and needle only inside their command functions, so
`needle --help` and `needle --version` start fast.
"""

from __future__ import annotations

import typer

from needle_cli import __version__, gradcheck, init_stats, train
from needle_cli.errors import NeedleGroup

EPILOG = """Each command's --help has its options and examples.

Examples:

\b
  needle train configs/quickstart.yaml
  needle evaluate runs/quickstart-1
  needle gradcheck --all
  needle init-stats kaiming_uniform --depth 20
  needle data download mnist
"""

app = typer.Typer(
    name="needle",
    cls=NeedleGroup,
    help="needle: a small deep-learning framework over numpy, and tools to train and inspect it.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich-formatted help would import rich on every `--help`.
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"needle {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """needle: train MLPs from YAML, check gradients, inspect initializers."""


# Commands register here, one line each (their modules keep heavy imports inside functions).
gradcheck.register(app)
init_stats.register(app)
train.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
