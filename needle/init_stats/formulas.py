"""What a scheme promises: `theory` resolves a scheme of `needle.init` with its fans and options
into the distribution it should draw from, each formula written out with its numbers filled
in.

    >>> theory("kaiming_uniform", 256, 256).scale.text
    'bound = gain·√(3/fan_in) = √2·√(3/256) = 0.1531'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from needle import init
from needle.errors import UsageError, unknown_choice
from needle.init_stats.distributions import normal_cdf, uniform_cdf

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
        if exact:
            return " = ".join(parts)
        value = str(self.value) if isinstance(self.value, int) else f"{self.value:.4f}"  # fans
        return " = ".join(parts) + f" = {value}"

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
    kernel: int | None = None  # a conv kernel's K: the fans are channels·K², drawn (K, K, in, out)

    @property
    def draw_shape(self) -> tuple[int, ...]:
        """The shape of one draw: (fan_in, fan_out), or a conv kernel's (K, K, in, out)."""
        if self.kernel is None:
            return (self.fan_in, self.fan_out)
        k2 = self.kernel**2
        return (self.kernel, self.kernel, self.fan_in // k2, self.fan_out // k2)

    @property
    def fans(self) -> tuple[Formula, ...]:
        """For a conv kernel, fan_in = in·K² and fan_out = out·K² with their numbers; else
        none (the fans are given)."""
        if self.kernel is None:
            return ()
        k, (_, _, c_in, c_out) = self.kernel, self.draw_shape
        return (
            Formula("fan_in", "in·K²", f"{c_in}·{k}²", self.fan_in),
            Formula("fan_out", "out·K²", f"{c_out}·{k}²", self.fan_out),
        )

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
            return (*self.fans, self.gain, self.scale)
        bound = self.scale.value
        std = Formula("std", "bound/√3", f"{bound:.4f}/√3", self.std)
        return (*self.fans, self.gain, self.scale, std)

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


# Gains in closed form, written as they read in the papers.
_GAIN_SYMBOLS = {"tanh": "5/3", "relu": "√2", "selu": "3/4"}
# scheme: (distribution, the scale it sets, that scale's formula as it reads, and the function
# of needle.init that computes it for the initializer; {fan} is fan_in or fan_out by mode).
# The formula is text only: the scale's value comes from needle.init.
_SCHEMES: dict[str, tuple[str, str, str, Callable[..., float]]] = {
    "xavier_uniform": (UNIFORM, "bound", "gain·√(6/(fan_in+fan_out))", init.xavier_uniform_bound),
    "xavier_normal": (NORMAL, "std", "gain·√(2/(fan_in+fan_out))", init.xavier_normal_std),
    "kaiming_uniform": (UNIFORM, "bound", "gain·√(3/{fan})", init.kaiming_uniform_bound),
    "kaiming_normal": (NORMAL, "std", "gain/√{fan}", init.kaiming_normal_std),
}


def positive_int(value: Any, name: str) -> int:
    """`value` as an int, refused unless it is a positive integer (fans, samples, sizes)."""
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
    kernel: int | None = None,
) -> Theory:
    """The distribution `scheme` promises for a (fan_in, fan_out) weight.

    xavier_* take `gain` (default 1); kaiming_* take their gain from `nonlinearity` (default
    relu) and `param` (leaky_relu's negative slope), and divide by the fan `mode` names
    (default fan_in). Options a scheme does not take are errors, not silently ignored.

    With a conv `kernel` K, `fan_in` and `fan_out` are the channels in and out, and the
    weight a (K, K, in, out) kernel: each output sums in·K² inputs, each input reaches out·K²
    outputs, so the fans are in·K² and out·K² (as `nn.Conv` draws them).
    """
    init.get_initializer(scheme)  # an unknown name gets needle's did-you-mean
    if scheme not in _SCHEMES:
        raise unknown_choice("initializer with a known distribution", scheme, _SCHEMES)
    fan_in, fan_out = positive_int(fan_in, "fan_in"), positive_int(fan_out, "fan_out")
    if kernel is not None:
        kernel = positive_int(kernel, "kernel")
        fan_in, fan_out = fan_in * kernel**2, fan_out * kernel**2
    distribution, quantity, expression, scale = _SCHEMES[scheme]
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
        value = scale(fan_in, fan_out, g)
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
            if not math.isfinite(init.leaky_relu_slope(param)):
                raise UsageError(f"param must be a finite number (got {param})")
        g = init.calculate_gain(nonlinearity, param)
        gain_formula, symbol = _gain_formula(nonlinearity, param, g)
        expression = expression.format(fan=mode)
        fans = {mode: str(fan)}
        value = scale(fan, g)
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
        kernel=kernel,
    )


def _gain_formula(nonlinearity: str, param: float | None, gain: float) -> tuple[Formula, str]:
    """The gain as a formula line and as the symbol substituted into the scale formula."""
    if nonlinearity == "leaky_relu":
        slope = init.leaky_relu_slope(param)
        formula = Formula(
            f"gain(leaky_relu, a={slope:g})", "√(2/(1+a²))", f"√(2/(1+{slope:g}²))", gain
        )
        return formula, f"{gain:.4f}"
    symbol = _GAIN_SYMBOLS.get(nonlinearity, "1")
    return Formula(f"gain({nonlinearity})", symbol, symbol, gain), symbol
