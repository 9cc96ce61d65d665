"""The data a config names: `data.dataset` and its settings, loaded into training and
validation splits. Not to be confused with `needle.data`, the library's datasets, DataLoader
and file formats for any code; this package is the training side's, and reads files with them.

    registry    DatasetType and DATASET_TYPES: every dataset registered once, with its
                settings, their defaults, why it refuses the others, and how it loads
    generators  spirals, moons, circles, blobs, xor: made from the seed, registered with
                @generator
    files       mnist, fashion_mnist (idx folders), npz, csv: read and checked
    text        counting (generated), ptb, text: token streams for language models
    settings    DataConfig, the `data:` section, checked against the registry
    split       Split, Data (with the sample shape), hold_out
    load        load_data (a config's data), load_path (any one file, for evaluation),
                load_samples (one file, labels optional, for prediction), unscaled_warning

To add a dataset, register it in `generators` or `files` (see docs/architecture.md).
"""

from needle.train.datasets import files, generators, text  # noqa: F401 (they register datasets)
from needle.train.datasets.files import IDX_FILES
from needle.train.datasets.load import load_data, load_path, load_samples, unscaled_warning
from needle.train.datasets.registry import DATASET_TYPES, FILE, GENERATOR, DatasetType, names
from needle.train.datasets.settings import DataConfig
from needle.train.datasets.split import Data, Split

__all__ = [
    "DATASET_TYPES",
    "FILE",
    "GENERATOR",
    "IDX_FILES",
    "Data",
    "DataConfig",
    "DatasetType",
    "Split",
    "load_data",
    "load_path",
    "load_samples",
    "names",
    "unscaled_warning",
]
