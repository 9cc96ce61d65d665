"""Datasets (a base class, arrays in memory, MNIST's idx pair) and the DataLoader.

Shuffling goes through numpy's global RNG, one `np.random.permutation` per iteration, so
`np.random.seed` reproduces a run exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from os import PathLike
from typing import Any

import numpy as np

from needle.autograd import Device, Tensor
from needle.data.idx import read_idx
from needle.devices import check_device, default_device
from needle.errors import UsageError


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
    """Samples `(a[i], b[i], ...)` from arrays of equal length. `batch_transform`, if given,
    is applied to the first array's samples, a whole batch at a time: `ds[index]` with an
    index array or slice passes it the stacked samples (n, ...), `ds[i]` a stack of one."""

    def __init__(
        self, *arrays: Any, batch_transform: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> None:
        super().__init__()
        self.batch_transform = batch_transform
        if not arrays:
            raise UsageError("NDArrayDataset needs at least one array")
        self.arrays = tuple(_as_array(a) for a in arrays)
        lengths = [len(a) for a in self.arrays]
        if len(set(lengths)) > 1:
            raise UsageError(f"NDArrayDataset arrays differ in length: {lengths}")

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index: Any) -> tuple[np.ndarray, ...]:
        fields = tuple(a[index] for a in self.arrays)
        if self.batch_transform is None:
            return fields
        first = fields[0]
        if first.ndim == self.arrays[0].ndim:  # a batch
            first = self.batch_transform(first)
        else:
            first = self.batch_transform(first[None])[0]
        return (first, *fields[1:])


def read_idx_images(filename: str | PathLike[str]) -> np.ndarray:
    """The images of an idx file of unsigned bytes (MNIST's), as float32 in [0, 1] of shape
    (count, rows, cols): each byte divided by 255."""
    images = read_idx(filename)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise UsageError(
            f"'{filename}' holds {images.ndim}-d {images.dtype} data; images must be "
            f"3-d unsigned bytes (count, rows, cols)"
        )
    return images.astype(np.float32) / 255.0


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
        images, labels = read_idx_images(image_filename), read_idx(label_filename)
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
        self.images = images.reshape(count, rows * cols)
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
    """Iterate over `dataset` in batches: each a tuple of Tensors on `device` (default:
    `default_device()`), one per field, that do not require gradients.

    Batches are consecutive runs of `batch_size` samples (the last may be shorter). With
    `shuffle`, each iteration draws one `np.random.permutation(len(dataset))` when it starts
    and takes the batches from that order.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        *,
        device: Device | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer (got {batch_size!r})")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.device = check_device(device) or default_device()

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
            # Fancy indexing and np.stack copy, so each batch owns its arrays (and on
            # cpu_numpy(), device.array wraps them as they are).
            yield tuple(Tensor.make_const(self.device.array(field)) for field in fields)

    def _stack(self, index: np.ndarray) -> tuple[np.ndarray, ...]:
        samples = [self.dataset[int(i)] for i in index]
        samples = [s if isinstance(s, (tuple, list)) else (s,) for s in samples]
        return tuple(
            np.stack([_as_array(v) for v in field]) for field in zip(*samples, strict=True)
        )
