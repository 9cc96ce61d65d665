"""Inputs for the registry entries of the pooling ops: default input shapes, random valid
(parameters, shapes) cases, and a draw whose entries never tie.

Every case has a kernel no larger than its image (K ≤ H, K ≤ W), and sizes small enough
that an elementwise gradient check of every case stays quick.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from needle.ops.registry import Shape

Case = tuple[dict[str, Any], list[Shape]]


def pool_shapes(params: dict[str, Any]) -> list[Shape]:
    """An NHWC input (2, 5, 4, 3): H ≠ W, so a swapped axis cannot pass, and room for a
    kernel up to 4."""
    return [(2, 5, 4, 3)]


def pool_case(rng: np.random.Generator) -> Case:
    """Kernel 1–3, stride 1–3 or None (the kernel), H and W from K up to 5."""
    kernel = int(rng.integers(1, 4))
    stride = None if rng.random() < 0.3 else int(rng.integers(1, 4))
    h, w = (int(x) for x in rng.integers(kernel, 6, 2))
    n, c = (int(x) for x in rng.integers(1, 3, 2))
    return {"kernel": kernel, "stride": stride}, [(n, h, w, c)]
