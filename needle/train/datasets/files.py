"""The file datasets: an MNIST-format folder (mnist, fashion_mnist; its t10k pair is the
validation split), a cifar-10-batches-py folder (cifar10; its test batch validates), an `.npz`
with arrays `X` and `y`, a `.csv` with a header row and a label column; each registered at the
end of this module.

Whatever the file, samples are float32 and labels int64 class numbers 0..classes-1. Samples
keep their shape: images are (channels, height, width) — (1, 28, 28) for MNIST, (3, 32, 32)
for CIFAR-10, an npz's (N, H, W) as (1, H, W) grey images — and a csv's rows are flat
(features,). Every problem with a file raises UsageError naming the file and, where
there is one, the line; with a config, it points at the `data.*` key that named the file.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from needle.data import CIFAR10Dataset, MNISTDataset
from needle.data.cifar import TEST_BATCHES, TRAIN_BATCHES
from needle.errors import UsageError
from needle.fileio import read_npz
from needle.train.datasets.registry import (
    FILE,
    REQUIRED,
    DatasetType,
    Loader,
    Reader,
    register,
)
from needle.train.datasets.split import Split, hold_out

if TYPE_CHECKING:
    from needle.train.config import TrainConfig

# The four files of an MNIST-format folder, by role; each may also end in .gz.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "val_images": "t10k-images-idx3-ubyte",
    "val_labels": "t10k-labels-idx1-ubyte",
}

VAL_FRACTION = 0.2  # the share a one-file dataset holds out


def _error(config: TrainConfig | None, key: str, message: str) -> UsageError:
    """`message`, pointing at `data.<key>` in the config file when there is one."""
    return config.error(("data", key), message) if config else UsageError(message)


def _missing(path: Path, what: str, config: TrainConfig | None, hint: str = "") -> UsageError:
    return _error(config, "path", f"{what} '{path}' not found{hint}")


def _download_hint(dataset: str, folder: Path) -> str:
    return f"; get the files with: needle data download {dataset} --to {folder}"


def _read_idx_folder(folder: Path, dataset: str, config: TrainConfig) -> tuple[Split, Split]:
    if not folder.is_dir():
        raise _missing(folder, "folder", config, _download_hint(dataset, folder))
    train = read_idx_pair(folder, "train", dataset, config)
    val = read_idx_pair(folder, "val", dataset, config)
    if train.sample_shape != val.sample_shape:
        raise UsageError(
            f"'{folder}': the train images have {_pixels(train)} pixels each but the t10k "
            f"images have {_pixels(val)}; both splits must come from one dataset"
        )
    return train, val


def _pixels(split: Split) -> int:
    return math.prod(split.sample_shape)


def read_idx_pair(
    folder: Path, split: str, dataset: str, config: TrainConfig | None = None
) -> Split:
    """Images (N, 1, rows, cols) and labels of one split of an MNIST-format folder, via
    needle.data.MNISTDataset (which checks magic numbers, sizes and that the counts agree)."""
    paths = []
    for role in (f"{split}_images", f"{split}_labels"):
        stem = IDX_FILES[role]
        found = [folder / name for name in (stem, stem + ".gz") if (folder / name).is_file()]
        if not found:
            hint = _download_hint(dataset, folder)
            raise _missing(folder / (stem + "[.gz]"), "file", config, hint)
        paths.append(found[0])
    images = MNISTDataset(paths[0], paths[1])
    if len(images) == 0:
        raise UsageError(f"'{paths[0]}' holds no images")
    if images.images.shape[1] == 0:
        rows, cols, _ = images.image_shape
        raise UsageError(
            f"'{paths[0]}' holds images of {rows}×{cols} pixels; an image needs at least one"
        )
    rows, cols, channels = images.image_shape
    X = images.images.reshape(len(images), channels, rows, cols)
    return Split(X, images.labels.astype(np.int64))


def read_cifar_split(folder: Path, train: bool, config: TrainConfig | None = None) -> Split:
    """The five training batches (`train`) or the test batch of a cifar-10-batches-py folder,
    read by needle.data.CIFAR10Dataset (through the safe unpickler): (N, 3, 32, 32) in [0, 1]."""
    if not folder.is_dir():
        hint = (
            f"; get it with: needle data download cifar10 --to {folder.parent} (it unpacks "
            f"into {folder.parent / 'cifar-10-batches-py'})"
        )
        raise _missing(folder, "folder", config, hint)
    for name in TRAIN_BATCHES if train else TEST_BATCHES:
        if not (folder / name).is_file():
            listed = ", ".join(TRAIN_BATCHES + TEST_BATCHES)
            raise _missing(folder / name, "file", config, f"; the folder should hold {listed}")
    images = CIFAR10Dataset(folder, train=train)
    return Split(images.X, images.y)


def is_cifar_folder(folder: Path) -> bool:
    """Whether `folder` looks like a cifar-10-batches-py folder (it has a test batch)."""
    return (folder / TEST_BATCHES[0]).is_file()


def _one_file(name: str, read: Reader) -> Reader:
    """`read`, after checking that `path` is a file (dataset `name`'s)."""

    def checked(path: Path, config: TrainConfig | None, label_column: str) -> Split:
        if path.is_dir():
            raise _error(
                config, "path", f"'{path}' is a folder; dataset '{name}' reads one .{name} file"
            )
        if not path.exists():
            raise _missing(path, "file", config)
        return read(path, config, label_column)

    return checked


def _read_npz(path: Path, config: TrainConfig | None = None, label_column: str = "") -> Split:
    """Arrays `X` and `y` (N,) from an .npz, with pickled objects refused. X keeps its
    shape: (N, features), (N, C, H, W) images, or (N, H, W) grey images as (N, 1, H, W)."""
    X, y = read_npz_samples(path)
    assert y is not None  # read_npz_samples requires it
    return Split(X, y)


def read_npz_samples(path: Path, *, labels: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """`X` as `_read_npz` reads it, and its labels `y`: required with `labels`, else read
    when the file has them (None when it does not)."""
    arrays = read_npz(path)
    required = ("X", "y") if labels else ("X",)
    missing = [name for name in required if name not in arrays]
    if missing:
        raise UsageError(
            f"'{path}' has no array {' or '.join(repr(m) for m in missing)} "
            f"(it holds: {', '.join(arrays) or 'nothing'}); save the data with "
            + ("np.savez(path, X=features, y=labels)" if labels else "np.savez(path, X=features)")
        )
    X, y = arrays["X"], arrays.get("y")
    if X.dtype.kind not in "biuf":
        raise UsageError(f"'{path}': X must hold numbers (got dtype {X.dtype})")
    if X.ndim < 2:
        raise UsageError(f"'{path}': X must be (samples, features) (got shape {X.shape})")
    if y is not None and y.ndim != 1:
        raise UsageError(f"'{path}': y must be one label per sample (got shape {y.shape})")
    if y is not None and len(X) != len(y):
        raise UsageError(f"'{path}': X has {len(X)} samples but y has {len(y)} labels")
    if len(X) == 0:
        raise UsageError(f"'{path}' holds no samples (X has shape {X.shape})")
    if math.prod(X.shape[1:]) == 0:
        raise UsageError(f"'{path}': X has no features (got shape {X.shape})")
    X = X.astype(np.float32)
    bad = np.argwhere(~np.isfinite(X))
    if len(bad):
        row, *at = bad[0]
        where = f"feature {at[0]}" if len(at) == 1 else f"position {tuple(int(i) for i in at)}"
        raise UsageError(
            f"'{path}': X has {len(bad)} values that are NaN or infinite, the first at "
            f"sample {row}, {where} (got {X[(row, *at)].item()})"
        )
    if X.ndim == 3:  # grey images: a channel axis, as MNIST's (1, 28, 28)
        X = X[:, None]
    if y is None:
        return X, None
    return X, _class_numbers(y, lambda i: f"'{path}': y[{i}]")


def _class_numbers(values: np.ndarray, where) -> np.ndarray:
    """Labels as int64, each a non-negative whole number that int64 can hold."""
    if values.dtype.kind not in "biuf":
        raise UsageError(f"{where(0)}: labels must be numbers (got dtype {values.dtype})")
    as_float = values.astype(np.float64)
    whole = np.isfinite(as_float) & (as_float == np.round(as_float))
    bad = np.flatnonzero(~whole | (as_float < 0) | (as_float >= 2.0**63))
    if len(bad):
        i = int(bad[0])
        raise UsageError(
            f"{where(i)}: a label must be a class number 0, 1, 2, ... (got {values[i].item()!r})"
        )
    return as_float.astype(np.int64)


def _read_csv(path: Path, config: TrainConfig | None, label_column: str) -> Split:
    """A header row, then one sample per row; every cell a number; `label_column` the class."""
    features, labels = read_csv_samples(path, config, label_column)
    assert labels is not None  # read_csv_samples requires the column
    return Split(features, labels)


def read_csv_samples(
    path: Path, config: TrainConfig | None, label_column: str, *, labels: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """The features and labels of a csv as `_read_csv` reads them; without `labels`, a file
    lacking `label_column` is all features (its labels None)."""
    try:
        # utf-8-sig: spreadsheets often start a CSV with a byte-order mark, which would
        # otherwise become part of the first column's name.
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise UsageError(
                    f"'{path}' is empty; expected a header row, then one row per sample"
                )
            header = [name.strip() for name in header]
            if labels and label_column not in header:
                # Without a config, the file came from `needle evaluate --data`.
                fix = (
                    "set data.label_column"
                    if config
                    else "give the label column's header with --label-column"
                )
                raise _error(
                    config,
                    "label_column",
                    f"'{path}' has no column '{label_column}' (columns: {', '.join(header)}); "
                    + fix,
                )
            label_at = header.index(label_column) if label_column in header else None
            rows: list[list[float]] = []
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue  # blank lines, often one at the end
                at = f"{path}:{reader.line_num}"
                if len(row) != len(header):
                    raise UsageError(
                        f"{at}: the row has {len(row)} cells but the header has {len(header)}"
                    )
                rows.append(
                    [_number(cell, at, name) for cell, name in zip(row, header, strict=True)]
                )
    except UnicodeDecodeError:
        raise UsageError(f"'{path}' is not UTF-8 text") from None
    except csv.Error as err:
        raise UsageError(f"'{path}' is not a readable csv file ({err})") from None
    if not rows:
        raise UsageError(f"'{path}' has a header but no rows")
    table = np.array(rows, dtype=np.float64)
    if label_at is None:
        return table.astype(np.float32), None
    features = np.delete(table, label_at, axis=1).astype(np.float32)
    if features.shape[1] == 0:
        raise UsageError(f"'{path}' has only the label column; there are no features")
    column = table[:, label_at]
    return features, _class_numbers(column, lambda i: f"{path}: row {i + 1}, '{label_column}'")


def _number(cell: str, at: str, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise UsageError(f"{at}: column '{column}': {cell.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{at}: column '{column}': {cell.strip()} is not a finite number")
    return value


# -- registrations ---------------------------------------------------------------------------


def _load_idx_folder(name: str) -> Loader:
    def load(config: TrainConfig, rng: np.random.Generator) -> tuple[Split, Split]:
        return _read_idx_folder(Path(config.data.path).expanduser(), name, config)

    return load


def _load_cifar(config: TrainConfig, rng: np.random.Generator) -> tuple[Split, Split]:
    folder = Path(config.data.path).expanduser()
    return read_cifar_split(folder, True, config), read_cifar_split(folder, False, config)


def _load_one_file(read: Reader) -> Loader:
    def load(config: TrainConfig, rng: np.random.Generator) -> tuple[Split, Split]:
        spec = config.data
        path = Path(spec.path).expanduser()
        whole = read(path, config, spec.label_column or "")
        if len(whole) < 2:  # generators are held to 2 per class by the config
            raise _error(
                config,
                "path",
                f"'{path}' holds {len(whole)} sample; at least 2 are needed to hold some "
                "out for validation",
            )
        return hold_out(whole, spec.val_fraction, rng)

    return load


for _name, _summary in (
    ("mnist", "Handwritten digits: 28×28 grey images, shape (1, 28, 28) in [0, 1], 10 classes."),
    ("fashion_mnist", "Zalando's clothing images in MNIST's format: (1, 28, 28), 10 classes."),
):
    register(
        DatasetType(
            _name,
            FILE,
            _summary + " `path` is a folder of the four idx files; the t10k pair validates.",
            settings={"path": REQUIRED},
            load=_load_idx_folder(_name),
            unused={"val_fraction": f"'{_name}' has its own validation split (the t10k files)"},
        )
    )

register(
    DatasetType(
        "cifar10",
        FILE,
        "Colour photos in 10 classes: shape (3, 32, 32) in [0, 1]. `path` is the "
        "cifar-10-batches-py folder; its test batch validates.",
        settings={"path": REQUIRED},
        load=_load_cifar,
        unused={"val_fraction": "'cifar10' has its own validation split (the test batch)"},
    )
)

_npz = _one_file("npz", _read_npz)
register(
    DatasetType(
        "npz",
        FILE,
        "Arrays `X` (samples × features, or images: (N, C, H, W), or (N, H, W) as one "
        "channel) and `y` (a class number per sample), as `np.savez(path, X=X, y=y)` "
        "writes them; never unpickled.",
        settings={"path": REQUIRED, "val_fraction": VAL_FRACTION},
        load=_load_one_file(_npz),
        suffix=".npz",
        holds="an .npz (arrays X, y)",
        read=_npz,
    )
)
_csv = _one_file("csv", _read_csv)
register(
    DatasetType(
        "csv",
        FILE,
        "A header row, then one sample per row, every cell a number; `label_column` holds "
        "the class numbers, every other column is a feature.",
        settings={"path": REQUIRED, "label_column": "label", "val_fraction": VAL_FRACTION},
        load=_load_one_file(_csv),
        suffix=".csv",
        holds="a .csv (header row, label column)",
        read=_csv,
        flat=True,
    )
)
