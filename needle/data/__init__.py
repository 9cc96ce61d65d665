"""needle.data: datasets, the DataLoader, image transforms, and the files datasets ship in.

This is the library's side, for any code (the course's `needle.data`). The data a training
config names (`data.dataset: spirals`, an `.npz`, ...) is the training side's:
`needle.train.datasets`, which reads files with these.

One module per concept: `loader` (Dataset, NDArrayDataset, MNISTDataset, DataLoader),
`transforms` (image augmentations), `idx` (MNIST's file format), `cifar` (CIFAR-10's
batches), `safe_pickle` (the unpickler those batches are read with), `ptb` (Penn Treebank:
Dictionary, Corpus, batchify, get_batch). Every public name is re-exported here, so
`needle.data.X` and `from needle.data import X` work for all of them.
"""

from needle.data.cifar import CIFAR10Dataset
from needle.data.idx import read_idx, write_idx
from needle.data.loader import (
    DataLoader,
    Dataset,
    MNISTDataset,
    NDArrayDataset,
    read_idx_images,
)
from needle.data.ptb import Corpus, Dictionary, batchify, get_batch
from needle.data.safe_pickle import SafeUnpickler, load_pickle
from needle.data.transforms import RandomCrop, RandomFlipHorizontal, Transform

__all__ = [
    "CIFAR10Dataset",
    "Corpus",
    "DataLoader",
    "Dataset",
    "Dictionary",
    "MNISTDataset",
    "NDArrayDataset",
    "RandomCrop",
    "RandomFlipHorizontal",
    "SafeUnpickler",
    "Transform",
    "batchify",
    "get_batch",
    "load_pickle",
    "read_idx",
    "read_idx_images",
    "write_idx",
]
