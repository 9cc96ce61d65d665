"""The data a config names: built-in generators and files, split into training and validation.

Generators (spirals, moons, circles, blobs, xor) make 2-D points from the config's seed with a
private `np.random.default_rng(seed)`, so the data does not depend on (or disturb) the global
RNG that initializes and shuffles the model. Files: an MNIST-format folder (its t10k pair is
the validation split), an `.npz` with arrays `X` and `y`, or a `.csv` with a header row and a
label column. Whatever the source, features are float32 of shape (N, features) and labels
int64 class numbers 0..classes-1.

Every problem with a file raises UsageError naming the file and, where there is one, the line.
`data.normalize` rescales the features with statistics of the training split
(`needle.train.normalize`); features read raw and far from unit scale get a warning.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from needle.data import MNISTDataset
from needle.errors import UsageError
from needle.fileio import read_npz
from needle.train.config import GENERATED, TrainConfig
from needle.train.normalize import UNSCALED_ABOVE, Normalization

# The four files of an MNIST-format folder, by role; each may also end in .gz.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "val_images": "t10k-images-idx3-ubyte",
    "val_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class Split:
    """Features `X` (N, features) float32 and labels `y` (N,) int64."""

    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Data:
    """A dataset ready to train on: what a model must take in and put out, and both splits."""

    name: str
    train: Split
    val: Split
    in_features: int
    num_classes: int
    source: str  # where it came from, for summaries: "spirals (seed 0)" or a path
    normalization: Normalization | None = None  # what scaled the features (data.normalize)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One sample's shape: (in_features,) for today's flat data."""
        return (self.in_features,)


def load_data(config: TrainConfig, *, normalization: Normalization | None = None) -> Data:
    """The training and validation data `config.data` describes, scaled as `data.normalize`
    says: with `normalization` (a run's saved statistics) when it is of that kind and fits
    the features, else with statistics of the training split.

    Example:
        >>> data = load_data(load_config("configs/quickstart.yaml"))  # doctest: +SKIP
        >>> data.in_features, data.num_classes
        (2, 3)
    """
    spec = config.data
    rng = np.random.default_rng(config.seed)
    if spec.dataset in GENERATED:
        X, y = GENERATORS[spec.dataset](spec.samples, spec.classes, spec.noise, rng)
        whole = Split(X.astype(np.float32), y.astype(np.int64))
        train, val = _split(whole, spec.val_fraction, rng)
        source = f"{spec.dataset} ({spec.samples} samples, seed {config.seed})"
    else:
        path = Path(spec.path).expanduser()
        if spec.dataset in ("mnist", "fashion_mnist"):
            train, val = _read_idx_folder(path, spec.dataset, config)
        else:
            whole = _read_file(path, spec.dataset, config, label_column=spec.label_column)
            if len(whole) < 2:  # generators are held to 2 per class by the config
                raise _error(
                    config,
                    "path",
                    f"'{path}' holds {len(whole)} sample; at least 2 are needed to hold some "
                    "out for validation",
                )
            train, val = _split(whole, spec.val_fraction, rng)
        source = str(path)
    num_classes = int(max(train.y.max(initial=0), val.y.max(initial=0))) + 1
    if spec.normalize != "none":
        fits = normalization is not None and normalization.shift.shape == train.X.shape[1:]
        if not (fits and normalization.kind == spec.normalize):
            normalization = Normalization.fit(spec.normalize, train.X)
        train = Split(normalization.apply(train.X), train.y)
        val = Split(normalization.apply(val.X), val.y)
    else:
        normalization = None
    return Data(spec.dataset, train, val, train.X.shape[1], num_classes, source, normalization)


def unscaled_warning(config: TrainConfig, data: Data) -> str | None:
    """A warning for file features used raw (`data.normalize: none`) though far from the scale
    of 1 that initializers assume, such as 0..255 pixels; None when they look fine."""
    if config.data.normalize != "none" or config.data.dataset in GENERATED:
        return None
    largest = float(np.abs(data.train.X).max(initial=0.0))
    if largest <= UNSCALED_ABOVE:
        return None
    return str(
        config.error(
            ("data", "normalize"),
            f"the features of '{config.data.path}' reach {largest:g}, far from the scale of 1 "
            "a network starts at; set data.normalize to minmax or standard",
        )
    )


def load_path(path: str | Path, *, label_column: str = "label") -> Split:
    """All of one data file for evaluation: an .npz, a .csv, or an MNIST-format folder (its
    t10k pair)."""
    path = Path(path)
    if path.is_dir():
        return _read_idx_pair(path, "val", "mnist")
    kind = {".npz": "npz", ".csv": "csv"}.get(path.suffix.lower())
    if not path.exists():
        raise UsageError(f"data file '{path}' not found")
    if kind is None:
        raise UsageError(
            f"cannot tell what '{path}' holds: use an .npz (arrays X, y), a .csv (header row, "
            "label column) or a folder of MNIST idx files"
        )
    return _read_file(path, kind, None, label_column=label_column)


def _split(whole: Split, val_fraction: float, rng: np.random.Generator) -> tuple[Split, Split]:
    """Shuffle, then hold out the last `val_fraction` (at least one sample each side, so
    `whole` holds at least 2)."""
    n = len(whole)
    order = rng.permutation(n)
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    train, val = order[: n - n_val], order[n - n_val :]
    return Split(whole.X[train], whole.y[train]), Split(whole.X[val], whole.y[val])


# -- generators ------------------------------------------------------------------------------


def _class_sizes(samples: int, classes: int) -> np.ndarray:
    """Balanced class sizes summing to `samples` (the first classes get the remainder)."""
    sizes = np.full(classes, samples // classes)
    sizes[: samples % classes] += 1
    return sizes


def _labels(samples: int, classes: int) -> np.ndarray:
    return np.repeat(np.arange(classes), _class_sizes(samples, classes))


Generated = tuple[np.ndarray, np.ndarray]


def spirals(samples: int, classes: int, noise: float, rng: np.random.Generator) -> Generated:
    """`classes` interleaved spiral arms of 1.5 turns: radius t ∈ [0, 1], angle
    2πc/classes + 3πt plus N(0, noise²) radians, point t·(sin, cos)."""
    y = _labels(samples, classes)
    t = np.concatenate([np.linspace(0.0, 1.0, m) for m in _class_sizes(samples, classes)])
    angle = 2 * np.pi * y / classes + 3 * np.pi * t + rng.normal(0.0, noise, samples)
    return np.stack([t * np.sin(angle), t * np.cos(angle)], axis=1), y


def moons(samples: int, classes: int, noise: float, rng: np.random.Generator) -> Generated:
    """Two interleaved half circles plus N(0, noise²) per coordinate."""
    y = _labels(samples, 2)
    angle = rng.uniform(0.0, np.pi, samples)
    upper = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    lower = np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    X = np.where(y[:, None] == 0, upper, lower)
    return X + rng.normal(0.0, noise, X.shape), y


def circles(samples: int, classes: int, noise: float, rng: np.random.Generator) -> Generated:
    """An outer circle of radius 1 (class 0) around an inner one of radius 0.5 (class 1), plus
    N(0, noise²) per coordinate."""
    y = _labels(samples, 2)
    angle = rng.uniform(0.0, 2 * np.pi, samples)
    radius = np.where(y == 0, 1.0, 0.5)
    X = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return X + rng.normal(0.0, noise, X.shape), y


def blobs(samples: int, classes: int, noise: float, rng: np.random.Generator) -> Generated:
    """Gaussian blobs of standard deviation `noise` around centres spaced evenly on a circle of
    radius 4."""
    y = _labels(samples, classes)
    angle = 2 * np.pi * y / classes
    centres = 4.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centres + rng.normal(0.0, noise, centres.shape), y


def xor(samples: int, classes: int, noise: float, rng: np.random.Generator) -> Generated:
    """Points uniform on [-1, 1]², class 1 where the coordinates' signs differ, then
    N(0, noise²) added per coordinate."""
    X = rng.uniform(-1.0, 1.0, (samples, 2))
    y = (X[:, 0] * X[:, 1] < 0).astype(np.int64)
    return X + rng.normal(0.0, noise, X.shape), y


GENERATORS = {"spirals": spirals, "moons": moons, "circles": circles, "blobs": blobs, "xor": xor}


# -- files -----------------------------------------------------------------------------------


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
    train = _read_idx_pair(folder, "train", dataset, config)
    val = _read_idx_pair(folder, "val", dataset, config)
    if train.X.shape[1] != val.X.shape[1]:
        raise UsageError(
            f"'{folder}': the train images have {train.X.shape[1]} pixels each but the t10k "
            f"images have {val.X.shape[1]}; both splits must come from one dataset"
        )
    return train, val


def _read_idx_pair(
    folder: Path, split: str, dataset: str, config: TrainConfig | None = None
) -> Split:
    """Images and labels of one split of an MNIST-format folder, via needle.data.MNISTDataset
    (which checks magic numbers, sizes and that the counts agree)."""
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
    return Split(images.images, images.labels.astype(np.int64))


def _read_file(
    path: Path, kind: str, config: TrainConfig | None, *, label_column: str | None
) -> Split:
    if path.is_dir():
        raise _error(
            config, "path", f"'{path}' is a folder; dataset '{kind}' reads one .{kind} file"
        )
    if not path.exists():
        raise _missing(path, "file", config)
    if kind == "npz":
        return _read_npz(path)
    return _read_csv(path, label_column or "label", config)


def _read_npz(path: Path) -> Split:
    """Arrays `X` (N, ...) and `y` (N,) from an .npz, with pickled objects refused."""
    arrays = read_npz(path)
    missing = [name for name in ("X", "y") if name not in arrays]
    if missing:
        raise UsageError(
            f"'{path}' has no array {' or '.join(repr(m) for m in missing)} "
            f"(it holds: {', '.join(arrays) or 'nothing'}); save the data with "
            "np.savez(path, X=features, y=labels)"
        )
    X, y = arrays["X"], arrays["y"]
    if X.dtype.kind not in "biuf":
        raise UsageError(f"'{path}': X must hold numbers (got dtype {X.dtype})")
    if X.ndim < 2:
        raise UsageError(f"'{path}': X must be (samples, features) (got shape {X.shape})")
    if y.ndim != 1:
        raise UsageError(f"'{path}': y must be one label per sample (got shape {y.shape})")
    if len(X) != len(y):
        raise UsageError(f"'{path}': X has {len(X)} samples but y has {len(y)} labels")
    if len(X) == 0:
        raise UsageError(f"'{path}' holds no samples (X has shape {X.shape})")
    if math.prod(X.shape[1:]) == 0:
        raise UsageError(f"'{path}': X has no features (got shape {X.shape})")
    X = X.reshape(len(X), -1).astype(np.float32)
    bad = np.argwhere(~np.isfinite(X))
    if len(bad):
        row, col = bad[0]
        raise UsageError(
            f"'{path}': X has {len(bad)} values that are NaN or infinite, the first at "
            f"sample {row}, feature {col} (got {X[row, col].item()})"
        )
    return Split(X, _class_numbers(y, lambda i: f"'{path}': y[{i}]"))


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


def _read_csv(path: Path, label_column: str, config: TrainConfig | None) -> Split:
    """A header row, then one sample per row; every cell a number; `label_column` the class."""
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
            if label_column not in header:
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
            label_at = header.index(label_column)
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
    features = np.delete(table, label_at, axis=1).astype(np.float32)
    if features.shape[1] == 0:
        raise UsageError(f"'{path}' has only the label column; there are no features")
    labels = _class_numbers(table[:, label_at], lambda i: f"{path}: row {i + 1}, '{label_column}'")
    return Split(features, labels)


def _number(cell: str, at: str, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise UsageError(f"{at}: column '{column}': {cell.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{at}: column '{column}': {cell.strip()} is not a finite number")
    return value
