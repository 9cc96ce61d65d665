"""The two distributions an initializer draws from, U(−bound, bound) and N(0, std²): their
CDFs, and the standard normal's quantile function."""

from __future__ import annotations

import math

import numpy as np


def uniform_cdf(x: np.ndarray, bound: float) -> np.ndarray:
    """F(x) of U(−bound, bound): (x + bound) / (2·bound), clipped to [0, 1]."""
    return np.clip((np.asarray(x, dtype=np.float64) + bound) / (2 * bound), 0.0, 1.0)


_erf = np.frompyfunc(math.erf, 1, 1)


def normal_cdf(x: np.ndarray, std: float) -> np.ndarray:
    """F(x) of N(0, std²): ½·(1 + erf(x / (std·√2)))."""
    z = np.asarray(x, dtype=np.float64) / (std * math.sqrt(2))
    return 0.5 * (1.0 + _erf(z).astype(np.float64))


def normal_quantile(p: float) -> float:
    """Φ⁻¹(p) for the standard normal, by bisection on Φ (monotone, so exact to float
    precision after ~100 halvings of [−40, 40])."""
    low, high = -40.0, 40.0
    for _ in range(200):
        mid = (low + high) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2
