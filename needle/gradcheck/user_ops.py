"""An op class that is not in the registry (a learner's own `TensorOp`), described as the
registry describes its ops, so that `check_op` checks it the same way.

What the class tells: its inputs are the arguments of `compute` after `self` (their names
name the inputs); its parameters are the arguments of `__init__`, each required unless it
has a default. What it cannot tell is where it is defined, so inputs are drawn by `draw`:
"normal" (standard normal), "positive" ([0.5, 2), for log and roots) or "away_from_zero"
(±[0.5, 2), clear of kinks and poles at 0), in shapes (3, 4) unless given.
"""

from __future__ import annotations

import inspect
from typing import Any

from needle.autograd import TensorOp
from needle.errors import UsageError, unknown_choice
from needle.ops.registry import (
    REQUIRED,
    OpParam,
    OpSpec,
    Setting,
    away_from_zero,
    elementwise_case,
    normal,
    positive,
)

DRAWS = {"normal": normal, "positive": positive, "away_from_zero": away_from_zero}
DEFAULT_SHAPE = (3, 4)

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def op_spec(op_class: Any, *, draw: str = "normal", n_inputs: int | None = None) -> OpSpec:
    """An `OpSpec` for `op_class`, a `TensorOp` subclass. `n_inputs` is read only when
    `compute` takes `*args` (which say nothing of how many)."""
    if not (isinstance(op_class, type) and issubclass(op_class, TensorOp)):
        what = op_class.__name__ if isinstance(op_class, type) else type(op_class).__name__
        raise UsageError(f"{what} is not a TensorOp subclass; gradcheck checks op classes")
    if draw not in DRAWS:
        raise unknown_choice("draw", draw, DRAWS)
    name = op_class.__name__
    inputs = _inputs(op_class, n_inputs)
    params = tuple(
        OpParam(p.name, "value", f"{name}'s argument {p.name}", _default(p))
        for p in _arguments(op_class.__init__)
    )

    def function(*tensors: Any, **kwargs: Any) -> Any:
        return op_class(**kwargs)(*tensors)

    # The signature `op_input_names` reads: the inputs by compute's names (*args has none:
    # its inputs are named by position), then the params.
    named = [i for i in inputs if i.isidentifier()]
    arrays = [inspect.Parameter(i, inspect.Parameter.POSITIONAL_OR_KEYWORD) for i in named]
    if len(named) < len(inputs):
        arrays.append(inspect.Parameter("arrays", inspect.Parameter.VAR_POSITIONAL))
    function.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        arrays + [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY) for p in params]
    )
    return OpSpec(
        name=name,
        op_class=op_class,
        function=function,
        n_inputs=len(inputs),
        params=params,
        shapes_for=lambda _params: [DEFAULT_SHAPE] * len(inputs),
        random_case=elementwise_case(len(inputs)),
        draws=(DRAWS[draw],) * len(inputs),
        settings=(Setting({}),),
        summary=(op_class.__doc__ or "").strip().partition("\n")[0],
    )


def _arguments(method: Any) -> list[inspect.Parameter]:
    """A method's named arguments after `self` (not *args, **kwargs)."""
    if method is object.__init__:
        return []
    parameters = list(inspect.signature(method).parameters.values())[1:]
    named = (*_POSITIONAL, inspect.Parameter.KEYWORD_ONLY)
    return [p for p in parameters if p.kind in named]


def _default(parameter: inspect.Parameter) -> Any:
    return REQUIRED if parameter.default is inspect.Parameter.empty else parameter.default


def _inputs(op_class: type, n_inputs: int | None) -> list[str]:
    """The names of `compute`'s array arguments, or "0", "1", … for `*args`."""
    parameters = list(inspect.signature(op_class.compute).parameters.values())[1:]
    names = [p.name for p in parameters if p.kind in _POSITIONAL]
    rest = [p.name for p in parameters if p.kind is inspect.Parameter.VAR_POSITIONAL]
    if rest and n_inputs is None:
        raise UsageError(
            f"{op_class.__name__}.compute takes *{rest[0]}: give one shape per input "
            "(--shape, repeated)"
        )
    if rest:
        return names + [str(i) for i in range(len(names), n_inputs)]
    if not names:
        raise UsageError(f"{op_class.__name__}.compute takes no input arrays")
    return names
