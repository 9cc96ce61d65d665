"""What a gradient check found: plain data, for the CLI to render or a test to assert."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class InputReport:
    """How one input's analytic gradient compares with the numerical one, at one order:
    1 for the gradient, 2 for the gradient of ⟨w, gradient⟩ (second derivatives)."""

    index: int
    shape: tuple[int, ...]
    max_abs_error: float
    # Over the values that are not zeros; None when all are (a gradient that is 0).
    max_rel_error: float | None
    worst_index: tuple[int, ...] | None  # element (or projection number with --fast)
    analytic: float  # at the worst element: the one furthest beyond its tolerance
    numerical: float
    tolerance: float  # atol + rtol·|numerical| + rounding floor, at the worst element
    passed: bool
    checked: int  # elements (or projections) compared
    zeros: int = 0  # of them, 0 within rounding on both sides: no relative error to speak of
    nondifferentiable: tuple[tuple[int, ...], ...] = ()
    problem: str | None = None  # a failure that is not a number: a wrong gradient shape
    order: int = 1


@dataclass(frozen=True)
class GradcheckReport:
    """One check: `inputs` compares each input's gradient; with `order` 2, `second_order`
    also compares each input's second derivatives. It passes when every comparison does."""

    inputs: tuple[InputReport, ...]
    dtype: str
    order: int
    fast: bool
    eps: float
    atol: float
    rtol: float
    seed: int
    label: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    input_names: tuple[str, ...] = ()  # one per input: "a", "b", "modules.0.weight", or "0"
    second_order: tuple[InputReport, ...] = ()
    scale: float = 1.0  # what the sample inputs were multiplied by (check_op)

    @property
    def comparisons(self) -> tuple[InputReport, ...]:
        """Every comparison made: the first order's, then the second order's."""
        return self.inputs + self.second_order

    @property
    def passed(self) -> bool:
        return all(report.passed for report in self.comparisons)

    @property
    def failing_inputs(self) -> list[int]:
        """Inputs whose gradient disagrees."""
        return [report.index for report in self.inputs if not report.passed]

    @property
    def failing_second_order(self) -> list[int]:
        """Inputs whose second derivatives disagree (order 2 only)."""
        return [report.index for report in self.second_order if not report.passed]

    @property
    def elements(self) -> int:
        """Elements of all the inputs together: a model's parameter count."""
        return sum(math.prod(report.shape) for report in self.inputs)

    @property
    def checked(self) -> int:
        """Elements (or projections) compared, over all the inputs and orders."""
        return sum(report.checked for report in self.comparisons)

    @property
    def kinks(self) -> int:
        """Non-differentiable points found (and not counted as errors), over all the inputs
        and orders."""
        return sum(len(report.nondifferentiable) for report in self.comparisons)

    @property
    def max_abs_error(self) -> float:
        return max(report.max_abs_error for report in self.comparisons)

    @property
    def max_rel_error(self) -> float | None:
        """Over every comparison that has one; None when every gradient is 0."""
        errors = [r.max_rel_error for r in self.comparisons if r.max_rel_error is not None]
        return max(errors, default=None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data
