"""The gradient check's tolerances, derived from its step and the precision of each side.

The numerical side differentiates `φ(x) = Σ_i v_i·f_i(x)` in float64 by central differences
with the step `h = eps·max(1, |x|)`. It errs in two ways:

- truncation: `(φ(x+h) − φ(x−h)) / 2h = φ'(x) + h²·φ'''(ξ)/6`, an error of about
  `h²·|φ'''|/6`: relative to `|φ'|`, `eps²·K/6` with `K = max(1, |x|)²·|φ'''/φ'|`, how
  sharply φ bends at the scale of x. On needle's sample inputs K stays below about 10²
  (`power_scalar` with exponent −1.5 at x = 0.5 has K = 8.75, `log` at 0.5 has 8);
  `SMOOTHNESS` = 10⁴ leaves room for any smooth op at inputs that are not near a pole.
- rounding: each evaluation of φ is off by a few `ε·Φ`, where `ε = 2⁻⁵³` is float64's unit
  roundoff and `Φ = Σ_i |v_i·f_i(x)|` the size of the terms φ adds up; the difference of two
  evaluations, divided by 2h, is off by about `ε·Φ/h`.

The analytic side, computed in a dtype with unit roundoff `u` (2⁻⁵³ for float64, 2⁻²⁴ for
float32), is off by about `u·κ·|g|`, where κ counts the roundings on the way to the gradient
and their conditioning (`OPERATIONS` = 10³ allows a long chain), plus, where a sum in the
gradient cancels, `u` times the size of its terms, which `Φ/max(1, |x|)` bounds.

So an element passes when

    |analytic − numerical| ≤ atol + rtol·|numerical| + floor
    rtol  = eps²·SMOOTHNESS/6 + u·OPERATIONS
    floor = (R·ε/h + R'·u/max(1, |x|))·Φ

With the default step eps = 1e-6, rtol is 1.7e-9 in float64 (an error of 1e-7 fails, and
one of 0.1 % by far) and 6.0e-5 in float32 (the float32 analytic side cannot do better).
The floor is what rounding alone explains, computed for each element from the inputs and
the output, so it grows and shrinks with them: inputs scaled by 1e30 change magnitudes, not
the verdict. R and R' count roundings in units of Φ, on the numerical and the analytic
side. At order 1, R = R' = 16: one evaluation of φ is a forward pass (over 100 seeds of
every op, and over MLPs with 784 inputs, at most 2 were needed). At order 2 φ is itself a
gradient: each evaluation is a forward and a backward pass whose sums cancel (softmax's
gradient is s·(v − Σv·s)), so Φ = Σ|w·g| understates what is rounded; R = 16384 and
R' = 1024 (up to ~3,800 and ~35 were needed).

The floor is also where "exactly 0" lives: a gradient that is 0 (a bias before a batch
norm) comes out at 1e-18 on one side and 1e-11 on the other, a relative error of 1 that
means nothing, and both lie under the floor. Such elements are counted as zeros and left out
of the relative error. atol, 0 by default, adds an absolute allowance on top.

The inputs are rounded to the analytic side's dtype before either side sees them, so both
differentiate at the same point.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from needle.errors import UsageError

DEFAULT_EPS = 1e-6
# Float64's unit roundoff: the precision of the numerical side.
NUMERICAL_ROUNDOFF = 2.0**-53
# K: the largest max(1, |x|)²·|φ'''/φ'| the default rtol allows for (see the module's doc).
SMOOTHNESS = 1e4
# κ: the roundings and conditioning on the analytic side's way to a gradient element.
OPERATIONS = 1e3
# R: roundings, in units of Φ, that the floor allows one evaluation of φ, by order (see the
# module's doc for what was measured).
NUMERICAL_ROUNDINGS = {1: 16.0, 2: 16384.0}
# R': the same for the analytic side's sums, at its own precision, by order.
ANALYTIC_ROUNDINGS = {1: 16.0, 2: 1024.0}


def unit_roundoff(dtype: Any) -> float:
    """Half the distance from 1 to the next number: 2⁻⁵³ for float64, 2⁻²⁴ for float32."""
    return float(np.finfo(dtype).eps) / 2


def default_tolerances(dtype: Any, eps: float = DEFAULT_EPS) -> dict[str, float]:
    """`{"atol": 0, "rtol": eps²·SMOOTHNESS/6 + u·OPERATIONS}` for an analytic side in
    `dtype` (a name or a numpy dtype) and the step `eps`; see the module's doc."""
    rtol = eps**2 * SMOOTHNESS / 6 + unit_roundoff(dtype) * OPERATIONS
    return {"atol": 0.0, "rtol": rtol}


def rounding_floor(
    magnitude: np.ndarray | float,
    h: np.ndarray | float,
    terms: float,
    dtype: Any,
    order: int = 1,
) -> np.ndarray | float:
    """What rounding alone can put between the two sides, for inputs of size `magnitude`
    (|x|) differenced with step `h`, when φ's terms add up to `terms` in size (Φ):
    `(R·ε/h + R'·u/max(1, |x|))·Φ`, R and R' = NUMERICAL_ROUNDINGS and ANALYTIC_ROUNDINGS
    of `order`."""
    numerical = NUMERICAL_ROUNDINGS[order] * NUMERICAL_ROUNDOFF / h
    analytic = ANALYTIC_ROUNDINGS[order] * unit_roundoff(dtype) / np.maximum(1.0, magnitude)
    return (numerical + analytic) * terms


def validate_tolerances(
    *, eps: float = DEFAULT_EPS, atol: float | None = None, rtol: float | None = None
) -> None:
    """Raise `UsageError` unless `eps` is in (0, 1) and `atol`, `rtol` are finite and ≥ 0
    (None: the dtype's default). An infinite or nan tolerance makes a check that cannot
    fail; a step of nan, inf or ≥ |x| measures nothing."""
    if not (is_number(eps) and 0 < eps < 1):
        raise UsageError(f"eps must be a number in (0, 1) (got {eps})")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and not (is_number(value) and 0 <= value < math.inf):
            raise UsageError(f"{name} must be a finite number ≥ 0 (got {value})")


def is_number(value: Any) -> bool:
    """A real number, not a bool (which Python counts as an int)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
