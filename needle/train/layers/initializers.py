"""The initializer settings a weight-drawing layer takes (`init`, `init_args`), checked against
the initializer's own signature."""

from __future__ import annotations

import inspect
import math
from typing import Any

from needle import init
from needle.errors import did_you_mean
from needle.train.fields import check_choice, field_error
from needle.train.source import KeyPath, show_value

# The initializer arguments a config may pass: what each initializer takes besides the fans,
# minus what the model builder decides (dtype, device, requires_grad, the shape of the draw).
_BUILDER_KWARGS = {"dtype", "device", "requires_grad", "shape"}


def initializer_arguments(name: str) -> list[str]:
    """The keyword arguments the initializer `name` accepts from a config."""
    params = inspect.signature(init.get_initializer(name)).parameters.values()
    return [
        p.name
        for p in params
        if p.name not in ("fan_in", "fan_out")
        and p.kind is not p.VAR_KEYWORD
        and p.name not in _BUILDER_KWARGS
    ]


def check_init_args(name: str, args: dict[str, Any], at: KeyPath) -> None:
    """Raise a positioned error for the first argument `name` cannot take."""
    valid = initializer_arguments(name)
    for key, value in args.items():
        here = at + (key,)
        if key not in valid:
            hint = did_you_mean(str(key), valid) or f" valid: {', '.join(valid)}"
            raise field_error(
                f"{name} takes no argument {show_value(key)};{hint}", at=here, key=True
            )
        if key == "nonlinearity":
            if not isinstance(value, str):
                raise field_error(f"must be a nonlinearity name (got {show_value(value)})", at=here)
            check_choice("nonlinearity", init.NONLINEARITIES, value, at=here)
        elif key == "mode":
            if not isinstance(value, str):
                raise field_error(f"must be fan_in or fan_out (got {show_value(value)})", at=here)
            check_choice("mode", init.FAN_MODES, value, at=here)
        elif key in ("gain", "param"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise field_error(f"must be a number (got {show_value(value)})", at=here)
            if not math.isfinite(value) or (key == "gain" and value <= 0):
                raise field_error(
                    f"must be a finite number{' > 0' * (key == 'gain')} (got {show_value(value)})",
                    at=here,
                )
