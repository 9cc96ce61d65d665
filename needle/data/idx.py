"""The idx file format MNIST ships in: read it (gzipped or not) and write it.

Header: two zero bytes, a type code, the number of dimensions d; then d big-endian uint32
sizes; then the data, big-endian, in C order. http://yann.lecun.com/exdb/mnist/
"""

from __future__ import annotations

import gzip as gzip_lib
import math
import struct
import zlib
from os import PathLike
from pathlib import Path

import numpy as np

from needle.errors import UsageError
from needle.fileio import write_bytes

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | PathLike[str]) -> np.ndarray:
    """Read an idx file, gzipped or not (told apart by the gzip magic bytes, not the name).

    Returns a native-endian array of the shape the header gives. Raises `UsageError` naming
    the file when it is missing, is not idx (bad magic number), or its size disagrees with
    its header (truncated, or trailing bytes).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"idx file '{path}' does not exist") from None
    except OSError as error:
        raise UsageError(f"cannot read idx file '{path}': {error.strerror}") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip_lib.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise UsageError(f"idx file '{path}' is not valid gzip data: {error}") from None
    if len(raw) < 4:
        raise UsageError(
            f"idx file '{path}' has {len(raw)} bytes, too few for the 4-byte magic number"
        )
    if raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
        codes = ", ".join(f"{code:02x}" for code in _IDX_DTYPES)
        raise UsageError(
            f"idx file '{path}' has magic number 0x{raw[:4].hex()}, which is not idx: the "
            f"first two bytes must be 00, the third a type code ({codes}), the fourth the "
            f"number of dimensions, as in 0x00000803 (MNIST images)"
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise UsageError(
            f"idx file '{path}' is truncated: its header declares {ndim} dimensions but the "
            f"file has only {len(raw)} bytes"
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected, actual = math.prod(shape) * dtype.itemsize, len(raw) - header_size
    if actual != expected:
        problem = "is truncated" if actual < expected else "has trailing bytes"
        raise UsageError(
            f"idx file '{path}' {problem}: its header declares shape {shape} of {dtype.name} "
            f"({expected} bytes of data) but it holds {actual} bytes"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # a writable, native-endian copy


def write_idx(path: str | PathLike[str], array: np.ndarray, *, gzip: bool = False) -> None:
    """Write `array` as an idx file (gzip-compressed if `gzip`), atomically. Its dtype must
    be one idx has: uint8, int8, int16, int32, float32 or float64."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in _IDX_DTYPES.items()}
    if array.dtype not in codes:
        raise UsageError(
            f"idx cannot store dtype {array.dtype}; use uint8, int8, int16, int32, float32 "
            f"or float64"
        )
    code = codes[array.dtype]
    dtype = _IDX_DTYPES[code]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=dtype).tobytes()
    write_bytes(path, gzip_lib.compress(payload) if gzip else payload)
