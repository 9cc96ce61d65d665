"""CIFAR10Dataset on batches this test pickles in CIFAR's format (never downloaded): pixels and
labels against the bytes written, transforms against their definitions in (C, H, W) layout,
DataLoader batches, and the errors for missing or malformed batches."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import needle as ndl
from needle.data import CIFAR10Dataset, DataLoader, RandomCrop, RandomFlipHorizontal
from needle.errors import UsageError

# Batches of different sizes, so an off-by-one in the concatenation order shows.
TRAIN_SIZES = [3, 1, 4, 2, 5]
TEST_SIZE = 6


def write_batch(path, images: np.ndarray, labels: list[int]) -> None:
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"made by a test", b"labels": labels, b"data": images}, f)


@pytest.fixture
def cifar(tmp_path):
    """A cifar-10-batches-py folder; returns it with the raw (images, labels) of each split."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    raw = {"train": ([], []), "test": ([], [])}
    names = [(f"data_batch_{i + 1}", n, "train") for i, n in enumerate(TRAIN_SIZES)]
    for name, n, split in [*names, ("test_batch", TEST_SIZE, "test")]:
        images = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        write_batch(folder / name, images, labels)
        raw[split][0].append(images)
        raw[split][1].extend(labels)
    return folder, {k: (np.concatenate(v[0]), np.array(v[1])) for k, v in raw.items()}


@pytest.mark.parametrize("split", ["train", "test"])
def test_pixels_and_labels_are_the_bytes_written(cifar, split):
    folder, raw = cifar
    images, labels = raw[split]
    ds = CIFAR10Dataset(folder, train=split == "train")
    assert len(ds) == len(labels)
    assert ds.X.dtype == np.float32 and ds.X.shape == (len(labels), 3, 32, 32)
    # Row layout: 1024 red, 1024 green, 1024 blue, each 32 rows of 32.
    red = images[:, :1024].reshape(-1, 32, 32)
    blue = images[:, 2048:].reshape(-1, 32, 32)
    np.testing.assert_array_equal(ds.X[:, 0], red.astype(np.float32) / 255)
    np.testing.assert_array_equal(ds.X[:, 2], blue.astype(np.float32) / 255)
    np.testing.assert_array_equal(ds.y, labels)
    image, label = ds[len(ds) - 1]
    assert isinstance(image, np.ndarray) and image.shape == (3, 32, 32)
    assert label == labels[-1]


def test_flip_mirrors_the_width_axis(cifar):
    folder, _ = cifar
    plain = CIFAR10Dataset(folder, train=False)
    flipped = CIFAR10Dataset(folder, train=False, transforms=[RandomFlipHorizontal(p=1.0)])
    for i in range(len(plain)):
        np.testing.assert_array_equal(flipped[i][0], plain[i][0][:, :, ::-1])
        assert flipped[i][1] == plain[i][1]


def test_crop_shifts_height_and_width_with_zero_fill(cifar):
    folder, _ = cifar
    padding = 4
    plain = CIFAR10Dataset(folder, train=False)
    cropped = CIFAR10Dataset(folder, train=False, transforms=[RandomCrop(padding)])
    for i in range(len(plain)):
        np.random.seed(i)
        out, _ = cropped[i]
        np.random.seed(i)
        dh, dw = np.random.randint(-padding, padding + 1, size=2)
        image = plain[i][0]
        expected = np.zeros_like(image)
        for r in range(32):
            for c in range(32):
                if 0 <= r + dh < 32 and 0 <= c + dw < 32:
                    expected[:, r, c] = image[:, r + dh, c + dw]
        np.testing.assert_array_equal(out, expected)


def test_index_arrays_stack_samples(cifar):
    folder, _ = cifar
    ds = CIFAR10Dataset(folder, train=True, transforms=[RandomFlipHorizontal(p=1.0)])
    index = np.array([14, 0, 7])
    images, labels = ds[index]
    assert images.shape == (3, 3, 32, 32)
    for row, i in enumerate(index):
        np.testing.assert_array_equal(images[row], ds[int(i)][0])
        assert labels[row] == ds[int(i)][1]


def test_dataloader_yields_float32_image_batches(cifar):
    folder, raw = cifar
    ds = CIFAR10Dataset(folder, train=True)
    batches = list(DataLoader(ds, batch_size=4))
    assert [len(x.numpy()) for x, _ in batches] == [4, 4, 4, 3]
    x, y = batches[1]
    assert isinstance(x, ndl.Tensor) and x.dtype == np.float32 and x.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(x.numpy(), ds.X[4:8])
    np.testing.assert_array_equal(y.numpy(), raw["train"][1][4:8])


def test_missing_folder_and_batch_say_what_is_needed(tmp_path, cifar):
    missing = tmp_path / "nowhere" / "cifar-10-batches-py"
    with pytest.raises(UsageError) as caught:
        CIFAR10Dataset(missing, train=True)
    assert str(caught.value) == (
        f"CIFAR-10 folder '{missing}' not found; get it with: needle data download cifar10 "
        f"--to {missing.parent} (it unpacks into {missing.parent}/cifar-10-batches-py)"
    )
    folder, _ = cifar
    (folder / "data_batch_3").unlink()
    with pytest.raises(UsageError, match=r"batch '.*data_batch_3' not found; the folder should"):
        CIFAR10Dataset(folder, train=True)
    CIFAR10Dataset(folder, train=False)  # the test split does not need it


@pytest.mark.parametrize(
    "batch, message",
    [
        ({b"labels": [1]}, "has no 'data' entry"),
        ({b"data": np.zeros((1, 3072), np.uint8)}, "has no 'labels' entry"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "1 labels of type int64 for 2"),
        ({b"data": np.zeros((1, 1024), np.uint8), b"labels": [1]}, "rows have 1024 values"),
        ({b"data": np.zeros((1, 3072)), b"labels": [1]}, "must be a 2-d uint8 array"),
        ([1, 2, 3], "holds a list, not a CIFAR-10 batch"),
    ],
)
def test_malformed_batches_are_named(tmp_path, batch, message):
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(UsageError, match=message):
        CIFAR10Dataset(tmp_path, train=False)


class _Touch:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch '{self.path}'",))


def test_a_batch_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Touch(marker), b"labels": []}))
    with pytest.raises(UsageError, match=r"test_batch' is a pickle that names the global .*system"):
        CIFAR10Dataset(tmp_path, train=False)
    assert not marker.exists()
