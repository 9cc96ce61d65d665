"""`needle gradcheck`'s command line: op options parsed against the registry, and the
reproducing command, its inverse.

Op parameters are not declared as click options: they come from the op registry, so
`--axes` exists for `logsumexp` and `--scalar` for `power_scalar`. The command accepts
unknown options and parses them against the chosen op's parameters (`parse_op_options`).
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from needle.gradcheck import GradcheckReport
    from needle.ops.registry import OpParam, OpSpec

DTYPES = ("float64", "float32")


def split_op(op: str | None, args: list[str]) -> tuple[str | None, list[str]]:
    """Find OP among the tokens: click takes the first bare token as OP, so when the op's
    options come first (`--axes 1 logsumexp`) the value `1` would pose as the op. Every op
    option takes a value, so options and the positional OP can be told apart by walking."""
    tokens = ([op] if op is not None else []) + args
    positional, rest, i = [], [], 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--"):
            rest.append(token)
            if "=" not in token and i + 1 < len(tokens):
                rest.append(tokens[i + 1])
                i += 1
        else:
            positional.append(token)
        i += 1
    if len(positional) > 1:
        from needle.errors import UsageError

        raise UsageError(f"give one OP (got {len(positional)}: {', '.join(map(repr, positional))})")
    return (positional[0] if positional else None), rest


def command_options(ctx: typer.Context) -> list[str]:
    return [name for param in ctx.command.params for name in param.opts if name.startswith("--")]


def reject_extra(extra: list[str], ctx: typer.Context, mode: str) -> None:
    if extra:
        from needle.errors import UsageError, did_you_mean
        from needle.ops.registry import REGISTRY

        name = extra[0].split("=")[0]
        if any(name == option_name(p) for spec in REGISTRY.values() for p in spec.params):
            raise UsageError(f"{name} is an op option: give it after an OP, not with {mode}")
        hint = did_you_mean(name, command_options(ctx))
        raise UsageError(f"unknown option '{name}' for {mode};{hint or ' see --help'}")


def reject_clashes(spec: OpSpec, command_options: list[str]) -> None:
    """An --op class whose argument has the name of a gradcheck option (--seed) could not
    be given it: say so, rather than give it to gradcheck."""
    from needle.errors import UsageError

    for param in spec.params:
        if param.name != "shape" and option_name(param) in command_options:
            raise UsageError(
                f"{spec.name}'s argument '{param.name}' has the name of gradcheck's "
                f"{option_name(param)}; rename it, or check it from Python with "
                "needle.gradcheck.check_op"
            )


def option_name(param: OpParam) -> str:
    """`--axes` for the parameter `axes`."""
    return "--" + param.name.replace("_", "-")


def parse_op_options(spec: OpSpec, args: list[str], command_options: list[str]) -> dict[str, Any]:
    """Parse `--name value` / `--name=value` pairs against the op's parameters."""
    from needle.errors import UsageError, did_you_mean

    by_option = {option_name(p): p for p in spec.params}
    params: dict[str, Any] = {}
    i = 0
    while i < len(args):
        token = args[i]
        name, has_value, text = token.partition("=")
        if name not in by_option:
            valid = ", ".join(by_option) or "none"
            hint = did_you_mean(name, list(by_option) + command_options)
            raise UsageError(
                f"op '{spec.name}' has no option '{name}';"
                + (hint if hint else f" its options: {valid} (and the common ones in --help)")
            )
        if not has_value:
            if i + 1 >= len(args):
                raise UsageError(f"{name} needs a value, e.g. {_example(by_option[name])}")
            i += 1
            text = args[i]
        param = by_option[name]
        if param.name in params:
            raise UsageError(f"{name} given twice")
        params[param.name] = parse_value(param, text)
        i += 1
    return params


def _example(param: OpParam) -> str:
    examples = {
        "scalar": "-1.5",
        "int": "2",
        "axes": "0,1",
        "axis_pair": "0,2",
        "shape": "3,4",
        "value": "0.5",
    }
    example = param.choices[0] if param.choices else examples.get(param.kind, "1")
    return f"{option_name(param)} {example}"


def parse_value(param: OpParam, text: str) -> Any:
    """An op parameter's value from its text: a number, an integer (`2`), axes (`1`, `0,1`,
    `none`), an axis pair (`0,2`, `none`), a shape (`3,4`, `()`), one of a choice's names or,
    for a user's op class, a Python literal."""
    from needle.errors import UsageError

    name = option_name(param)
    if param.kind == "value":  # an argument of an op class of the user's (--op)
        if text.strip().lower() == "none":
            return None
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise UsageError(
                f"{name} expects a Python literal such as 0.5, 0,1, (3, 4) or none (got '{text}')"
            ) from None
    if param.kind == "choice":
        if text not in param.choices:
            raise UsageError(f"{name} expects one of {', '.join(param.choices)} (got '{text}')")
        return text
    if param.kind == "scalar":
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{name} expects a number (got '{text}')") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise UsageError(f"{name} expects a finite number (got '{text}')")
        return value
    if param.kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise UsageError(f"{name} expects an integer (got '{text}')") from None
    if param.kind in ("axes", "axis_pair") and text.strip().lower() in ("none", "all"):
        return None
    ints = parse_ints(text, name, allow_empty=param.kind == "shape")
    if param.kind == "axes":
        return ints[0] if len(ints) == 1 else ints
    if param.kind == "axis_pair" and len(ints) != 2:
        raise UsageError(f"{name} expects two axes like 0,2, or none (got '{text}')")
    return ints


def parse_ints(text: str, option: str, *, allow_empty: bool = False) -> tuple[int, ...]:
    """`"3,4"` → (3, 4); brackets and spaces are ignored; `"()"` → () when allowed. One
    trailing comma is Python's 1-tuple, `(3,)`; any other empty item (`3,,4`) is refused
    rather than dropped, which would check a shape that was not asked for."""
    from needle.errors import UsageError

    body = text.strip().strip("()[]").replace(" ", "")
    if not body:
        if allow_empty:
            return ()
        raise UsageError(f"{option} expects comma-separated integers (got '{text}')")
    parts = body.split(",")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if "" in parts:
        raise UsageError(f"{option} expects comma-separated integers, none empty (got '{text}')")
    try:
        return tuple(int(part) for part in parts)
    except ValueError:
        raise UsageError(
            f"{option} expects comma-separated integers like 0,1 (got '{text}')"
        ) from None


def parse_shape(text: str, option: str) -> tuple[int, ...]:
    """An input shape: positive sizes only (an empty input has nothing to check)."""
    from needle.errors import UsageError

    dims = parse_ints(text, option, allow_empty=True)
    if any(d < 1 for d in dims):
        raise UsageError(f"{option} sizes must be at least 1 (got '{text}')")
    return dims


def split_shapes(
    spec: OpSpec, params: dict[str, Any], shape: list[str], input_shape: list[str]
) -> tuple[dict[str, Any], list[tuple[int, ...]] | None]:
    """Split `--shape` between the op's own `shape` parameter (reshape, broadcast_to) and
    input shapes, which `--input-shape` always gives."""
    from needle.errors import UsageError

    takes_shape = any(p.name == "shape" for p in spec.params)
    if takes_shape:
        if len(shape) > 1:
            raise UsageError(
                f"{spec.name} takes one target --shape (got {len(shape)}); "
                "give input shapes with --input-shape"
            )
        if shape:
            params = {**params, "shape": parse_ints(shape[0], "--shape", allow_empty=True)}
        inputs = input_shape
        option = "--input-shape"
    else:
        if shape and input_shape:
            raise UsageError("give input shapes with --shape or --input-shape, not both")
        inputs = shape or input_shape
        option = "--shape" if shape else "--input-shape"
    if not inputs:
        return params, None
    return params, [parse_shape(text, option) for text in inputs]


def check_options(
    *,
    dtype: str,
    seed: int,
    eps: float | None,
    atol: float | None,
    rtol: float | None,
    order: int,
    fast: bool,
) -> dict[str, Any]:
    """The numerical options, validated up front, as `check_gradients` keywords (None: its
    default); eps, atol and rtol by the library's own rules (`validate_tolerances`)."""
    from needle.errors import UsageError, unknown_choice
    from needle.gradcheck import validate_tolerances
    from needle.init import check_seed

    if dtype not in DTYPES:
        raise unknown_choice("dtype", dtype, DTYPES)
    check_seed(seed)
    if order not in (1, 2):
        raise UsageError(f"--order must be 1 or 2 (got {order})")
    tolerances = {k: v for k, v in (("eps", eps), ("atol", atol), ("rtol", rtol)) if v is not None}
    validate_tolerances(**tolerances)
    return {"dtype": dtype, "order": order, "fast": fast, **tolerances}


# -- the reproducing command ---------------------------------------------------------------


def format_value(param_kind: str, value: Any) -> str:
    """The command-line text of an op parameter's value (the inverse of `parse_value`)."""
    if value is None:
        return "none"
    if param_kind == "value":
        return repr(value)
    if isinstance(value, (tuple, list)):
        return ",".join(str(int(v)) for v in value) if value else "()"
    if param_kind == "scalar":
        return repr(float(value))
    return str(value)


def reproduce_command(
    report: GradcheckReport,
    *,
    config: Path | None = None,
    overrides: list[str] = (),
    spec: OpSpec | None = None,
    op_file: str | None = None,
    draw: str | None = None,
) -> str:
    """The exact `needle gradcheck` command that reruns this check, seed included: of the op
    the report names (`spec`, or the registry's), of the op class in `op_file` (--op), or of
    the model a `config` file builds (with its `overrides`, `--set KEY=VALUE`)."""
    from needle.gradcheck import DEFAULT_EPS, default_tolerances
    from needle.ops.registry import get_op

    words = ["needle", "gradcheck"]
    if config is not None:
        words += ["--config", str(config)]
        for override in overrides:
            words += ["--set", override]
    else:
        params = {p.name: p for p in (spec or get_op(report.label)).params}
        words += ["--op", op_file] if op_file else [report.label]
        for name, value in report.params.items():
            words += [option_name(params[name]), format_value(params[name].kind, value)]
        shape_option = "--input-shape" if "shape" in params else "--shape"
        for item in report.inputs:
            words += [shape_option, format_value("shape", item.shape)]
    words += ["--seed", str(report.seed)]
    defaults = default_tolerances(report.dtype, report.eps)
    if report.dtype != "float64":
        words += ["--dtype", report.dtype]
    if report.order != 1:
        words += ["--order", str(report.order)]
    if draw is not None:
        words += ["--draw", draw]
    if report.scale != 1:
        words += ["--scale", repr(report.scale)]
    if report.fast:
        words.append("--fast")
    if report.eps != DEFAULT_EPS:
        words += ["--eps", repr(report.eps)]
    for name in ("atol", "rtol"):
        if getattr(report, name) != defaults[name]:
            words += [f"--{name}", repr(getattr(report, name))]
    return " ".join(shlex.quote(word) for word in words)
