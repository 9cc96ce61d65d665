"""The one way needle writes a file: to a temporary name in the same folder, then renamed.

`os.replace` within one folder is atomic, so a reader (or a resumed run) sees either the
previous complete file or the new complete file, never a torn one, even if the process is
killed with SIGKILL half-way through a write. The data is fsynced before the rename so that
a crash of the machine cannot leave the new name pointing at unwritten blocks.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from needle.errors import NeedleError

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
        fd, temp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", dir=path.parent)
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
