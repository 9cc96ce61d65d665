"""Image augmentations: each a callable on one (H, W, C) image and, through `batch`, on a
stack of them (B, H, W, C); `channels_first` applies them to (B, C, H, W) batches.

Randomness goes through numpy's global RNG in a fixed order, so `np.random.seed` reproduces an
augmented run exactly. A batch of B images draws what B calls on one image would draw, one
after the other: calling a transform on one image is its batch of one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Transform:
    """A callable on one image of shape (H, W, C); `batch` does the same to each image of a
    stack (B, H, W, C), drawing its random numbers for all of them at once."""

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.batch(img[None])[0]

    def batch(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RandomFlipHorizontal(Transform):
    """Mirror each image left-right (the width axis) with probability `p`; one
    `np.random.rand()` per image."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def batch(self, images: np.ndarray) -> np.ndarray:
        flip = np.random.rand(len(images)) < self.p
        out = images.copy()
        out[flip] = images[flip, :, ::-1]
        return out


class RandomCrop(Transform):
    """Shift each image by up to `padding` pixels along height and width, filling with zeros:
    zero-pad by `padding`, then crop back to the input's size at a random offset. One
    `np.random.randint(-padding, padding + 1, size=2)` per image (height shift, width shift)."""

    def __init__(self, padding: int = 3) -> None:
        self.padding = padding

    def batch(self, images: np.ndarray) -> np.ndarray:
        p = self.padding
        shifts = np.random.randint(low=-p, high=p + 1, size=(len(images), 2))
        height, width = images.shape[1:3]
        padded = np.pad(images, ((0, 0), (p, p), (p, p)) + ((0, 0),) * (images.ndim - 3))
        out = np.empty_like(images)
        for i, (shift_h, shift_w) in enumerate(shifts):
            top, left = p + shift_h, p + shift_w
            out[i] = padded[i, top : top + height, left : left + width]
        return out


def channels_first(images: np.ndarray, transforms: Sequence[Transform]) -> np.ndarray:
    """`transforms` applied in order to a batch of (B, C, H, W) images, the layout of needle's
    convolutions (the transforms see each image as (H, W, C))."""
    hwc = images.transpose(0, 2, 3, 1)
    for transform in transforms:
        hwc = transform.batch(hwc)
    return np.ascontiguousarray(hwc.transpose(0, 3, 1, 2))
