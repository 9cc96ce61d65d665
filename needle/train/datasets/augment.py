"""`data.augment`: random changes to each training image, drawn anew every epoch.

    augment: {flip: true, crop: 4}

`flip` mirrors each image left-right with probability 1/2; `crop: P` zero-pads each image by
P pixels on every side and cuts it back to its size at a random offset (a shift of up to P
pixels each way, as the course's RandomCrop). They are applied in that order, to training
batches only (validation and `needle evaluate` see the images as they are), after
`data.normalize`, through needle.data's transforms, drawing from numpy's global RNG as each
batch is made: the run's seeded stream, so the same seed gives the same run and a resume
continues it exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from needle.data.transforms import RandomCrop, RandomFlipHorizontal, Transform, channels_first
from needle.train.fields import Strict

if TYPE_CHECKING:
    from needle.train.config import TrainConfig
    from needle.train.datasets.split import Data

Shape = tuple[int, ...]


class AugmentConfig(Strict):
    """`data.augment:` random flips and crops of the training images."""

    flip: bool = Field(False, description="mirror each image left-right with probability 1/2")
    crop: int = Field(
        0,
        ge=0,
        description="pad each image by this many zero pixels, then crop it back to its size "
        "at a random offset (0: no crop)",
    )

    def transforms(self) -> list[Transform]:
        """needle.data transforms for these settings, in the order they are applied."""
        chosen: list[Transform] = []
        if self.flip:
            chosen.append(RandomFlipHorizontal(0.5))
        if self.crop:
            chosen.append(RandomCrop(self.crop))
        return chosen


def augmentation(
    config: TrainConfig, data: Data, input_shape: Shape
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The batch transform `data.augment` asks for, taking a batch of samples shaped as the
    model takes them (`input_shape`) and giving it back augmented; None without augmentation.
    Raises the config error at data.augment for data that is not images (C, H, W)."""
    spec = config.data.augment
    if spec is None:
        return None
    shape = data.sample_shape
    if len(shape) != 3:
        raise config.error(
            ("data", "augment"),
            f"augmentation needs images of shape (channels, height, width) but "
            f"'{config.data.path}' holds samples of shape {shape}; save X as (N, C, H, W) or "
            "(N, H, W) images",
        )
    transforms = spec.transforms()
    if not transforms:
        return None

    def augment(batch: np.ndarray) -> np.ndarray:
        images = channels_first(batch.reshape(len(batch), *shape), transforms)
        return images.reshape(len(batch), *input_shape)

    return augment
