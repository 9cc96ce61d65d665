"""The one way needle writes a file, and the one way it opens an .npz archive.

Writing: to a temporary name in the same folder, then renamed. `os.replace` within one folder
is atomic, so a reader (or a resumed run) sees either the previous complete file or the new
complete file, never a torn one, even if the process is killed with SIGKILL half-way through
a write. The data is fsynced before the rename so that a crash of the machine cannot leave
the new name pointing at unwritten blocks. The temporary file is created the way `open` creates
a file, mode 0666 less the user's umask (not `tempfile.mkstemp`'s fixed 0600), so the file ends
up readable by whom the user's other files are: with umask 022 by everyone, with 077 by the
user alone.

Reading .npz: pickles are refused (`allow_pickle=False`), and a file that is not an archive
of arrays (a single .npy, a pickle, an HTML error page) is named for what it is.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from needle.errors import NeedleError, UsageError

# Temporary files start with this, so a folder listing shows what a killed process left behind.
TEMP_PREFIX = ".needle-tmp-"


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], *, text: bool = False) -> Iterator[IO]:
    """Open a temporary file next to `path` for writing; on a clean exit move it onto `path`.

    If the body raises, the temporary file is removed and `path` is untouched. A write the
    operating system refuses (a full disk, a read-only folder) raises NeedleError naming `path`.

    Example:
        >>> with atomic_writer(folder / "metrics.csv", text=True) as f:  # doctest: +SKIP
        ...     f.write("epoch,loss\\n")
    """
    path = Path(path)
    try:
        fd, temp = _create_temporary(path)
    except OSError as err:
        raise NeedleError(f"cannot write '{path}': {err.strerror}") from None
    try:
        mode = "w" if text else "wb"
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": ""} if text else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        if isinstance(err, OSError) and not isinstance(err, FileNotFoundError):
            raise NeedleError(f"cannot write '{path}': {err.strerror or err}") from None
        raise
    _fsync_folder(path.parent)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, empty file next to `path`, open for writing: (descriptor, its path)."""
    while True:
        temp = path.parent / f"{TEMP_PREFIX}{path.name}.{secrets.token_hex(4)}"
        try:
            # O_EXCL: never open a file someone else made. 0o666: the kernel takes off the
            # umask; reading the umask ourselves means setting it, a race with other threads.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically replace `path` with `text` (UTF-8)."""
    with atomic_writer(path, text=True) as f:
        f.write(text)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically replace `path` with `data`."""
    with atomic_writer(path) as f:
        f.write(data)


def _fsync_folder(folder: Path) -> None:
    # The rename itself lives in the folder's entry table; syncing the folder makes it durable.
    # Some platforms and file systems cannot open a folder for reading: durability is then
    # the file system's business, atomicity is already guaranteed by os.replace.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# An .npz is a zip archive: it starts with a file entry, or is an empty archive's end record.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"
_PICKLE_MAGIC = b"\x80"  # protocol 2 and later


def read_npz(path: str | os.PathLike[str], *, what: str = "") -> dict[str, np.ndarray]:
    """Every array of the .npz archive at `path`, loaded with pickled objects refused.

    Raises UsageError naming the file (after `what`, such as "checkpoint") when it is
    missing, is something other than an .npz archive, is truncated or damaged, or holds
    pickled objects, which could run code when loaded.
    """
    path = Path(path)
    name = f"{what} '{path}'" if what else f"'{path}'"
    try:
        with path.open("rb") as f:
            head = f.read(len(_NPY_MAGIC))
            if head.startswith(_NPY_MAGIC):
                raise UsageError(f"{name} is a single .npy array, not an .npz archive of arrays")
            if head.startswith(_PICKLE_MAGIC):
                raise UsageError(f"{name} is a Python pickle, which needle never loads")
            if not head.startswith(_ZIP_MAGIC):
                raise UsageError(f"{name} is not an .npz file (it does not start like a zip)")
            f.seek(0)
            with np.load(f, allow_pickle=False) as archive:
                arrays = {}
                for key in archive.files:
                    try:
                        arrays[key] = archive[key]
                    except ValueError as err:
                        if "allow_pickle" not in str(err):
                            raise
                        raise UsageError(
                            f"{name} holds pickled objects (array '{key}'), which needle never "
                            "loads"
                        ) from None
                return arrays
    except FileNotFoundError:
        raise UsageError(f"{name} not found") from None
    except IsADirectoryError:
        raise UsageError(f"{name} is a folder, not an .npz file") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as err:
        raise UsageError(f"{name} is truncated or damaged ({err})") from None
    except OSError as err:
        raise UsageError(f"cannot read {name}: {err.strerror or err}") from None
