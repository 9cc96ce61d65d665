"""What an initializer promises, beside what it draws.

One concept a module, each built on the ones before it:

- `distributions`: the CDFs of U(−bound, bound) and N(0, std²), and the normal quantile;
- `formulas`: `theory` resolves a scheme of `needle.init` with its fans and options into the
  distribution it should draw from, each formula written out with its numbers filled in and
  its value computed by `needle.init`'s own scale functions;
- `goodness`: the Kolmogorov–Smirnov distance between draws and a CDF, and its critical value;
- `histograms`: the draws binned beside the theoretical density;
- `measurement`: `init_stats` draws weights through the initializer itself and sets measured
  mean, std, min and max beside the expected ones, with the KS test and a histogram;
- `activations` and `propagation`: `propagate` pushes a unit-variance batch through a stack of
  Linear (or conv) layers built with the scheme and records the spread of the signal forward
  and of the gradient backward;
- `comparison`: `survey` does both for several schemes side by side, as `needle init-stats`
  shows them;
- `config_layers`: `config_layer_stats` does the per-weight comparison for every Linear layer
  of a config's model.

All randomness goes through numpy's global RNG, as in `needle.init`; each function seeds it and
restores the previous state afterwards (`init.seeded`).

    >>> stats = init_stats("kaiming_uniform", 256, 256, samples=10_000)
    >>> stats.theory.scale.text
    'bound = gain·√(3/fan_in) = √2·√(3/256) = 0.1531'
"""

from needle.init_stats.activations import activation, kept_variance
from needle.init_stats.comparison import SchemeReport, survey
from needle.init_stats.config_layers import LinearLayerStats, config_layer_stats
from needle.init_stats.distributions import normal_cdf, normal_quantile, uniform_cdf
from needle.init_stats.formulas import NORMAL, UNIFORM, Formula, Theory, positive_int, theory
from needle.init_stats.goodness import KS_ALPHA, KSTest, ks_coefficient, ks_critical, ks_statistic
from needle.init_stats.histograms import DEFAULT_BINS, Histogram, histogram
from needle.init_stats.measurement import (
    DEFAULT_SAMPLES,
    MAX_DRAW,
    MAX_SAMPLES,
    InitStats,
    Statistic,
    draw,
    init_stats,
    measure,
)
from needle.init_stats.propagation import (
    CONV_BATCH,
    CONV_INTERIOR,
    DEFAULT_BATCH,
    MAX_DEPTH,
    MAX_STACK_VALUES,
    STEADY_FACTOR,
    LayerSignal,
    Propagation,
    conv_image,
    expected_signal,
    propagate,
    stack_size,
    trend,
)

__all__ = [
    "CONV_BATCH",
    "CONV_INTERIOR",
    "DEFAULT_BATCH",
    "DEFAULT_BINS",
    "DEFAULT_SAMPLES",
    "KS_ALPHA",
    "MAX_DEPTH",
    "MAX_DRAW",
    "MAX_SAMPLES",
    "MAX_STACK_VALUES",
    "NORMAL",
    "STEADY_FACTOR",
    "UNIFORM",
    "Formula",
    "Histogram",
    "InitStats",
    "KSTest",
    "LayerSignal",
    "LinearLayerStats",
    "Propagation",
    "SchemeReport",
    "Statistic",
    "Theory",
    "activation",
    "config_layer_stats",
    "conv_image",
    "draw",
    "expected_signal",
    "histogram",
    "init_stats",
    "kept_variance",
    "ks_coefficient",
    "ks_critical",
    "ks_statistic",
    "measure",
    "normal_cdf",
    "normal_quantile",
    "positive_int",
    "propagate",
    "stack_size",
    "survey",
    "theory",
    "trend",
    "uniform_cdf",
]
