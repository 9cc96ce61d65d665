"""The `needle` command-line tool: typer commands over the needle library."""
