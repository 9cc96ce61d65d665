"""The `needle` command-line tool: typer commands over the needle library."""

# Equal to needle.__version__ (a test checks). Kept here too so that `needle --version`
# need not import the library, which loads numpy.
__version__ = "0.1.0"
