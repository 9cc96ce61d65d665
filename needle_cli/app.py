"""The `needle` command: parse, call one library function, render.

Each command lives in its own module, listed in `COMMANDS` with the line `needle --help`
shows for it, and the module is imported only when its command runs (or its own `--help` is
asked for): `needle --help` and `needle --version` load no command module, numpy or needle.
Command modules in turn import numpy and needle only inside their command functions.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import typer
import typer.main

from needle_cli import __version__
from needle_cli.errors import NeedleGroup

if TYPE_CHECKING:
    from typer._click import Command, Context

# name → (module, summary). The module's `register(app)` adds the command; the summary is
# what `needle --help` lists without importing it (a test checks it is the command's own).
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("needle_cli.train", "Train a model from a YAML config, or continue a run."),
    "evaluate": ("needle_cli.evaluate", "Loss, accuracy and confusion matrix of a trained model."),
    "predict": (
        "needle_cli.predict",
        "Predict classes of new data, or continue a language model's prompt.",
    ),
    "schema": ("needle_cli.schema", "Print the JSON Schema of config files, for editors."),
    "data": ("needle_cli.data", "Get datasets."),
    "gradcheck": (
        "needle_cli.gradcheck",
        "Check an op's gradient against float64 central differences.",
    ),
    "init-stats": ("needle_cli.init_stats", "Compare an initializer's theory with its draws."),
    "runs": (
        "needle_cli.runs",
        "List runs: status, epochs, best metric, time, and how their configs differ.",
    ),
    "compare": (
        "needle_cli.runs",
        "Final and best metrics, config differences and curves of runs, side by side.",
    ),
    "sweep": (
        "needle_cli.sweep",
        "Run a config's trials over a grid of settings and random draws, in parallel.",
    ),
    "plot": (
        "needle_cli.plot",
        "Draw a run's loss, accuracy and learning rate per epoch, or several runs' overlaid.",
    ),
}


def load_command(name: str) -> Command:
    """Import the module of command `name` and return its click command."""
    module = importlib.import_module(COMMANDS[name][0])
    holder = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)
    module.register(holder)
    return typer.main.get_group(holder).commands[name]


class CommandTable(MutableMapping):
    """The group's commands by name: every name in `COMMANDS` is listed, and a command's
    module is imported the first time the command itself is looked up."""

    def __init__(self) -> None:
        self.loaded: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name not in self.loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self.loaded[name] = load_command(name)
        return self.loaded[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self.loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(set(COMMANDS) | set(self.loaded)))

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self.loaded))


class LazyCommands(NeedleGroup):
    """The app's group, over a `CommandTable`; its help lists the summaries without loading."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = CommandTable()

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)  # the names alone: TyperGroup's own reads every command

    def format_commands(self, ctx: Context, formatter: Any) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


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
    cls=LazyCommands,
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


def main() -> None:
    """Console-script entry point."""
    app()
