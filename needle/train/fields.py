"""The building blocks of config sections: `Strict` models, our own error wording, and
the number types every section uses."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from needle.errors import did_you_mean, unknown_choice
from needle.train.source import KeyPath, show_value

# -- schema ----------------------------------------------------------------------------------


class Strict(BaseModel):
    """A config section: strict types, finite numbers, unknown keys refused with a suggestion."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            # a layer's `type` is filled in from its key by _normalize_layer, never written
            names = [name for name in cls.model_fields if name != "type"]
            for key in data:
                if key not in cls.model_fields:
                    raise field_error(
                        f"unknown key {show_value(key)};"
                        + (did_you_mean(str(key), names) or f" valid keys: {', '.join(names)}"),
                        at=(key,),
                        key=True,
                    )
        return data


def field_error(
    message: str, *, at: KeyPath = (), key: bool = False, show: bool = True
) -> PydanticCustomError:
    """A validation error with our own wording, pointing `at` a path below the validated value
    (on its key with `key=True`; `show=False` keeps `at` out of the key path shown). The
    message is final: no "(got ...)" is appended."""
    context = {"needle_at": list(at), "needle_key": key, "needle_show": show}
    return PydanticCustomError("needle", message, context)


def check_choice(kind: str, choices: Iterable[str], value: str, *, at: KeyPath = ()) -> str:
    """`value` if it names one of `choices`, else the registry's own error (with a
    did-you-mean) pointing `at` a path below the validated value."""
    if value not in choices:
        raise field_error(str(unknown_choice(kind, value, choices)), at=at)
    return value


Positive = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


def _interval(low: float, high: float, *, open_low: bool = False) -> Any:
    """A float type for [low, high), or (low, high) with `open_low`: a mistake gets one
    message naming both bounds (pydantic's own names only the bound crossed), and the JSON
    Schema gets the same bounds."""
    shown = f"{'(' if open_low else '['}{low:g}, {high:g})"

    def check(written: Any, as_float: Callable[[Any], float]) -> float:
        value = as_float(written)  # type and finiteness first, with their own messages
        if not ((low < value) if open_low else (low <= value)) or not value < high:
            raise field_error(f"must be in {shown} (got {show_value(written)})")
        return value

    lower = "exclusiveMinimum" if open_low else "minimum"
    schema = {"type": "number", lower: low, "exclusiveMaximum": high}
    return Annotated[float, WrapValidator(check), WithJsonSchema(schema)]


Probability = _interval(0, 1)  # a drop probability or a moving-average rate
Fraction = _interval(0, 1, open_low=True)
