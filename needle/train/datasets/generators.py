"""The built-in generators: 2-D points made from the config's seed, no files.

Each draws from the `np.random.Generator` it is given (seeded with `config.seed`), so the
data neither depends on nor disturbs numpy's global generator, which initializes and shuffles
the model. Each is registered where it is defined, with `@generator(...)`: its default number
of classes (and whether that is the only one it makes) and its default noise.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from needle.train.datasets.registry import GENERATOR, DatasetType, register
from needle.train.datasets.split import Split, hold_out

if TYPE_CHECKING:
    from needle.train.config import TrainConfig

Generated = tuple[np.ndarray, np.ndarray]
Generate = Callable[[int, int, float, np.random.Generator], Generated]

SAMPLES = 1000  # every generator's default number of points
VAL_FRACTION = 0.2  # and share of them held out


def generator(
    name: str, *, classes: int, noise: float, summary: str, exact_classes: bool = False
) -> Callable[[Generate], Generate]:
    """Register `generate(samples, classes, noise, rng) -> (X, y)` as dataset `name`.

    `summary` is the one description of what it makes: docs/config.md's dataset table and the
    schema show it, and it becomes the function's docstring."""

    def add(generate: Generate) -> Generate:
        generate.__doc__ = summary
        register(
            DatasetType(
                name,
                GENERATOR,
                summary,
                settings={
                    "samples": SAMPLES,
                    "classes": classes,
                    "noise": noise,
                    "val_fraction": VAL_FRACTION,
                },
                load=partial(_load, generate),
                unused={"path": f"'{name}' is generated, it reads no file"},
                exact_classes=exact_classes,
                flat=True,
            )
        )
        return generate

    return add


def _load(generate: Generate, config: TrainConfig, rng: np.random.Generator) -> tuple[Split, Split]:
    spec = config.data
    X, y = generate(spec.samples, spec.classes, spec.noise, rng)
    return hold_out(Split(X.astype(np.float32), y.astype(np.int64)), spec.val_fraction, rng)


def _class_sizes(samples: int, classes: int) -> np.ndarray:
    """Balanced class sizes summing to `samples` (the first classes get the remainder)."""
    sizes = np.full(classes, samples // classes)
    sizes[: samples % classes] += 1
    return sizes


def _labels(samples: int, classes: int) -> np.ndarray:
    return np.repeat(np.arange(classes), _class_sizes(samples, classes))


@generator(
    "spirals",
    classes=3,
    noise=0.2,
    summary="One arm per class, each 1.5 turns, its radius growing from the centre; `noise` "
    "is the standard deviation of the angle, in radians.",
)
def spirals(samples: int, classes: int, noise: float, rng: np.random.Generator) -> Generated:
    y = _labels(samples, classes)
    t = np.concatenate([np.linspace(0.0, 1.0, m) for m in _class_sizes(samples, classes)])
    angle = 2 * np.pi * y / classes + 3 * np.pi * t + rng.normal(0.0, noise, samples)
    return np.stack([t * np.sin(angle), t * np.cos(angle)], axis=1), y


@generator(
    "moons",
    classes=2,
    noise=0.1,
    exact_classes=True,
    summary="Two interleaved half circles, with Gaussian noise of standard deviation `noise` "
    "on each coordinate.",
)
def moons(samples: int, classes: int, noise: float, rng: np.random.Generator) -> Generated:
    y = _labels(samples, 2)
    angle = rng.uniform(0.0, np.pi, samples)
    upper = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    lower = np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    X = np.where(y[:, None] == 0, upper, lower)
    return X + rng.normal(0.0, noise, X.shape), y


@generator(
    "circles",
    classes=2,
    noise=0.05,
    exact_classes=True,
    summary="A circle of radius 1 (class 0) around one of radius 0.5 (class 1), with Gaussian "
    "noise of standard deviation `noise` on each coordinate.",
)
def circles(samples: int, classes: int, noise: float, rng: np.random.Generator) -> Generated:
    y = _labels(samples, 2)
    angle = rng.uniform(0.0, 2 * np.pi, samples)
    radius = np.where(y == 0, 1.0, 0.5)
    X = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return X + rng.normal(0.0, noise, X.shape), y


@generator(
    "blobs",
    classes=3,
    noise=1.0,
    summary="Gaussian clusters of standard deviation `noise` around centres evenly spaced on "
    "a circle of radius 4.",
)
def blobs(samples: int, classes: int, noise: float, rng: np.random.Generator) -> Generated:
    y = _labels(samples, classes)
    angle = 2 * np.pi * y / classes
    centres = 4.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centres + rng.normal(0.0, noise, centres.shape), y


@generator(
    "xor",
    classes=2,
    noise=0.1,
    exact_classes=True,
    summary="Points uniform in the square [−1, 1]², class 1 where the two coordinates have "
    "different signs, then Gaussian noise of standard deviation `noise` on each coordinate.",
)
def xor(samples: int, classes: int, noise: float, rng: np.random.Generator) -> Generated:
    X = rng.uniform(-1.0, 1.0, (samples, 2))
    y = (X[:, 0] * X[:, 1] < 0).astype(np.int64)
    return X + rng.normal(0.0, noise, X.shape), y
