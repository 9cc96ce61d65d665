"""`needle data download`: fetch a dataset's published files, checked against pinned SHA-256
sums (`needle.download`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from needle_cli.render import JsonLine, console, print_json

DATA_EPILOG = """Examples:

\b
  needle data download mnist
  needle data download fashion_mnist --to data/fashion_mnist
  needle data download mnist --mirror https://ossci-datasets.s3.amazonaws.com/mnist/
"""


def register(app: typer.Typer) -> None:
    """Add the `needle data` group, with `download`, to the app."""
    data_app = typer.Typer(help="Get datasets.", no_args_is_help=True, epilog=DATA_EPILOG)
    data_app.command("download", epilog=DATA_EPILOG)(download)
    app.add_typer(data_app, name="data")


def download(
    dataset: Annotated[
        str,
        typer.Argument(
            metavar="DATASET",
            help="A name from needle.download's table, e.g. mnist, cifar10 or ptb.",
        ),
    ],
    to: Annotated[
        Path | None,
        typer.Option("--to", metavar="DIR", help="Destination folder [default: data/DATASET]."),
    ] = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror",
            metavar="URL",
            help="Base URL holding the dataset's files [default: $NEEDLE_DATA_MIRROR, else "
            "the dataset's usual mirror].",
        ),
    ] = None,
    as_json: JsonLine = False,
) -> None:
    """Download a dataset's published files, checking pinned SHA-256 sums (archives are
    unpacked next to them)."""
    from needle.download import download as fetch

    folder = to or Path("data") / dataset
    out = console()
    live = out.is_terminal and not as_json

    def progress(name: str, done: int, total: int | None) -> None:
        # Live byte counts in a terminal only; logs get the one line per file below.
        size = f"{done / 1e6:.1f}" + (f"/{total / 1e6:.1f}" if total else "")
        out.print(f"{name}: {size} MB", end="\r")

    result = fetch(dataset, folder, mirror=mirror, on_progress=progress if live else None)
    if as_json:
        print_json(
            {
                "dataset": result.dataset,
                "folder": str(result.folder),
                "mirror": result.mirror,
                "files": [
                    {"name": f.name, "status": f.status, "bytes": f.size, "sha256": f.sha256}
                    for f in result.files
                ],
                "unpacked": [str(path) for path in result.unpacked],
            },
            one_line=True,
        )
        return
    for f in result.files:
        out.print(f"{f.status:>10}  {f.path}  ({f.size:,} bytes, sha256 ok)")
    if result.unpacked:
        out.print(f"{'unpacked':>10}  {len(result.unpacked)} files into {result.folder}")
    ready = f"{dataset} is ready in {result.folder}"
    out.print(f"{ready}; {result.use_with}" if result.use_with else ready)
