"""CIFAR-10 from its python batches (the cifar-10-batches-py folder of cifar-10-python.tar.gz).

Each batch is a pickle of a dict: b"data" a uint8 array (n, 3072), each row one image's 1024
red, then 1024 green, then 1024 blue values in row-major order; b"labels" n class numbers
0-9. The batches are read with `needle.data.safe_pickle`, which refuses anything but data.
https://www.cs.toronto.edu/~kriz/cifar.html
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from needle.data.loader import Dataset
from needle.data.safe_pickle import load_pickle
from needle.errors import UsageError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
IMAGE_SHAPE = (3, 32, 32)  # channels, height, width


class CIFAR10Dataset(Dataset):
    """CIFAR-10: `X` float32 in [0, 1] of shape (N, 3, 32, 32) (the bytes / 255), `y` int64
    labels (N,); the five training batches with `train`, else the test batch.

    `ds[i]` is (image (3, 32, 32), label); an index array or slice gives stacked images.
    Transforms see each image as (32, 32, 3), the (H, W, C) layout `RandomCrop` and
    `RandomFlipHorizontal` expect, and the result is put back to (3, 32, 32). `p` is kept for
    the course's signature; flipping is `RandomFlipHorizontal`'s job, given in `transforms`.
    """

    def __init__(
        self,
        base_folder: str | PathLike[str],
        train: bool,
        p: float = 0.5,
        transforms: Sequence[Callable[[np.ndarray], np.ndarray]] | None = None,
    ) -> None:
        super().__init__(transforms)
        folder = Path(base_folder)
        if not folder.is_dir():
            raise UsageError(
                f"CIFAR-10 folder '{folder}' not found; get it with: needle data download "
                f"cifar10 --to {folder.parent} (it unpacks into {folder.parent}/"
                f"cifar-10-batches-py)"
            )
        names = TRAIN_BATCHES if train else TEST_BATCHES
        batches = [_read_batch(folder / name) for name in names]
        images = np.concatenate([images for images, _ in batches])
        self.X = images.reshape((-1, *IMAGE_SHAPE)).astype(np.float32) / 255.0
        self.y = np.concatenate([labels for _, labels in batches])
        self.p = p

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: Any) -> tuple[np.ndarray, Any]:
        images, labels = self.X[index], self.y[index]
        if self.transforms:
            if images.ndim == len(IMAGE_SHAPE):
                images = self._transform(images)
            elif len(images):
                images = np.stack([self._transform(image) for image in images])
        return images, labels

    def _transform(self, image: np.ndarray) -> np.ndarray:
        return self.apply_transforms(image.transpose(1, 2, 0)).transpose(2, 0, 1)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch's images (n, 3072) uint8 and labels (n,) int64, checked against each other."""
    if not path.is_file():
        raise UsageError(
            f"CIFAR-10 batch '{path}' not found; the folder should hold "
            f"{', '.join(TRAIN_BATCHES + TEST_BATCHES)}"
        )
    batch = load_pickle(path)
    if not isinstance(batch, dict):
        raise UsageError(f"'{path}' holds a {type(batch).__name__}, not a CIFAR-10 batch (a dict)")
    images, labels = _field(batch, "data", path), _field(batch, "labels", path)
    size = int(np.prod(IMAGE_SHAPE))
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 2):
        raise UsageError(f"'{path}': 'data' must be a 2-d uint8 array of {size}-byte rows")
    if images.shape[1] != size:
        raise UsageError(
            f"'{path}': 'data' rows have {images.shape[1]} values; a 3×32×32 image has {size}"
        )
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(
            f"'{path}' has {labels.size} labels of type {labels.dtype} for {len(images)} "
            f"images; it needs one integer label per image"
        )
    return images, labels.astype(np.int64)


def _field(batch: dict, name: str, path: Path) -> Any:
    # Read with encoding="bytes" the keys are bytes; a batch re-pickled under Python 3 may use str.
    for key in (name.encode(), name):
        if key in batch:
            return batch[key]
    raise UsageError(f"'{path}' has no '{name}' entry; its keys are {sorted(map(str, batch))}")
