"""Load a pickle that may hold only plain data and numpy arrays, never code.

A pickle is a program: its GLOBAL opcodes name any importable callable and its REDUCE opcodes
call it, so `pickle.load` on a file from the internet runs whatever the file says. CIFAR-10's
python batches are dicts of bytes keys to lists, bytes, str, ints and numpy arrays; of those
only the arrays need a global (numpy's reconstruction function, `ndarray` and `dtype`).
`SafeUnpickler.find_class` hands out exactly those and refuses every other name before
anything is imported or called, so a hostile file stops at its first foreign global.

Python 3 writes bytes at protocols 0-2 as calls to `_codecs.encode` or `bytes`: such files
are refused too. Python 2's pickles (CIFAR's) and Python 3's at protocol 3 or later (the
default) need neither.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import IO, Any

import numpy as np

from needle.errors import UsageError

try:  # numpy 2 renamed numpy.core to numpy._core; pickles name whichever wrote them
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


# (module, name) -> the object it stands for. Resolved here rather than imported on demand, so
# an old pickle's `numpy.core...` name does not touch numpy 2's deprecated shim.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # How ndarray pickles itself at protocols 2-4 (and how Python 2 wrote CIFAR's batches)...
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    # ... and at protocol 5: a buffer of raw bytes reinterpreted with a dtype and a shape.
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `ALLOWED_GLOBALS`; any other global raises UsageError
    naming `source` (the file, for the message) and the refused name."""

    def __init__(self, file: IO[bytes], *, source: str, encoding: str = "bytes") -> None:
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UsageError(
                f"'{self.source}' is a pickle that names the global {module}.{name}, which "
                f"needle refuses to load (a pickle calls what it names, so it could run code); "
                f"allowed: numpy arrays and plain data (dicts, lists, bytes, str, numbers)"
            )
        return allowed


def load_pickle(path: str | PathLike[str], *, encoding: str = "bytes") -> Any:
    """The object pickled in the file at `path`, built with `SafeUnpickler`.

    `encoding="bytes"` reads Python 2 `str` values (as in CIFAR-10's batches) as bytes, the
    course's reading. Raises UsageError naming the file when it is missing, names a global
    outside `ALLOWED_GLOBALS`, or is not a complete pickle.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            return SafeUnpickler(f, source=str(path), encoding=encoding).load()
    except FileNotFoundError:
        raise UsageError(f"'{path}' does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"'{path}' is a folder, not a pickle file") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError) as err:
        # TypeError/ValueError: an allowed function given arguments it rejects; Key/IndexError:
        # a damaged memo or stack.
        raise UsageError(f"'{path}' is not a readable pickle ({err})") from None
    except OSError as err:
        raise UsageError(f"cannot read '{path}': {err.strerror or err}") from None
