"""Check analytic gradients against numerical differentiation.

The analytic side is needle's backward pass under a random cotangent `v` (so a backward
that ignores `out_grad` fails): for each input, `g = Jᵀv`. The numerical side
differentiates `φ(x) = ⟨v, f(x)⟩` by central differences in float64, with a step scaled to
each element's magnitude, `h = eps · max(1, |x|)`.

The tolerances follow from the step and the precision of each side
(`needle.gradcheck.tolerances`): in float64 a gradient 1e-7 off fails. `check_op` checks a
registered op or an op class of one's own on sample inputs, `check_module` every parameter
of a module; with `order=2` the gradient's own gradient is checked as well.

Where the two one-sided differences disagree (relu at 0, a tie of a max), `φ` has a kink:
such an element is reported as a non-differentiable point, not as a gradient error.

    >>> import numpy as np, needle as ndl
    >>> from needle.gradcheck import check_gradients
    >>> report = check_gradients(lambda x: ndl.logsumexp(x, axes=(1,)), [np.ones((2, 3))])
    >>> report.passed
    True
"""

from needle.gradcheck.check import check_gradients
from needle.gradcheck.report import GradcheckReport, InputReport
from needle.gradcheck.targets import (
    MODEL_ELEMENTWISE_LIMIT,
    check_all,
    check_model,
    check_module,
    check_op,
    check_scale,
    op_input_names,
)
from needle.gradcheck.tolerances import (
    DEFAULT_EPS,
    default_tolerances,
    rounding_floor,
    unit_roundoff,
    validate_tolerances,
)
from needle.gradcheck.user_ops import DRAWS, op_spec

__all__ = [
    "DRAWS",
    "DEFAULT_EPS",
    "MODEL_ELEMENTWISE_LIMIT",
    "GradcheckReport",
    "InputReport",
    "check_all",
    "check_gradients",
    "check_model",
    "check_module",
    "check_op",
    "check_scale",
    "default_tolerances",
    "op_input_names",
    "op_spec",
    "rounding_floor",
    "unit_roundoff",
    "validate_tolerances",
]
