"""Feature scaling for file datasets: statistics of the training split, applied to every split.

`data.normalize` names one of

    none       x' = x, the features as the file holds them
    minmax     x' = (x - min) / (max - min), each feature to [0, 1] on the training split
    standard   x' = (x - mean) / std, each feature to mean 0 and standard deviation 1

with min, max, mean and std (the population standard deviation) taken per feature over the
training split only (for images, a feature is one value of the sample, a channel at one
pixel: MNIST has 784 statistics, CIFAR-10 3072), so nothing of the validation split leaks into
training. A feature that is constant on the training split has max - min = std = 0; its scale
is taken as 1, so it becomes 0 rather than NaN. The statistics are saved in the run's
checkpoint: resuming and evaluating apply the very numbers training used, even to data the
run never saw.

Why per value and not per channel for images: it keeps today's numbers for every config
written when images were flat (an MLP on MNIST with `standard` trains exactly as before, and
its saved statistics still apply), and it is one rule for every kind of sample. Zero padding
of a random crop (`data.augment`) then pads with each value's training mean (`standard`) or
minimum (`minmax`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NORMALIZATIONS = ("none", "minmax", "standard")

# Features beyond this in absolute value look like raw pixels or counts: a network initialized
# for inputs of order 1 starts with huge logits (uint8 images: a first-epoch loss near 40).
UNSCALED_ABOVE = 10.0


@dataclass(frozen=True)
class Normalization:
    """x' = (x - shift) / scale per feature; `shift` and `scale` are float64 of shape
    (features,), the values of one sample in C order, every scale > 0."""

    kind: str  # "minmax" or "standard"
    shift: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, kind: str, X: np.ndarray) -> Normalization:
        """The statistics of `kind` over the samples of `X` (the training split)."""
        X = X.reshape(len(X), -1).astype(np.float64)
        if kind == "minmax":
            shift, spread = X.min(axis=0), X.max(axis=0) - X.min(axis=0)
        elif kind == "standard":
            shift, spread = X.mean(axis=0), X.std(axis=0)
        else:
            raise ValueError(f"no statistics for normalization {kind!r}")
        return cls(kind, shift, np.where(spread > 0, spread, 1.0))

    def apply(self, X: np.ndarray) -> np.ndarray:
        """`X` (N, *sample_shape) rescaled, as float32 like every feature array."""
        flat = X.reshape(len(X), -1).astype(np.float64)
        return ((flat - self.shift) / self.scale).astype(np.float32).reshape(X.shape)
