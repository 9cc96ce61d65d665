"""What an initializer draws, beside what it promises: `init_stats` draws weights through the
initializer itself and sets measured mean, std, min and max beside the expected ones, with the
Kolmogorov–Smirnov distance to the theoretical distribution and a histogram."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from needle import init
from needle.errors import UsageError
from needle.init_stats.distributions import normal_quantile
from needle.init_stats.formulas import UNIFORM, Theory, positive_int, theory
from needle.init_stats.goodness import KS_ALPHA, KSTest, ks_critical, ks_statistic
from needle.init_stats.histograms import DEFAULT_BINS, Histogram, histogram

# Values one initializer call may draw: fan_in × fan_out beyond this does not fit in memory
# comfortably, and the statistics need far fewer.
MAX_DRAW = 20_000_000
DEFAULT_SAMPLES = 65_536  # one 256 × 256 matrix
# Draws to measure: at 10⁷ the KS test already tells CDFs 4·10⁻⁴ apart (1.358/√n), and the
# draws, their sort and their CDF take about 0.7 GB.
MAX_SAMPLES = 10_000_000


@dataclass(frozen=True)
class Statistic:
    """A quantity predicted by the theory and measured on the draws."""

    name: str
    expected: float
    measured: float
    note: str = ""


@dataclass(frozen=True)
class InitStats:
    theory: Theory
    samples: int
    seed: int
    statistics: tuple[Statistic, ...]  # mean, std, min, max (and bound for uniform)
    ks: KSTest
    histogram: Histogram

    def statistic(self, name: str) -> Statistic:
        return next(s for s in self.statistics if s.name == name)

    def to_dict(self) -> dict[str, Any]:
        data = {**asdict(self), "theory": self.theory.to_dict()}
        data["ks"]["passed"] = self.ks.passed
        return data


def draw(resolved: Theory, samples: int) -> np.ndarray:
    """`samples` weights drawn through the initializer itself: as many whole (fan_in, fan_out)
    matrices (or (K, K, in, out) kernels) as needed, flattened, the first `samples` kept."""
    shape = resolved.draw_shape
    per_call = math.prod(shape)
    if per_call > MAX_DRAW:
        sizes = " × ".join(str(n) for n in shape)
        raise UsageError(f"{sizes} = {per_call} values per draw; at most {MAX_DRAW}")
    initializer = init.get_initializer(resolved.scheme)
    kwargs = resolved.initializer_kwargs()
    if resolved.kernel is not None:  # a matrix is the initializers' default shape
        kwargs["shape"] = shape
    chunks, have = [], 0
    while have < samples:
        weight = initializer(resolved.fan_in, resolved.fan_out, **kwargs).numpy()
        chunks.append(weight.ravel())
        have += weight.size
    return np.concatenate(chunks)[:samples].astype(np.float64)


def init_stats(
    scheme: str,
    fan_in: int = 256,
    fan_out: int = 256,
    *,
    nonlinearity: str | None = None,
    param: float | None = None,
    mode: str | None = None,
    gain: float | None = None,
    kernel: int | None = None,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    bins: int = DEFAULT_BINS,
) -> InitStats:
    """Draw `samples` weights (2 to `MAX_SAMPLES`) with `scheme` and compare them with its
    theory.

    Expected values: mean 0; std from the formula; for U(−a, a) the extremes of n draws
    average ∓a·(n−1)/(n+1) and never pass ±a; for N(0, σ²) they are about ±σ·Φ⁻¹((n −
    0.375)/(n + 0.25)) (Blom's approximation to the expected maximum of n normals).
    """
    resolved = theory(
        scheme,
        fan_in,
        fan_out,
        nonlinearity=nonlinearity,
        param=param,
        mode=mode,
        gain=gain,
        kernel=kernel,
    )
    samples = positive_int(samples, "samples")
    if not 2 <= samples <= MAX_SAMPLES:
        raise UsageError(f"samples must be from 2 to {MAX_SAMPLES} (got {samples})")
    with init.seeded(seed):
        weights = draw(resolved, samples)
    return measure(resolved, weights, seed=seed, bins=bins)


def measure(
    resolved: Theory, weights: np.ndarray, *, seed: int, bins: int = DEFAULT_BINS
) -> InitStats:
    """The statistics of given `weights` against `resolved` (see `init_stats`)."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    n = w.size
    if resolved.distribution == UNIFORM:
        a = resolved.scale.value
        extreme = a * (n - 1) / (n + 1)
        note = "E[extreme of n draws] = a·(n−1)/(n+1)"
    else:
        extreme = resolved.std * normal_quantile((n - 0.375) / (n + 0.25))
        note = "≈ σ·Φ⁻¹((n−0.375)/(n+0.25)) (Blom)"
    statistics = [
        Statistic("mean", 0.0, float(w.mean())),
        Statistic("std", resolved.std, float(w.std())),
        Statistic("min", -extreme, float(w.min()), note),
        Statistic("max", extreme, float(w.max()), note),
    ]
    if resolved.distribution == UNIFORM:
        statistics.append(
            Statistic("bound", resolved.scale.value, float(np.abs(w).max()), "max |w| ≤ bound")
        )
    ks = KSTest(
        statistic=ks_statistic(w, resolved.cdf),
        critical=ks_critical(n),
        alpha=KS_ALPHA,
        samples=n,
    )
    return InitStats(
        theory=resolved,
        samples=n,
        seed=seed,
        statistics=tuple(statistics),
        ks=ks,
        histogram=histogram(resolved, w, bins),
    )
