"""Turn exceptions into one line on stderr and an exit code; never a traceback for a user error.

`NeedleGroup` is the click group behind the `needle` app, so the same handling applies to
the console script and to `typer.testing.CliRunner` in the tests:

- `needle.errors.NeedleError` (raised by the library for a failure the user can fix):
  `error: <message>`, exit code 2 for usage and config errors, 1 for run-time failures;
- `needle.errors.ConfigError` (a mistake at a known place in a config), laid out here from
  its parts, one `error:` line per mistake: `error: FILE:LINE:COL: KEY: MESSAGE`, the
  position in bold on a terminal (plain when piped or with NO_COLOR set);
- a command-line usage error (unknown option, bad value): `error: <message> (see … --help)`,
  exit 2;
- running out of memory (which the library reports at the config key where it can):
  `error: not enough memory (...)`, exit 1;
- anything else is a bug: one line saying so and where the full trace was saved, exit 1.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

if TYPE_CHECKING:
    from needle.errors import ConfigError

CRASH_TRACE_NAME = "needle-crash.trace.txt"  # in the system's temporary folder

# Exits, aborts and click's own errors go on to click's handling (typer ≥ 0.29 runs on its
# own copy of click, whose exception classes these are). Ctrl-C, a BaseException, passes
# `except Exception` by itself.
_CLICK_HANDLED = (typer.Exit, typer.Abort, ClickException)


def save_crash_trace() -> str:
    """Write the current exception's traceback to a file (atomically, like every file needle
    writes); return its path. Raises NeedleError if it cannot be written."""
    import tempfile
    import traceback
    from pathlib import Path

    from needle.fileio import write_text

    path = Path(tempfile.gettempdir()) / CRASH_TRACE_NAME
    write_text(path, traceback.format_exc())
    return str(path)


def config_error_lines(err: ConfigError, *, color: bool = False) -> list[str]:
    """One `error:` line per mistake in `err`, built from its parts; with `color`, the
    position is bold, as compilers show it."""
    lines = []
    for problem in err.problems:
        if problem.line is not None:
            column = f":{problem.column}" if problem.column is not None else ""
            position = f"{problem.source}:{problem.line}{column}"
        elif problem.column is not None:  # a `--set` value: one line, so only a column
            position = f"{problem.source}: column {problem.column} of the value"
        else:
            position = problem.source
        if color:
            position = typer.style(position, bold=True)
        key = f"{problem.key}: " if problem.key else ""
        lines.append(f"error: {position}: {key}{problem.message}")
    return lines


def _stderr_has_color() -> bool:
    return not os.environ.get("NO_COLOR") and sys.stderr.isatty()


class NeedleGroup(TyperGroup):
    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as err:
            err.show()
            sys.exit(err.exit_code)
        except UsageError as err:
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
            typer.echo(f"error: {err.format_message()}{hint}", err=True)
            sys.exit(err.exit_code)
        except ClickException as err:
            typer.echo(f"error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _CLICK_HANDLED:
            raise
        except Exception as err:
            # Imported here, not at the top: importing needle loads numpy, and
            # `needle --help` must start fast.
            from needle.errors import ConfigError, NeedleError

            if isinstance(err, ConfigError):
                lines = config_error_lines(err, color=_stderr_has_color())
                typer.echo("\n".join(lines), err=True)
                ctx.exit(err.exit_code)
            if isinstance(err, NeedleError):
                typer.echo(f"error: {err}", err=True)
                ctx.exit(err.exit_code)
            if isinstance(err, MemoryError):
                typer.echo(f"error: not enough memory{f' ({err})' if str(err) else ''}", err=True)
                ctx.exit(1)
            try:
                where = f"full trace saved to {save_crash_trace()}"
            except NeedleError as unsaved:
                where = f"{type(err).__name__}: {err}; the full trace could not be saved: {unsaved}"
            typer.echo(f"internal error (this is a bug in needle); {where}", err=True)
            ctx.exit(1)
