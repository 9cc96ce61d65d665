"""`python -m needle_cli` runs the `needle` command."""

from needle_cli.app import main

main()
