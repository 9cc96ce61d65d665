"""What loading a config's data gives: a `Split` (samples and labels), a `TokenStream` (a
text's split, knowing its words), `Data` (both splits, what they are shaped like, where they
came from), and `hold_out`, the seeded split."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from needle.train.normalize import Normalization


@dataclass(frozen=True)
class Split:
    """Samples `X` (N, *sample_shape) float32 and labels `y` (N,) int64."""

    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample: `X.shape` without the sample axis."""
        return tuple(self.X.shape[1:])


@dataclass(frozen=True)
class TokenStream(Split):
    """A token stream's split (`X` the ids as float32, `y` the same ids), with `words`: the
    token each id stands for, id i being words[i], one list for both splits of a text."""

    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class Data:
    """A dataset ready to train on: what a model must take in (`sample_shape`, one sample
    without the batch axis: (784,) for MNIST, (2,) for the generators) and put out
    (`num_classes`), and both splits."""

    name: str
    train: Split
    val: Split
    sample_shape: tuple[int, ...]
    num_classes: int
    source: str  # where it came from, for summaries: "spirals (seed 0)" or a path
    normalization: Normalization | None = None  # what scaled the features (data.normalize)
    # A label per sample: () for classes; (bptt,) for a language model's windows, a next
    # token at each position (then each split holds one token stream, `Split.X` (N,)).
    label_shape: tuple[int, ...] = ()
    # A token stream's words by id (TokenStream.words), as many as num_classes; else ().
    vocabulary: tuple[str, ...] = ()

    @property
    def language_model(self) -> bool:
        """Whether this is a token stream, trained in windows (`needle.train.language`)."""
        return self.label_shape != ()

    @property
    def in_features(self) -> int:
        """The number of values in one sample (its shape's product)."""
        return math.prod(self.sample_shape)


def hold_out(whole: Split, val_fraction: float, rng: np.random.Generator) -> tuple[Split, Split]:
    """Shuffle, then hold out the last `val_fraction` (at least one sample each side, so
    `whole` holds at least 2)."""
    n = len(whole)
    order = rng.permutation(n)
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    train, val = order[: n - n_val], order[n - n_val :]
    return Split(whole.X[train], whole.y[train]), Split(whole.X[val], whole.y[val])
