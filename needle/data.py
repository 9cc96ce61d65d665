"""Datasets, the DataLoader, image transforms, and the idx file format MNIST ships in.

All randomness (shuffling, augmentation) goes through numpy's global RNG, one call at a time
in a fixed order, so `np.random.seed` reproduces a run exactly.
"""

from __future__ import annotations

import gzip as gzip_lib
import math
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from needle.autograd import Tensor
from needle.errors import UsageError
from needle.fileio import write_bytes

# -- the idx format -------------------------------------------------------------------------
# Header: two zero bytes, a type code, the number of dimensions d; then d big-endian uint32
# sizes; then the data, big-endian, in C order. http://yann.lecun.com/exdb/mnist/
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


# -- transforms -----------------------------------------------------------------------------


class Transform:
    """A callable on one image of shape (H, W, C)."""

    def __call__(self, img: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RandomFlipHorizontal(Transform):
    """Mirror the image left-right (the width axis) with probability `p`; one
    `np.random.rand()` per call."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img: np.ndarray) -> np.ndarray:
        flip = np.random.rand() < self.p
        return np.flip(img, axis=1) if flip else img


class RandomCrop(Transform):
    """Shift the image by up to `padding` pixels along height and width, filling with zeros:
    zero-pad by `padding`, then crop back to the input's size at a random offset. One
    `np.random.randint(-padding, padding + 1, size=2)` per call (height shift, width shift)."""

    def __init__(self, padding: int = 3) -> None:
        self.padding = padding

    def __call__(self, img: np.ndarray) -> np.ndarray:
        p = self.padding
        shift_h, shift_w = np.random.randint(low=-p, high=p + 1, size=2)
        height, width = img.shape[:2]
        padded = np.pad(img, ((p, p), (p, p)) + ((0, 0),) * (img.ndim - 2))
        top, left = p + shift_h, p + shift_w
        return padded[top : top + height, left : left + width]


# -- datasets -------------------------------------------------------------------------------


class Dataset:
    """A sized, indexable collection of samples; `transforms` (a list of callables) are
    applied in order by `apply_transforms`. Subclasses define `__len__` and `__getitem__`."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]] | None = None) -> None:
        self.transforms = transforms

    def __getitem__(self, index: Any) -> Any:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def apply_transforms(self, x: Any) -> Any:
        for transform in self.transforms or ():
            x = transform(x)
        return x


def _as_array(value: Any) -> np.ndarray:
    return value.numpy() if isinstance(value, Tensor) else np.asarray(value)


class NDArrayDataset(Dataset):
    """Samples `(a[i], b[i], ...)` from arrays of equal length."""

    def __init__(self, *arrays: Any) -> None:
        super().__init__()
        if not arrays:
            raise UsageError("NDArrayDataset needs at least one array")
        self.arrays = tuple(_as_array(a) for a in arrays)
        lengths = [len(a) for a in self.arrays]
        if len(set(lengths)) > 1:
            raise UsageError(f"NDArrayDataset arrays differ in length: {lengths}")

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index: Any) -> tuple[np.ndarray, ...]:
        return tuple(a[index] for a in self.arrays)


class MNISTDataset(Dataset):
    """MNIST (or any idx pair of images and labels): images float32 in [0, 1] of shape
    (N, rows·cols), labels uint8 of shape (N,).

    Indexable by an int, a slice or an index array. Transforms are applied lazily, per image,
    to a (rows, cols, 1) view, and the result is flattened back.
    """

    def __init__(
        self,
        image_filename: str | PathLike[str],
        label_filename: str | PathLike[str],
        transforms: Sequence[Callable[[np.ndarray], np.ndarray]] | None = None,
    ) -> None:
        super().__init__(transforms)
        images, labels = read_idx(image_filename), read_idx(label_filename)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise UsageError(
                f"'{image_filename}' holds {images.ndim}-d {images.dtype} data; images must be "
                f"3-d unsigned bytes (count, rows, cols)"
            )
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise UsageError(
                f"'{label_filename}' holds {labels.ndim}-d {labels.dtype} data; labels must be "
                f"1-d unsigned bytes"
            )
        if len(labels) != len(images):
            raise UsageError(
                f"'{label_filename}' has {len(labels)} labels but '{image_filename}' has "
                f"{len(images)} images"
            )
        count, rows, cols = images.shape
        self.image_shape = (rows, cols, 1)
        self.images = images.reshape(count, rows * cols).astype(np.float32) / 255.0
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: Any) -> tuple[np.ndarray, np.ndarray]:
        images, labels = self.images[index], self.labels[index]
        if self.transforms:
            if images.ndim == 1:
                images = self._transform(images)
            elif len(images):
                images = np.stack([self._transform(image) for image in images])
        return images, labels

    def _transform(self, image: np.ndarray) -> np.ndarray:
        return self.apply_transforms(image.reshape(self.image_shape)).reshape(-1)


# Datasets whose __getitem__ takes an index array and returns whole-batch arrays.
_BATCH_INDEXABLE = (NDArrayDataset, MNISTDataset)


class DataLoader:
    """Iterate over `dataset` in batches: each a tuple of Tensors, one per field, that do not
    require gradients.

    Batches are consecutive runs of `batch_size` samples (the last may be shorter). With
    `shuffle`, each iteration draws one `np.random.permutation(len(dataset))` when it starts
    and takes the batches from that order.
    """

    def __init__(self, dataset: Dataset, batch_size: int = 1, shuffle: bool = False) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer (got {batch_size!r})")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self) -> int:
        """The number of batches per iteration."""
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        n = len(self.dataset)
        # Drawn here, not at the first next(), so the permutation is taken when iteration starts.
        order = np.random.permutation(n) if self.shuffle else np.arange(n)
        return self._batches(order)

    def _batches(self, order: np.ndarray) -> Iterator[tuple[Tensor, ...]]:
        dataset = self.dataset
        # Without transforms, one fancy-index per field beats stacking samples one by one.
        whole = type(dataset) in _BATCH_INDEXABLE and not dataset.transforms
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            fields = dataset[index] if whole else self._stack(index)
            # Fancy indexing and np.stack copy, so each batch owns its arrays.
            yield tuple(Tensor.make_const(field) for field in fields)

    def _stack(self, index: np.ndarray) -> tuple[np.ndarray, ...]:
        samples = [self.dataset[int(i)] for i in index]
        samples = [s if isinstance(s, (tuple, list)) else (s,) for s in samples]
        return tuple(
            np.stack([_as_array(v) for v in field]) for field in zip(*samples, strict=True)
        )
