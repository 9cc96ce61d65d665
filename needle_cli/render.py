"""Rendering shared by the analysis commands: a console, JSON output, number formats.

The library hands back plain data; these helpers only turn it into text.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


# Width for output that goes to a file or a pipe, which has no width of its own: whatever
# COLUMNS says, each line there is as long as its content, so that no table cell is cut to
# "…" and no shape is folded over two lines (rich would fit tables to 80 columns).
PIPE_WIDTH = 100_000


def console() -> Console:
    """A console on the current stdout (made per call, so `CliRunner` captures it).

    Highlighting is off: numbers are coloured by meaning (pass/fail), not by rich's guesses.
    rich is imported here, not at the top, so `needle --help` does not load it.
    """
    from rich.console import Console

    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = PIPE_WIDTH
    return out


def table() -> Table:
    """An empty table in the commands' one style: a rule under the header, no outer border."""
    from rich import box
    from rich.table import Table

    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)


def plain(value: Any) -> Any:
    """`value` as strict JSON data: tuples become lists, numpy scalars Python numbers, and
    nan or ±inf (a comparison that could not be made) become null."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # a numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def print_json(data: Any, *, one_line: bool = False) -> None:
    """Print `data` as strict JSON on stdout: indented, or on `one_line` (the last line of a
    command's output, for scripts)."""
    indent = None if one_line else 2
    typer.echo(json.dumps(plain(data), indent=indent, allow_nan=False, ensure_ascii=False))


def number(value: float, digits: int = 4) -> str:
    """A compact number: `0.1531`, `1.2e-07`, `nan`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value != 0 and not 1e-3 <= abs(value) < 1e5:
        return f"{value:.{digits - 1}e}"
    return f"{value:#.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}"


def error(value: float) -> str:
    """An error magnitude in scientific notation: `3.1e-11`."""
    if value is None or math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf"
    return f"{value:.1e}"


def value(x: float) -> str:
    """A value compared at full precision where it matters: 4 significant digits."""
    if x is None or math.isnan(x):
        return "nan"
    return f"{x:.4g}"


# The `--json` option of train, evaluate and data download.
JsonLine = Annotated[
    bool, typer.Option("--json", help="End stdout with one JSON line of the results.")
]

# The `--set` option of train (and of gradcheck's and init-stats' --config).
Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Override a config value, e.g. train.epochs=5 or model.layers.0.linear=128 "
        "(a [0] index needs quotes in zsh: 'model.layers[0].linear=128'); repeatable; "
        "validated like the file.",
        show_default=False,
    ),
]

# The run that evaluate and predict open, and which of its checkpoints.
RunTarget = Annotated[
    Path,
    typer.Argument(metavar="RUN_DIR|CHECKPOINT", help="A run folder or a checkpoint .npz."),
]
CheckpointChoice = Annotated[
    str,
    typer.Option(
        "--checkpoint",
        metavar="last|best",
        help="A run folder's latest state (checkpoint.npz) or its best epoch (best.npz).",
    ),
]
