"""`needle schema`: the JSON Schema of config files, for editors (`needle.train.schema`)."""

from __future__ import annotations

import typer

SCHEMA_EPILOG = """An editor running yaml-language-server checks a config against the saved
schema when the config's first line is:

\b
  # yaml-language-server: $schema=needle.schema.json

Examples:

\b
  needle schema > needle.schema.json
"""


def register(app: typer.Typer) -> None:
    """Add `needle schema` to the app."""
    app.command("schema", epilog=SCHEMA_EPILOG)(schema)


def schema() -> None:
    """Print the JSON Schema of config files, for editors."""
    from needle.train.schema import json_schema_text

    typer.echo(json_schema_text())
