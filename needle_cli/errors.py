"""Turn exceptions into one line on stderr and an exit code; never a traceback for a user error.

`NeedleGroup` is the click group behind the `needle` app, so the same handling applies to
the console script and to `typer.testing.CliRunner` in the tests.
"""

from __future__ import annotations

import tempfile
import traceback
from pathlib import Path

import click
import typer
from typer.core import TyperGroup

CRASH_TRACE = Path(tempfile.gettempdir()) / "needle-crash.trace.txt"

# Exits, aborts and click's own usage errors go on to click's handling. Newer typer runs on
# a copy of click whose exceptions are not click's: `typer.TyperException` is their base.
_CLICK_HANDLED = (
    click.exceptions.Exit,
    click.ClickException,
    click.Abort,
    typer.Exit,
    typer.Abort,
    *((typer.TyperException,) if hasattr(typer, "TyperException") else ()),
    KeyboardInterrupt,
)


class NeedleGroup(TyperGroup):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except _CLICK_HANDLED:
            raise
        except Exception as err:
            # Imported here, not at the top: importing needle loads numpy, and
            # `needle --help` must start fast.
            from needle.errors import NeedleError

            if isinstance(err, NeedleError):
                click.echo(f"error: {err}", err=True)
                ctx.exit(err.exit_code)
            CRASH_TRACE.write_text(traceback.format_exc())
            click.echo(
                f"internal error (this is a bug in needle); full trace saved to {CRASH_TRACE}",
                err=True,
            )
            ctx.exit(1)
