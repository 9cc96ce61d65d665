"""The gradient check's tolerances and step, and the settings under which it cannot fail."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from needle.errors import UsageError

# Tolerances by the dtype of the analytic computation: float32 rounds at ~6e-8 per
# operation, so it gets looser bounds than float64 rather than failing falsely.
DEFAULT_TOLERANCES = {
    "float64": {"atol": 1e-5, "rtol": 1e-3},
    "float32": {"atol": 1e-4, "rtol": 5e-3},
}
DEFAULT_EPS = 1e-6


def default_tolerances(dtype: str) -> dict[str, float]:
    """`{"atol": …, "rtol": …}` for an analytic computation in `dtype` (a dtype's name);
    float32's for any dtype without its own."""
    return DEFAULT_TOLERANCES.get(dtype, DEFAULT_TOLERANCES["float32"])


def validate_tolerances(
    *, eps: float = DEFAULT_EPS, atol: float | None = None, rtol: float | None = None
) -> None:
    """Raise `UsageError` unless `eps` is in (0, 1) and `atol`, `rtol` are finite and ≥ 0
    (None: the dtype's default). An infinite or nan tolerance makes a check that cannot
    fail; a step of nan, inf or ≥ |x| measures nothing."""
    if not (_is_number(eps) and 0 < eps < 1):
        raise UsageError(f"eps must be a number in (0, 1) (got {eps})")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and not (_is_number(value) and 0 <= value < math.inf):
            raise UsageError(f"{name} must be a finite number ≥ 0 (got {value})")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
