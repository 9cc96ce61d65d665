"""Goodness of fit: the Kolmogorov–Smirnov distance between draws and a CDF, and its asymptotic
critical value."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Significance level of the Kolmogorov–Smirnov verdict.
KS_ALPHA = 0.05


@dataclass(frozen=True)
class KSTest:
    """Kolmogorov–Smirnov: `statistic` D = sup_x |F_n(x) − F(x)|, against the asymptotic
    critical value c(α)/√n with c(α) = √(−ln(α/2)/2) (1.358 at α = 0.05)."""

    statistic: float
    critical: float
    alpha: float
    samples: int

    @property
    def passed(self) -> bool:
        return self.statistic <= self.critical

    @property
    def coefficient(self) -> float:
        """c(α), the critical value times √n."""
        return ks_coefficient(self.alpha)


def ks_coefficient(alpha: float = KS_ALPHA) -> float:
    """c(α) = √(−ln(α/2)/2) of the asymptotic Kolmogorov–Smirnov test: 1.358 at α = 0.05."""
    return math.sqrt(-math.log(alpha / 2) / 2)


def ks_critical(samples: int, alpha: float = KS_ALPHA) -> float:
    """The asymptotic Kolmogorov–Smirnov critical value c(α)/√n."""
    return ks_coefficient(alpha) / math.sqrt(samples)


def ks_statistic(samples: np.ndarray, cdf: Callable[[np.ndarray], np.ndarray]) -> float:
    """D = sup_x |F_n(x) − F(x)|: at the i-th smallest draw x₍ᵢ₎ the empirical CDF jumps from
    (i−1)/n to i/n, so D = maxᵢ max(i/n − F(x₍ᵢ₎), F(x₍ᵢ₎) − (i−1)/n)."""
    x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    n = x.size
    f = cdf(x)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - f), np.max(f - (i - 1) / n)))
