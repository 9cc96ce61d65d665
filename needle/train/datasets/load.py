"""Loading the data a config names (`load_data`), or any one data file (`load_path`, for
`needle evaluate --data`), through the registry; then `data.normalize`. `load_samples`
reads one file whose labels may be missing (`needle predict --data`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from needle.data import read_idx_images
from needle.errors import UsageError
from needle.train.datasets.files import (
    is_cifar_folder,
    read_cifar_split,
    read_csv_samples,
    read_idx_pair,
    read_npz_samples,
)
from needle.train.datasets.registry import DATASET_TYPES, GENERATOR
from needle.train.datasets.split import Data, Split, TokenStream
from needle.train.normalize import UNSCALED_ABOVE, Normalization

if TYPE_CHECKING:
    from needle.train.config import TrainConfig


def load_data(config: TrainConfig, *, normalization: Normalization | None = None) -> Data:
    """The training and validation data `config.data` describes, scaled as `data.normalize`
    says: with `normalization` (a run's saved statistics) when it is of that kind and fits
    the features, else with statistics of the training split.

    Example:
        >>> data = load_data(load_config("configs/quickstart.yaml"))  # doctest: +SKIP
        >>> data.sample_shape, data.num_classes
        ((2,), 3)
    """
    spec = config.data
    dataset = DATASET_TYPES[spec.dataset]
    train, val = dataset.load(config, np.random.default_rng(config.seed))
    if dataset.kind == GENERATOR:
        unit = "tokens" if dataset.text else "samples"  # counting makes a token stream
        source = f"{spec.dataset} ({spec.samples} {unit}, seed {config.seed})"
    else:
        source = str(Path(spec.path).expanduser())
    num_classes = int(max(train.y.max(initial=0), val.y.max(initial=0))) + 1
    if dataset.text:  # token streams: windows of bptt, no normalization (DataConfig refuses)
        shape = (spec.bptt,)
        words = train.words[:num_classes] if isinstance(train, TokenStream) else ()
        return Data(spec.dataset, train, val, shape, num_classes, source, None, shape, words)
    if spec.normalize != "none":
        features = math.prod(train.sample_shape)
        fits = normalization is not None and normalization.shift.shape == (features,)
        if not (fits and normalization.kind == spec.normalize):
            normalization = Normalization.fit(spec.normalize, train.X)
        train = Split(normalization.apply(train.X), train.y)
        val = Split(normalization.apply(val.X), val.y)
    else:
        normalization = None
    return Data(spec.dataset, train, val, train.sample_shape, num_classes, source, normalization)


def unscaled_warning(config: TrainConfig, data: Data) -> str | None:
    """A warning for file features used raw (`data.normalize: none`) though far from the scale
    of 1 that initializers assume, such as 0..255 pixels; None when they look fine."""
    dataset = DATASET_TYPES[config.data.dataset]
    if config.data.normalize != "none" or dataset.kind == GENERATOR or dataset.text:
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
    """All of one data file for evaluation: a file of a registered one-file format (.npz,
    .csv), a cifar-10-batches-py folder (its test batch) or an MNIST-format folder (its t10k
    pair)."""
    path = Path(path)
    if path.is_dir():
        if is_cifar_folder(path):
            return read_cifar_split(path, train=False)
        return read_idx_pair(path, "val", "mnist")
    formats = {d.suffix: d for d in DATASET_TYPES.values() if d.read is not None}
    dataset = formats.get(path.suffix.lower())
    if not path.exists():
        raise UsageError(f"data file '{path}' not found")
    if dataset is None:
        listed = [d.holds for d in formats.values()]
        listed += ["a cifar-10-batches-py folder", "a folder of MNIST idx files"]
        raise UsageError(
            f"cannot tell what '{path}' holds: use {', '.join(listed[:-1])} or {listed[-1]}"
        )
    return dataset.read(path, None, label_column)


def load_samples(
    path: str | Path, *, label_column: str = "label"
) -> tuple[np.ndarray, np.ndarray | None]:
    """The samples (N, *sample_shape) of one data file, and its labels when it has them: a
    .csv (without a `label_column` column every column is a feature), an .npz (its `y`
    optional), an idx file of images such as MNIST's t10k-images-idx3-ubyte[.gz] (as
    (N, 1, rows, cols) in [0, 1], as an MNIST folder's), or a folder as `load_path` reads it.
    """
    path = Path(path)
    if path.is_dir():
        split = load_path(path)
        return split.X, split.y
    if not path.exists():
        raise UsageError(f"data file '{path}' not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv_samples(path, None, label_column, labels=False)
    if suffix == ".npz":
        return read_npz_samples(path, labels=False)
    with path.open("rb") as f:
        head = f.read(2)
    if head in (b"\0\0", b"\x1f\x8b"):  # idx's zero bytes, or gzip's magic
        return read_idx_images(path)[:, None], None
    raise UsageError(
        f"cannot tell what '{path}' holds: use a .csv (header row), an .npz (array X), an idx "
        "file of images, a cifar-10-batches-py folder or a folder of MNIST idx files"
    )
