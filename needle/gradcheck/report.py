"""What a gradient check found: plain data, for the CLI to render or a test to assert."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class InputReport:
    """How one input's analytic gradient compares with the numerical one."""

    index: int
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple[int, ...] | None  # element (or projection number with --fast)
    analytic: float  # at the worst element
    numerical: float
    passed: bool
    checked: int  # elements (or projections) compared
    nondifferentiable: tuple[tuple[int, ...], ...] = ()
    problem: str | None = None  # a failure that is not a number: a wrong gradient shape


@dataclass(frozen=True)
class GradcheckReport:
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

    @property
    def passed(self) -> bool:
        return all(report.passed for report in self.inputs)

    @property
    def failing_inputs(self) -> list[int]:
        return [report.index for report in self.inputs if not report.passed]

    @property
    def elements(self) -> int:
        """Elements of all the inputs together: a model's parameter count."""
        return sum(math.prod(report.shape) for report in self.inputs)

    @property
    def checked(self) -> int:
        """Elements (or projections) compared, over all the inputs."""
        return sum(report.checked for report in self.inputs)

    @property
    def kinks(self) -> int:
        """Non-differentiable points found (and not counted as errors), over all the inputs."""
        return sum(len(report.nondifferentiable) for report in self.inputs)

    @property
    def max_abs_error(self) -> float:
        return max(report.max_abs_error for report in self.inputs)

    @property
    def max_rel_error(self) -> float:
        return max(report.max_rel_error for report in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data
