"""Image augmentations, each a callable on one (H, W, C) image.

Randomness goes through numpy's global RNG, one call per image in a fixed order, so
`np.random.seed` reproduces an augmented run exactly.
"""

from __future__ import annotations

import numpy as np


class Transform:
    """A callable on one image of shape (H, W, C)."""

    def __call__(self, img: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RandomFlipHorizontal(Transform):
    """Mirror the image left-right (the width axis) with probability `p`; one
    `np.random.rand()` per call."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img: np.ndarray) -> np.ndarray:
        flip = np.random.rand() < self.p
        return np.flip(img, axis=1) if flip else img


class RandomCrop(Transform):
    """Shift the image by up to `padding` pixels along height and width, filling with zeros:
    zero-pad by `padding`, then crop back to the input's size at a random offset. One
    `np.random.randint(-padding, padding + 1, size=2)` per call (height shift, width shift)."""

    def __init__(self, padding: int = 3) -> None:
        self.padding = padding

    def __call__(self, img: np.ndarray) -> np.ndarray:
        p = self.padding
        shift_h, shift_w = np.random.randint(low=-p, high=p + 1, size=2)
        height, width = img.shape[:2]
        padded = np.pad(img, ((p, p), (p, p)) + ((0, 0),) * (img.ndim - 2))
        top, left = p + shift_h, p + shift_w
        return padded[top : top + height, left : left + width]
