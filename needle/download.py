"""Fetch the MNIST-format datasets: four idx files each, checked against pinned SHA-256 sums.

Each file is streamed to a temporary name next to its destination, hashed as it arrives, and
renamed into place only when its sum matches (`needle.fileio.atomic_writer`), so a half
download or a wrong file never takes the real name. Files already present with the right sum
are not fetched again. The mirror is configurable (`mirror=`, or the NEEDLE_DATA_MIRROR
environment variable); without a network, the error says which files to put where by hand.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from needle.errors import NeedleError, UsageError, unknown_choice
from needle.fileio import atomic_writer

MIRROR_ENV = "NEEDLE_DATA_MIRROR"

# Where each dataset's four files are published, gzipped.
MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}

# SHA-256 of each published .gz file.
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
        ),
        "train-labels-idx1-ubyte.gz": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
        ),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
        ),
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
        ),
    },
}

_CHUNK = 1 << 16


@dataclass(frozen=True)
class FileStatus:
    """One file of a download: fetched now, or already there with the right sum."""

    name: str
    path: Path
    status: str  # "downloaded" or "present"
    size: int
    sha256: str


@dataclass(frozen=True)
class DownloadResult:
    dataset: str
    folder: Path
    mirror: str
    files: list[FileStatus]


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def mirror_for(dataset: str, mirror: str | None = None) -> str:
    """The base URL files are fetched from: `mirror`, else $NEEDLE_DATA_MIRROR, else the
    dataset's usual mirror; always ending with '/'."""
    base = mirror or os.environ.get(MIRROR_ENV) or MIRRORS[dataset]
    scheme = urllib.parse.urlparse(base).scheme
    if scheme not in ("http", "https", "file"):
        raise UsageError(f"mirror '{base}' must be an http://, https:// or file:// URL")
    return base if base.endswith("/") else base + "/"


def download(
    dataset: str,
    to: str | Path,
    *,
    mirror: str | None = None,
    sums: dict[str, str] | None = None,
    timeout: float = 30.0,
    on_progress: Callable[[str, int, int | None], None] | None = None,
) -> DownloadResult:
    """Fetch `dataset`'s four files into the folder `to`.

    `sums` maps file names to SHA-256 hex (default: the pinned `SHA256[dataset]`).
    `on_progress(name, bytes_so_far, total_or_None)` is called as data arrives. Raises
    NeedleError when a file cannot be fetched or its sum is wrong; nothing partial is left
    under a real name.
    """
    if dataset not in SHA256:
        raise unknown_choice("dataset to download", dataset, SHA256)
    base = mirror_for(dataset, mirror)
    folder = Path(to)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NeedleError(f"cannot create folder '{folder}': {err.strerror}") from None
    files = []
    expected_sums = sums if sums is not None else SHA256[dataset]
    by_hand = _by_hand(dataset, folder, expected_sums)
    for name, expected in expected_sums.items():
        path = folder / name
        if path.is_file() and sha256_of(path) == expected:
            files.append(FileStatus(name, path, "present", path.stat().st_size, expected))
            continue
        size = _fetch(base + name, path, expected, timeout, on_progress, by_hand)
        files.append(FileStatus(name, path, "downloaded", size, expected))
    return DownloadResult(dataset, folder, base, files)


def _fetch(
    url: str,
    path: Path,
    expected: str,
    timeout: float,
    on_progress: Callable[[str, int, int | None], None] | None,
    by_hand: str,
) -> int:
    """Stream `url` into `path` through a temporary file; keep it only if the sum matches.
    Errors end with `by_hand`, how to install the files without this mirror."""
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_writer(path) as f:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            for chunk in _body(response, url, by_hand):
                f.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if on_progress:
                    on_progress(path.name, size, total)
            if digest.hexdigest() != expected:
                # Raised inside the writer: the temporary file is removed, `path` untouched.
                raise NeedleError(
                    f"{url} sent a file with SHA-256 {digest.hexdigest()}, expected {expected}; "
                    "it was not saved (an interrupted transfer, or a different file on the "
                    "mirror)"
                )
    except urllib.error.HTTPError as err:
        raise NeedleError(f"{url}: HTTP {err.code} {err.reason}. {by_hand}") from None
    except (urllib.error.URLError, OSError) as err:
        raise _unreachable(url, err, by_hand) from None
    return size


def _body(response: IO[bytes], url: str, by_hand: str) -> Iterator[bytes]:
    """The response's bytes, a chunk at a time. A connection that fails half-way (a timeout,
    a reset) is reported here: inside `atomic_writer` an OSError reads as a failed write."""
    try:
        while chunk := response.read(_CHUNK):
            yield chunk
    except OSError as err:
        raise _unreachable(url, err, by_hand) from None


def _unreachable(url: str, err: OSError, by_hand: str) -> NeedleError:
    reason = getattr(err, "reason", None) or err
    return NeedleError(f"cannot download {url} ({reason}). {by_hand}")


def _by_hand(dataset: str, folder: Path, sums: dict[str, str]) -> str:
    names = ", ".join(sums)
    return (
        f"To install {dataset} by hand, put these files, gzipped as published, in "
        f"'{folder}': {names} (SHA-256 sums are in needle/download.py); or fetch from "
        f"another copy with --mirror URL or ${MIRROR_ENV}."
    )
