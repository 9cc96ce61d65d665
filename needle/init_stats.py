"""What an initializer promises, beside what it draws.

`theory` resolves a scheme of `needle.init` with its fans and options into the distribution it
should draw from, with each formula written out and its numbers filled in. `init_stats` draws
weights through the initializer itself and sets measured mean, std, min and max beside the
expected ones, with the Kolmogorov–Smirnov distance between the draws and the theoretical
distribution. `propagate` pushes a unit-variance batch through a stack of Linear layers built
with the scheme and records the spread of the signal forward and of the gradient backward.
`survey` does both for several schemes side by side, as `needle init-stats` shows them.
`config_layer_stats` does the per-weight comparison for every Linear layer of a config's model.

All randomness goes through numpy's global RNG, as in `needle.init`; each function seeds it and
restores the previous state afterwards (`init.seeded`).

    >>> stats = init_stats("kaiming_uniform", 256, 256, samples=10_000)
    >>> stats.theory.scale.text
    'bound = gain·√(3/fan_in) = √2·√(3/256) = 0.1531'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from needle import init, nn, ops
from needle.autograd import Tensor
from needle.errors import UsageError, unknown_choice

# Significance level of the Kolmogorov–Smirnov verdict.
KS_ALPHA = 0.05
# Values one initializer call may draw: fan_in × fan_out beyond this does not fit in memory
# comfortably, and the statistics need far fewer.
MAX_DRAW = 20_000_000
DEFAULT_SAMPLES = 65_536  # one 256 × 256 matrix
# Draws to measure: at 10⁷ the KS test already tells CDFs 4·10⁻⁴ apart (1.358/√n), and the
# draws, their sort and their CDF take about 0.7 GB.
MAX_SAMPLES = 10_000_000
# A --depth stack: a signal vanishes or explodes within tens of layers; more only take time.
MAX_DEPTH = 1_000
# Values a stack holds, depth·width² weights and depth·batch·width activations: up to about
# 30 bytes each at peak (float64, forward and backward, measured), so 0.6 GB at this limit.
MAX_STACK_VALUES = 20_000_000
DEFAULT_BATCH = 256
DEFAULT_BINS = 40

UNIFORM, NORMAL = "uniform", "normal"


@dataclass(frozen=True)
class Formula:
    """One line of theory: `bound = gain·√(3/fan_in) = √2·√(3/256) = 0.1531`."""

    quantity: str
    expression: str  # in symbols
    substituted: str  # the same with the numbers filled in
    value: float

    @property
    def text(self) -> str:
        parts = [self.quantity, self.expression]
        if self.substituted != self.expression:
            parts.append(self.substituted)
        try:
            exact = float(parts[-1]) == self.value  # "gain = 1" needs no "= 1.0000"
        except ValueError:
            exact = False
        return " = ".join(parts) + ("" if exact else f" = {self.value:.4f}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text}


@dataclass(frozen=True)
class Theory:
    """A scheme resolved for given fans: the distribution its weights should follow.

    `distribution` is "uniform" (on [−scale, scale]) or "normal" (N(0, scale²)).
    """

    scheme: str
    distribution: str
    fan_in: int
    fan_out: int
    nonlinearity: str | None  # the gain's source (kaiming), None for xavier
    param: float | None
    mode: str | None  # which fan a kaiming scheme divides by
    gain: Formula
    scale: Formula  # "bound = …" or "std = …"

    @property
    def std(self) -> float:
        """The standard deviation: bound/√3 for U(−bound, bound), the scale itself for a normal."""
        if self.distribution == UNIFORM:
            return self.scale.value / math.sqrt(3)
        return self.scale.value

    @property
    def formulas(self) -> tuple[Formula, ...]:
        """The theory line by line: the gain, the scale, and for a uniform scheme its std."""
        if self.distribution != UNIFORM:
            return (self.gain, self.scale)
        bound = self.scale.value
        return (self.gain, self.scale, Formula("std", "bound/√3", f"{bound:.4f}/√3", self.std))

    def to_dict(self) -> dict[str, Any]:
        """The fields, then `std` and `formulas`; each formula with its `text`."""
        return {
            **asdict(self),
            "gain": self.gain.to_dict(),
            "scale": self.scale.to_dict(),
            "std": self.std,
            "formulas": [formula.to_dict() for formula in self.formulas],
        }

    def initializer_kwargs(self) -> dict[str, Any]:
        """The scheme's own keyword arguments, as `needle.init` takes them."""
        if self.scheme.startswith("xavier"):
            return {"gain": self.gain.value}
        kwargs: dict[str, Any] = {"nonlinearity": self.nonlinearity, "mode": self.mode}
        if self.param is not None:
            kwargs["param"] = self.param
        return kwargs

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """F(x) of the theoretical distribution."""
        if self.distribution == UNIFORM:
            return uniform_cdf(x, self.scale.value)
        return normal_cdf(x, self.std)


@dataclass(frozen=True)
class Statistic:
    """A quantity predicted by the theory and measured on the draws."""

    name: str
    expected: float
    measured: float
    note: str = ""


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


@dataclass(frozen=True)
class Histogram:
    """The draws binned over `edges`, as densities: measured `density` = count / (n·width),
    `expected` = the theoretical probability of each bin / width."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    density: tuple[float, ...]
    expected: tuple[float, ...]
    outside: int  # draws beyond the edges (normal tails past ±4σ)


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


@dataclass(frozen=True)
class LayerSignal:
    """One layer of the stack: the std of its pre-activation z_l = h_{l−1} W_l forward, and of
    the gradient ∂L/∂z_l backward, with what the theory expects (None for nonlinearities
    without a closed form: tanh, sigmoid, selu)."""

    layer: int
    forward_std: float
    backward_std: float
    expected_forward_std: float | None = None
    expected_backward_std: float | None = None


@dataclass(frozen=True)
class Propagation:
    theory: Theory  # of one width × width layer
    activation: str
    depth: int
    width: int
    batch: int
    seed: int
    input_std: float
    output_grad_std: float  # of the cotangent fed to the last layer's output
    layers: tuple[LayerSignal, ...]

    @property
    def forward_gain(self) -> float:
        """std of z at the last layer over std at the first: 1 is a steady signal."""
        return _ratio(self.layers[-1].forward_std, self.layers[0].forward_std)

    @property
    def backward_gain(self) -> float:
        """std of ∂L/∂z at the first layer over std at the last (the way gradients flow)."""
        return _ratio(self.layers[0].backward_std, self.layers[-1].backward_std)

    @property
    def forward_trend(self) -> str:
        return trend(self.forward_gain)

    @property
    def backward_trend(self) -> str:
        return trend(self.backward_gain)

    def to_dict(self) -> dict[str, Any]:
        data = {**asdict(self), "theory": self.theory.to_dict()}
        data["forward_gain"], data["backward_gain"] = self.forward_gain, self.backward_gain
        return data


def _ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom != 0 else math.inf if top != 0 else 1.0


# A signal whose std shrinks or grows by less than this factor over the whole stack is steady.
STEADY_FACTOR = 2.0


def trend(gain: float) -> str:
    """What a stack does to the signal, from its std's `gain` over the stack: "vanishing",
    "exploding", "steady", or "overflow" when the gain could not be measured (nan)."""
    if math.isnan(gain):
        return "overflow"
    if gain < 1 / STEADY_FACTOR:
        return "vanishing"
    if gain > STEADY_FACTOR:
        return "exploding"
    return "steady"


@dataclass(frozen=True)
class SchemeReport:
    """One scheme's draws against its theory, and the signal through a stack built with it
    (None when no stack was asked for)."""

    stats: InitStats
    propagation: Propagation | None

    def to_dict(self) -> dict[str, Any]:
        propagation = self.propagation.to_dict() if self.propagation else None
        return {"stats": self.stats.to_dict(), "propagation": propagation}


@dataclass(frozen=True)
class LinearLayerStats:
    """A model's Linear weight against the scheme that initialized it."""

    name: str  # where the layer is in its config, e.g. "model.layers[0]"
    stats: InitStats

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.stats.to_dict()}


# -- the distributions ----------------------------------------------------------------------


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


# -- theory -----------------------------------------------------------------------------------

# Gains in closed form, written as they read in the papers.
_GAIN_SYMBOLS = {"tanh": "5/3", "relu": "√2", "selu": "3/4"}
# scheme: (distribution, the scale it sets, its formula; {fan} is fan_in or fan_out by mode)
_SCHEMES = {
    "xavier_uniform": (UNIFORM, "bound", "gain·√(6/(fan_in+fan_out))"),
    "xavier_normal": (NORMAL, "std", "gain·√(2/(fan_in+fan_out))"),
    "kaiming_uniform": (UNIFORM, "bound", "gain·√(3/{fan})"),
    "kaiming_normal": (NORMAL, "std", "gain/√{fan}"),
}


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UsageError(f"{name} must be a positive integer (got {value!r})")
    return int(value)


def theory(
    scheme: str,
    fan_in: int = 256,
    fan_out: int = 256,
    *,
    nonlinearity: str | None = None,
    param: float | None = None,
    mode: str | None = None,
    gain: float | None = None,
) -> Theory:
    """The distribution `scheme` promises for a (fan_in, fan_out) weight.

    xavier_* take `gain` (default 1); kaiming_* take their gain from `nonlinearity` (default
    relu) and `param` (leaky_relu's negative slope), and divide by the fan `mode` names
    (default fan_in). Options a scheme does not take are errors, not silently ignored.
    """
    init.get_initializer(scheme)  # an unknown name gets needle's did-you-mean
    if scheme not in _SCHEMES:
        raise unknown_choice("initializer with a known distribution", scheme, _SCHEMES)
    fan_in, fan_out = _positive_int(fan_in, "fan_in"), _positive_int(fan_out, "fan_out")
    distribution, quantity, expression = _SCHEMES[scheme]
    # Variance 2/(fan_in + fan_out) (Glorot) or gain²/fan (He): U(−a, a) has variance a²/3.
    if scheme.startswith("xavier"):
        if mode is not None:
            raise UsageError(f"mode applies to kaiming schemes; {scheme} uses fan_in + fan_out")
        if param is not None:
            raise UsageError(f"param applies to kaiming schemes (leaky_relu); {scheme} takes gain")
        g = 1.0 if gain is None else float(gain)
        if not (math.isfinite(g) and g > 0):
            raise UsageError(f"gain must be a positive number (got {gain})")
        gain_formula, symbol = Formula("gain", f"{g:g}", f"{g:g}", g), f"{g:g}"
        fans = {"fan_in+fan_out": f"{fan_in}+{fan_out}"}
        value = g * math.sqrt((6 if distribution == UNIFORM else 2) / (fan_in + fan_out))
    else:
        if gain is not None:
            raise UsageError(
                f"{scheme} takes its gain from nonlinearity (and param); gain applies to "
                "xavier schemes"
            )
        nonlinearity = nonlinearity or "relu"
        mode = mode or "fan_in"
        fan = init.fan(fan_in, fan_out, mode)  # the initializers' own choice, mode checked
        if param is not None:
            if nonlinearity != "leaky_relu":
                raise UsageError(f"param is leaky_relu's slope; nonlinearity is {nonlinearity}")
            if not math.isfinite(param):
                raise UsageError(f"param must be a finite number (got {param})")
        g = init.calculate_gain(nonlinearity, param)
        gain_formula, symbol = _gain_formula(nonlinearity, param, g)
        expression = expression.format(fan=mode)
        fans = {mode: str(fan)}
        value = g * math.sqrt(3 / fan) if distribution == UNIFORM else g / math.sqrt(fan)
    substituted = expression.replace("gain", symbol, 1)
    for name, number in fans.items():
        substituted = substituted.replace(name, number)
    return Theory(
        scheme=scheme,
        distribution=distribution,
        fan_in=fan_in,
        fan_out=fan_out,
        nonlinearity=nonlinearity if scheme.startswith("kaiming") else None,
        param=param,
        mode=mode,
        gain=gain_formula,
        scale=Formula(quantity, expression, substituted, value),
    )


def _gain_formula(nonlinearity: str, param: float | None, gain: float) -> tuple[Formula, str]:
    """The gain as a formula line and as the symbol substituted into the scale formula."""
    if nonlinearity == "leaky_relu":
        slope = init.LEAKY_RELU_SLOPE if param is None else param
        formula = Formula(
            f"gain(leaky_relu, a={slope:g})", "√(2/(1+a²))", f"√(2/(1+{slope:g}²))", gain
        )
        return formula, f"{gain:.4f}"
    symbol = _GAIN_SYMBOLS.get(nonlinearity, "1")
    return Formula(f"gain({nonlinearity})", symbol, symbol, gain), symbol


# -- measurement ------------------------------------------------------------------------------


def draw(resolved: Theory, samples: int) -> np.ndarray:
    """`samples` weights drawn through the initializer itself: as many whole (fan_in, fan_out)
    matrices as needed, flattened, the first `samples` kept."""
    per_call = resolved.fan_in * resolved.fan_out
    if per_call > MAX_DRAW:
        raise UsageError(
            f"fan_in × fan_out = {resolved.fan_in} × {resolved.fan_out} = {per_call} values per "
            f"draw; at most {MAX_DRAW}"
        )
    initializer = init.get_initializer(resolved.scheme)
    kwargs = resolved.initializer_kwargs()
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
        scheme, fan_in, fan_out, nonlinearity=nonlinearity, param=param, mode=mode, gain=gain
    )
    samples = _positive_int(samples, "samples")
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


def histogram(resolved: Theory, weights: np.ndarray, bins: int = DEFAULT_BINS) -> Histogram:
    """Bin the draws over the support (±bound for uniform, ±4σ for normal)."""
    bins = _positive_int(bins, "bins")
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


# -- depth propagation ------------------------------------------------------------------------


def _leaky_relu(slope: float) -> Callable[[Tensor], Tensor]:
    # max(x, 0) + a·min(x, 0) = relu(x) − a·relu(−x)
    return lambda x: ops.relu(x) - ops.relu(-x) * slope


def _selu(x: Tensor) -> Tensor:
    # λ·(x for x > 0, α·(eˣ − 1) otherwise) = λ·(relu(x) − α·relu(1 − eˣ))
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    return (ops.relu(x) - ops.relu(1 - ops.exp(x)) * alpha) * scale


def activation(nonlinearity: str, param: float | None = None) -> Callable[[Tensor], Tensor]:
    """The nonlinearity as a function of Tensors, built from needle's modules and ops."""
    modules: dict[str, Callable[[], Callable[[Tensor], Tensor]]] = {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "linear": nn.Identity,
        "identity": nn.Identity,
        "leaky_relu": lambda: _leaky_relu(init.LEAKY_RELU_SLOPE if param is None else param),
        "selu": lambda: _selu,
    }
    if nonlinearity not in modules:
        raise unknown_choice("nonlinearity for a layer stack", nonlinearity, modules)
    return modules[nonlinearity]()


# E[φ(z)²]/Var(z) for z ~ N(0, σ²), which for these (positively homogeneous) φ also equals
# E[φ'(z)²]: the share of the signal's variance a layer's nonlinearity keeps.
def _kept_variance(nonlinearity: str, param: float | None) -> float | None:
    if nonlinearity == "relu":
        return 0.5
    if nonlinearity == "leaky_relu":
        slope = init.LEAKY_RELU_SLOPE if param is None else param
        return (1 + slope**2) / 2
    if nonlinearity in ("linear", "identity"):
        return 1.0
    return None


def expected_signal(
    resolved: Theory, nonlinearity: str, param: float | None, depth: int
) -> list[tuple[float | None, float | None]]:
    """(forward, backward) std per layer that the variance argument predicts, for a unit
    input and a unit cotangent: with r = fan·Var(W) and c = E[φ(z)²]/Var(z),

        Var(z_1) = r,          Var(z_l) = r·c·Var(z_{l−1});
        Var(∂L/∂z_L) = c,      Var(∂L/∂z_l) = r·c·Var(∂L/∂z_{l+1}).
    """
    c = _kept_variance(nonlinearity, param)
    if c is None:
        return [(None, None)] * depth
    r = resolved.fan_in * resolved.std**2  # square layers: fan_in = fan_out
    forward = [r * _power(r * c, layer - 1) for layer in range(1, depth + 1)]
    backward = [c * _power(r * c, depth - layer) for layer in range(1, depth + 1)]
    return [(math.sqrt(f), math.sqrt(b)) for f, b in zip(forward, backward, strict=True)]


def _power(base: float, exponent: int) -> float:
    # A deep stack's predicted variance can pass the largest float: that is inf, not a crash.
    try:
        return base**exponent
    except OverflowError:
        return math.inf


def stack_size(depth: int, width: int, batch: int = DEFAULT_BATCH) -> tuple[int, int, int]:
    """(depth, width, batch) checked, before anything is built: each a positive integer,
    depth at most `MAX_DEPTH`, and the stack's weights and activations, depth·width·(width +
    batch) values, at most `MAX_STACK_VALUES`."""
    depth, width = _positive_int(depth, "depth"), _positive_int(width, "width")
    batch = _positive_int(batch, "batch")
    if depth > MAX_DEPTH:
        raise UsageError(f"depth must be at most {MAX_DEPTH} (got {depth})")
    values = depth * width * (width + batch)
    if values > MAX_STACK_VALUES:
        raise UsageError(
            f"a stack of depth {depth} and width {width} (batch {batch}) holds depth × width × "
            f"(width + batch) = {values} weights and activations; at most {MAX_STACK_VALUES}"
        )
    return depth, width, batch


def propagate(
    scheme: str,
    *,
    depth: int,
    width: int = 256,
    batch: int = DEFAULT_BATCH,
    nonlinearity: str | None = None,
    param: float | None = None,
    mode: str | None = None,
    gain: float | None = None,
    seed: int = 0,
) -> Propagation:
    """Push a unit-variance batch x ~ N(0, 1) of shape (batch, width) through `depth` layers
    h_l = φ(z_l), z_l = h_{l−1} W_l (Linear without bias, W_l drawn with `scheme`), then
    backward from a unit-variance cotangent on h_L.

    With Var(W) = gain²/fan, Var(z_{l+1}) = fan·Var(W)·E[φ(z_l)²]: for relu E[φ(z)²] =
    Var(z)/2, so Kaiming (gain √2) keeps Var(z) steady while Xavier (gain 1, fan_in = fan_out)
    halves it every layer. The backward pass mirrors this with fan_out.

    `nonlinearity` is the stack's φ (default relu) and, for kaiming schemes, the gain's source.
    `depth` is at most `MAX_DEPTH`, and the stack at most `MAX_STACK_VALUES` (`stack_size`).
    """
    depth, width, batch = stack_size(depth, width, batch)
    phi_name = nonlinearity or "relu"
    phi = activation(phi_name, param)
    kaiming = scheme.startswith("kaiming")
    resolved = theory(
        scheme,
        width,
        width,
        nonlinearity=phi_name if kaiming else None,
        param=param if kaiming else None,
        mode=mode,
        gain=gain,
    )
    initializer = init.get_initializer(scheme)
    kwargs = resolved.initializer_kwargs()
    with init.seeded(seed):
        # The gradient flows back to the input, not to the weights: only ∂L/∂z is measured.
        x = init.randn(batch, width, dtype="float64", requires_grad=True)
        cotangent = init.randn(batch, width, dtype="float64")
        weights = [initializer(width, width, dtype="float64", **kwargs) for _ in range(depth)]
    expected = expected_signal(resolved, phi_name, param, depth)
    # An exploding stack is a result too: its infs and nans are measured, not warned about.
    with np.errstate(over="ignore", invalid="ignore"):
        h, pre_activations = x, []
        for weight in weights:
            z = ops.matmul(h, weight)  # a Linear layer without bias
            pre_activations.append(z)
            h = phi(z)
        h.backward(cotangent)
        signals = tuple(
            LayerSignal(
                layer=i + 1,
                forward_std=float(np.std(z.numpy())),
                backward_std=float(np.std(z.grad.numpy())) if z.grad is not None else 0.0,
                expected_forward_std=expected[i][0],
                expected_backward_std=expected[i][1],
            )
            for i, z in enumerate(pre_activations)
        )
    return Propagation(
        theory=resolved,
        activation=phi_name,
        depth=depth,
        width=width,
        batch=batch,
        seed=seed,
        input_std=float(np.std(x.numpy())),
        output_grad_std=float(np.std(cotangent.numpy())),
        layers=signals,
    )


# -- several schemes side by side ---------------------------------------------------------------

# The options only one family of schemes takes.
_FAMILY_OPTIONS = {"gain": "xavier", "mode": "kaiming", "param": "kaiming"}


def survey(
    schemes: Sequence[str],
    *,
    fan_in: int = 256,
    fan_out: int = 256,
    nonlinearity: str | None = None,
    param: float | None = None,
    mode: str | None = None,
    gain: float | None = None,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    depth: int | None = None,
    width: int = 256,
    route_options: bool = False,
) -> list[SchemeReport]:
    """`init_stats` of each scheme and, given a `depth`, `propagate` through a stack of `depth`
    layers of `width` built with it, all from the same seed (so every stack sees the same
    input batch).

    `nonlinearity` is the stack's activation and kaiming's gain source; a leaky_relu stack
    takes `param` as its slope, whatever the scheme. With `route_options` each scheme takes
    the options its family takes (`gain`: xavier; `mode`, `param`: kaiming), and an option no
    listed scheme takes is an error; without, every option goes to every scheme, and `theory`
    refuses one that does not apply.
    """
    if len(set(schemes)) != len(schemes):
        raise UsageError(f"a scheme is listed twice: {', '.join(schemes)}")
    options = {"nonlinearity": nonlinearity, "param": param, "mode": mode, "gain": gain}
    stack = depth is not None
    if stack:  # refused before any scheme's draws, not after them
        stack_size(depth, width)
    routed = [_scheme_options(s, options, stack=stack, route=route_options) for s in schemes]
    if route_options:
        taken = {key for _, stack_options in routed for key in stack_options}
        for option, family in _FAMILY_OPTIONS.items():
            if options[option] is not None and option not in taken:
                raise UsageError(
                    f"{option} applies to {family}_* schemes, and none is compared "
                    f"({', '.join(schemes)})"
                )
    reports = []
    for scheme, (stats_options, stack_options) in zip(schemes, routed, strict=True):
        stats = init_stats(scheme, fan_in, fan_out, samples=samples, seed=seed, **stats_options)
        propagation = None
        if stack:
            propagation = propagate(scheme, depth=depth, width=width, seed=seed, **stack_options)
        reports.append(SchemeReport(stats, propagation))
    return reports


def _scheme_options(
    scheme: str, options: dict[str, Any], *, stack: bool, route: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options of `options` that are given, split for one scheme into (those of its
    weights' statistics, those of its stack)."""
    xavier = scheme.startswith("xavier")
    stack_slope = stack and options["nonlinearity"] == "leaky_relu"
    left_out = set()
    if route:
        left_out = {key for key, family in _FAMILY_OPTIONS.items() if not scheme.startswith(family)}
    if stack_slope:
        left_out.discard("param")
    stack_options = {k: v for k, v in options.items() if v is not None and k not in left_out}
    stack_only = set()
    if xavier:  # its weights depend on gain alone: the activation and its slope are the stack's
        stack_only = {"nonlinearity", "param"} if stack_slope else {"nonlinearity"}
    stats_options = {k: v for k, v in stack_options.items() if k not in stack_only}
    return stats_options, stack_options


# -- a config's Linear layers -----------------------------------------------------------------


def config_layer_stats(config: Any, *, bins: int = DEFAULT_BINS) -> list[LinearLayerStats]:
    """For each Linear layer of the model a training config builds (built as training builds
    it, after seeding numpy with `config.seed`), its weight against the theory of the
    initializer the config gives that layer. Layers are named by their place in the config,
    e.g. "model.layers[2].residual.layers[0]"."""
    from needle.build import build_model
    from needle.config import Linear, dotted, walk_layers
    from needle.datasets import load_data

    data = load_data(config)
    with init.seeded(config.seed):
        model = build_model(config, data.in_features, data.num_classes)
    specs = [
        (path, layer)
        for path, layer in walk_layers(config.model.layers, ("model", "layers"))
        if isinstance(layer, Linear)
    ]
    results = []
    # build_model constructs layers in config order, so the n-th Linear module is the n-th
    # Linear entry of the config.
    linears = [module for _, module in model.named_modules() if isinstance(module, nn.Linear)]
    for (path, spec), module in zip(specs, linears, strict=True):
        scheme, args = config.model.initializer(spec)
        resolved = theory(scheme, module.in_features, module.out_features, **args)
        stats = measure(resolved, module.weight.numpy(), seed=config.seed, bins=bins)
        results.append(LinearLayerStats(name=dotted(path), stats=stats))
    return results
