"""The draws binned beside the theoretical density."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from needle.init_stats.formulas import UNIFORM, Theory, positive_int

DEFAULT_BINS = 40


@dataclass(frozen=True)
class Histogram:
    """The draws binned over `edges`, as densities: measured `density` = count / (n·width),
    `expected` = the theoretical probability of each bin / width."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    density: tuple[float, ...]
    expected: tuple[float, ...]
    outside: int  # draws beyond the edges (normal tails past ±4σ)


def histogram(resolved: Theory, weights: np.ndarray, bins: int = DEFAULT_BINS) -> Histogram:
    """Bin the draws over the support (±bound for uniform, ±4σ for normal)."""
    bins = positive_int(bins, "bins")
    half = resolved.scale.value if resolved.distribution == UNIFORM else 4 * resolved.std
    edges = np.linspace(-half, half, bins + 1)
    # float32 draws can round a hair past a uniform's bound: count them in the edge bins.
    w = weights
    if resolved.distribution == UNIFORM:
        w = np.clip(weights, -half, half)
    counts, _ = np.histogram(w, bins=edges)
    width = np.diff(edges)
    n = weights.size
    expected = np.diff(resolved.cdf(edges)) / width
    return Histogram(
        edges=tuple(float(e) for e in edges),
        counts=tuple(int(c) for c in counts),
        density=tuple(float(d) for d in counts / (n * width)),
        expected=tuple(float(d) for d in expected),
        outside=int(n - counts.sum()),
    )
