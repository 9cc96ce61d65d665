"""`needle gradcheck`: an op's (or a model's) analytic gradient against central differences.

Op parameters are not declared here: they come from the op registry, so `--axes` exists for
`logsumexp` and `--scalar` for `power_scalar`. The command accepts unknown options and parses
them against the chosen op's parameters (`parse_op_options`).
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from needle_cli import render
from needle_cli.render import console, error, print_json

if TYPE_CHECKING:
    from needle.gradcheck import GradcheckReport
    from needle.ops.registry import OpParam, OpSpec

# An elementwise check costs two evaluations per element; beyond this many elements it
# takes minutes, and --fast (random projections, which check_op lets through) is the tool.
ELEMENTWISE_LIMIT = 20_000
DTYPES = ("float64", "float32")

HELP = """Check an op's gradient against float64 central differences.

The analytic gradient (needle's backward under a random cotangent) is compared element by
element with central differences of step eps·max(1, |x|). Points where the two one-sided
differences disagree (relu at 0, a tie of a max) are reported as non-differentiable, not as
errors. Exit code 0: all gradients match; 1: a gradient disagrees; 2: bad usage.

OP is a registered op's function name; its parameters become options (see --list).
Values: --axes 1, --axes 0,1, --axes -1, --axes none; --scalar -1.5; shapes as 3,4.
"""

EPILOG = """Examples:

\b
  needle gradcheck logsumexp --axes 1
  needle gradcheck summation --axes 0,1 --shape 2,3,4
  needle gradcheck power_scalar --scalar -1.5 --order 2
  needle gradcheck matmul --shape 1000,1000 --shape 1000,1000 --fast
  needle gradcheck reshape --shape 4,3 --input-shape 12
  needle gradcheck --all --dtype float32
  needle gradcheck --config configs/quickstart.yaml
"""

CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


def register(app: typer.Typer) -> None:
    """Add `needle gradcheck` to the app."""
    app.command("gradcheck", help=HELP, epilog=EPILOG, context_settings=CONTEXT)(gradcheck)


def gradcheck(
    ctx: typer.Context,
    op: Annotated[
        str | None,
        typer.Argument(
            metavar="OP", help="Op to check, e.g. logsumexp; see --list.", show_default=False
        ),
    ] = None,
    shape: Annotated[
        list[str] | None,
        typer.Option(
            "--shape",
            metavar="DIMS",
            help="Input shape, once per input, e.g. --shape 3,4 --shape 4; '()' for a 0-d "
            "input. For reshape and broadcast_to it is the op's target shape "
            "(see --input-shape).",
            show_default=False,
        ),
    ] = None,
    input_shape: Annotated[
        list[str] | None,
        typer.Option(
            "--input-shape",
            metavar="DIMS",
            help="Input shape for any op, e.g. reshape --shape 4,3 --input-shape 12.",
            show_default=False,
        ),
    ] = None,
    dtype: Annotated[
        str,
        typer.Option(help="Dtype of the analytic side, float64 or float32: --dtype float32."),
    ] = "float64",
    seed: Annotated[int, typer.Option(help="Seeds inputs and cotangent, e.g. --seed 3.")] = 0,
    eps: Annotated[
        float | None,
        typer.Option(
            help="Relative finite-difference step [default: 1e-6], e.g. --eps 1e-5.",
            show_default=False,
        ),
    ] = None,
    atol: Annotated[
        float | None,
        typer.Option(
            help="Absolute tolerance [default: 1e-5; 1e-4 for float32], e.g. --atol 1e-6.",
            show_default=False,
        ),
    ] = None,
    rtol: Annotated[
        float | None,
        typer.Option(
            help="Relative tolerance [default: 1e-3; 5e-3 for float32], e.g. --rtol 1e-4.",
            show_default=False,
        ),
    ] = None,
    order: Annotated[
        int, typer.Option(help="2 also checks the gradient of the gradient: --order 2.")
    ] = 1,
    fast: Annotated[
        bool,
        typer.Option(
            "--fast",
            help="Check 3 random projections vᵀJu per input instead of every element, "
            "e.g. for --shape 1000,1000.",
        ),
    ] = False,
    list_ops: Annotated[
        bool, typer.Option("--list", help="List every op with its options: --list.")
    ] = False,
    all_ops: Annotated[
        bool,
        typer.Option(
            "--all", help="Check every op over its settings, one summary table: --all --order 2."
        ),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE.yaml",
            help="Check every parameter gradient of the model a training config builds, "
            "e.g. --config configs/quickstart.yaml.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON: --all --json.")
    ] = False,
) -> None:
    from needle.errors import UsageError

    op, extra = _split_op(op, list(ctx.args))
    modes = [name for name, on in [("--list", list_ops), ("--all", all_ops)] if on]
    if config is not None:
        modes.append("--config")
    if op is not None:
        modes.append("OP")
    if len(modes) > 1:
        raise UsageError(f"give one of OP, --all, --list, --config (got {' and '.join(modes)})")
    if not modes:
        raise UsageError(
            "give an OP to check (e.g. needle gradcheck logsumexp), --all, --list or --config"
        )

    if list_ops:
        _reject_extra(extra, ctx, "--list")
        return _list_ops(as_json)

    options = _check_options(
        dtype=dtype, seed=seed, eps=eps, atol=atol, rtol=rtol, order=order, fast=fast
    )
    if all_ops or config is not None:
        mode = "--all" if all_ops else "--config"
        _reject_extra(extra, ctx, mode)
        if shape or input_shape:
            raise UsageError(f"--shape and --input-shape apply to one OP, not to {mode}")
        if all_ops:
            return _check_all(seed, options, as_json)
        return _check_config(config, seed, options, as_json)

    from needle.gradcheck import check_op
    from needle.ops.registry import get_op

    spec = get_op(op)
    params = parse_op_options(spec, extra, _command_options(ctx))
    params, shapes = _shapes(spec, params, shape or [], input_shape or [])
    started = time.perf_counter()
    report = check_op(
        spec.name, params, shapes=shapes, seed=seed, max_elements=ELEMENTWISE_LIMIT, **options
    )
    elapsed = time.perf_counter() - started
    reproduce = reproduce_command(report)
    if as_json:
        print_json({**report.to_dict(), "reproduce": reproduce, "seconds": elapsed})
    else:
        _render_report(report, reproduce, elapsed)
    if not report.passed:
        raise typer.Exit(1)


# -- parsing -----------------------------------------------------------------------------


def _split_op(op: str | None, args: list[str]) -> tuple[str | None, list[str]]:
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


def _command_options(ctx: typer.Context) -> list[str]:
    return [name for param in ctx.command.params for name in param.opts if name.startswith("--")]


def _reject_extra(extra: list[str], ctx: typer.Context, mode: str) -> None:
    if extra:
        from needle.errors import UsageError, did_you_mean
        from needle.ops.registry import REGISTRY

        name = extra[0].split("=")[0]
        if any(name == option_name(p) for spec in REGISTRY.values() for p in spec.params):
            raise UsageError(f"{name} is an op option: give it after an OP, not with {mode}")
        hint = did_you_mean(name, _command_options(ctx))
        raise UsageError(f"unknown option '{name}' for {mode};{hint or ' see --help'}")


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
    examples = {"scalar": "-1.5", "int": "2", "axes": "0,1", "axis_pair": "0,2", "shape": "3,4"}
    return f"{option_name(param)} {examples.get(param.kind, '1')}"


def parse_value(param: OpParam, text: str) -> Any:
    """An op parameter's value from its text: a number, an integer (`2`), axes (`1`, `0,1`,
    `none`), an axis pair (`0,2`, `none`) or a shape (`3,4`, `()`)."""
    from needle.errors import UsageError

    name = option_name(param)
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


def _shapes(
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


def _check_options(
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
    if isinstance(value, (tuple, list)):
        return ",".join(str(int(v)) for v in value) if value else "()"
    if param_kind == "scalar":
        return repr(float(value))
    return str(value)


def reproduce_command(report: GradcheckReport, *, config: Path | None = None) -> str:
    """The exact `needle gradcheck` command that reruns this check, seed included: of the op
    the report names, or of the model a `config` file builds."""
    from needle.gradcheck import DEFAULT_EPS, default_tolerances
    from needle.ops.registry import get_op

    words = ["needle", "gradcheck"]
    if config is not None:
        words += ["--config", str(config)]
    else:
        params = {p.name: p for p in get_op(report.label).params}
        words.append(report.label)
        for name, value in report.params.items():
            words += [option_name(params[name]), format_value(params[name].kind, value)]
        shape_option = "--input-shape" if "shape" in params else "--shape"
        for item in report.inputs:
            words += [shape_option, format_value("shape", item.shape)]
    words += ["--seed", str(report.seed)]
    defaults = default_tolerances(report.dtype)
    if report.dtype != "float64":
        words += ["--dtype", report.dtype]
    if report.order != 1:
        words += ["--order", str(report.order)]
    if report.fast:
        words.append("--fast")
    if report.eps != DEFAULT_EPS:
        words += ["--eps", repr(report.eps)]
    for name in ("atol", "rtol"):
        if getattr(report, name) != defaults[name]:
            words += [f"--{name}", repr(getattr(report, name))]
    return " ".join(shlex.quote(word) for word in words)


# -- rendering -----------------------------------------------------------------------------


def describe(report: GradcheckReport) -> str:
    """`logsumexp(a, axes=1)`: the op with its inputs and parameters."""
    args = [*report.input_names, *(f"{key}={value}" for key, value in report.params.items())]
    return f"{report.label}({', '.join(args)})"


def _verdict(passed: bool, kinks: int) -> str:
    if not passed:
        return "[bold red]FAIL[/]"
    if kinks:
        return f"[green]pass[/] [yellow]({kinks} kinks skipped)[/]"
    return "[green]pass[/]"


def _render_report(
    report: GradcheckReport, reproduce: str, elapsed: float, *, title: str | None = None
) -> None:
    from rich.markup import escape

    out = console()
    method = "random projections vᵀJu" if report.fast else "every element"
    out.print(f"[bold]{escape(title or 'gradcheck ' + describe(report))}[/]")
    out.print(
        f"[dim]{report.dtype} · order {report.order} · {method} · seed {report.seed} · "
        f"atol {report.atol:g} · rtol {report.rtol:g} · eps {report.eps:g}[/]"
    )
    names = report.input_names
    table = render.table()
    table.add_column("input", no_wrap=True, min_width=max(map(len, names), default=5))
    for column in ("shape", "checked", "max abs err", "max rel err"):
        table.add_column(column, justify="right")
    table.add_column("projection" if report.fast else "worst at", justify="right")
    for column in ("analytic", "numerical"):
        table.add_column(column, justify="right")
    table.add_column("verdict")
    for item in report.inputs:
        where = "—" if item.worst_index is None else str(item.worst_index)
        if report.fast and item.worst_index is not None:
            where = str(item.worst_index[0])
        table.add_row(
            escape(names[item.index]),
            str(item.shape),
            str(item.checked),
            error(item.max_abs_error),
            error(item.max_rel_error),
            where,
            render.value(item.analytic),
            render.value(item.numerical),
            _verdict(item.passed, len(item.nondifferentiable)),
        )
    out.print(table)
    for item in report.inputs:
        name = names[item.index]
        if item.problem:
            out.print(f"  [red]{escape(name)}: {escape(item.problem)}[/]")
        if item.nondifferentiable:
            points = ", ".join(str(p) for p in item.nondifferentiable[:5])
            more = " …" if len(item.nondifferentiable) > 5 else ""
            out.print(f"  [yellow]{escape(name)}: not differentiable at {points}{more}[/]")
    if report.passed:
        out.print(f"[green]✓ pass[/]: the gradient matches central differences ({elapsed:.2f} s)")
    else:
        failing = [escape(names[i]) for i in report.failing_inputs]
        what = "gradient of input" if len(failing) == 1 else "gradients of inputs"
        agree = "disagrees" if len(failing) == 1 else "disagree"
        out.print(f"[bold red]✗ FAIL[/]: the {what} {', '.join(failing)} {agree}")
        out.print(f"reproduce: {reproduce}", soft_wrap=True, markup=False)


def _check_all(seed: int, options: dict[str, Any], as_json: bool) -> None:
    from needle.gradcheck import check_all

    started = time.perf_counter()
    reports = check_all(seed=seed, **options)
    elapsed = time.perf_counter() - started
    failed = [report for report in reports if not report.passed]
    if as_json:
        print_json(
            {
                "passed": not failed,
                "checks": [
                    {**report.to_dict(), "reproduce": reproduce_command(report)}
                    for report in reports
                ],
                "seconds": elapsed,
            }
        )
    else:
        out = console()
        table = render.table()
        for column in ("op", "parameters", "input shapes", "checked"):
            table.add_column(column, justify="right" if column == "checked" else "left")
        for column in ("max abs err", "max rel err"):
            table.add_column(column, justify="right")
        table.add_column("verdict")
        for report in reports:
            table.add_row(
                report.label,
                " ".join(f"{k}={v}" for k, v in report.params.items()) or "—",
                ", ".join(str(item.shape) for item in report.inputs),
                str(report.checked),
                error(report.max_abs_error),
                error(report.max_rel_error),
                _verdict(report.passed, report.kinks),
            )
        out.print(table)
        ops = len({report.label for report in reports})
        if failed:
            out.print(f"[bold red]✗ FAIL[/]: {len(failed)} of {len(reports)} checks over {ops} ops")
            for report in failed:
                out.print(f"reproduce: {reproduce_command(report)}", soft_wrap=True, markup=False)
        else:
            out.print(
                f"[green]✓ pass[/]: {len(reports)} checks over {ops} ops "
                f"({options['dtype']}, order {options['order']}, {elapsed:.2f} s)"
            )
    if failed:
        raise typer.Exit(1)


def _list_ops(as_json: bool) -> None:
    from needle.gradcheck import op_input_names
    from needle.ops.registry import REGISTRY

    if as_json:
        print_json(
            [
                {
                    "op": spec.name,
                    "summary": spec.summary,
                    "inputs": list(op_input_names(spec)),
                    "options": [
                        {
                            "option": option_name(p),
                            "kind": p.kind,
                            "help": p.help,
                            "required": p.required,
                            "default": None if p.required else p.default,
                        }
                        for p in spec.params
                    ],
                    "settings": [{"params": s.params, "shapes": s.shapes} for s in spec.settings],
                    "nondifferentiable": spec.nondifferentiable,
                }
                for spec in REGISTRY.values()
            ]
        )
        return
    out = console()
    table = render.table()
    for column in ("op", "inputs", "options", "meaning"):
        table.add_column(column)
    for spec in REGISTRY.values():
        options = []
        for p in spec.params:
            default = "required" if p.required else f"default {format_value(p.kind, p.default)}"
            options.append(f"[cyan]{option_name(p)}[/] ({default}): {p.help}")
        meaning = spec.summary
        if spec.nondifferentiable:
            meaning += f" [yellow]Not differentiable at {spec.nondifferentiable}.[/]"
        table.add_row(
            spec.name, ", ".join(op_input_names(spec)), "\n".join(options) or "—", meaning
        )
    out.print(table)
    out.print(
        "Options follow the op: needle gradcheck logsumexp --axes 1 --shape 3,4. For reshape "
        "and broadcast_to, --shape is the target and --input-shape the input's shape. "
        "Common options (--dtype, --seed, --order, --fast, --json, …): needle gradcheck --help."
    )


def _check_config(config: Path, seed: int, options: dict[str, Any], as_json: bool) -> None:
    from needle.gradcheck import MODEL_ELEMENTWISE_LIMIT, check_model
    from needle.train.config import load_config

    started = time.perf_counter()
    # Without --fast, the library picks: every element of a small model, projections beyond.
    requested = options["fast"]
    report = check_model(load_config(config), seed=seed, **{**options, "fast": requested or None})
    elapsed = time.perf_counter() - started
    reproduce = reproduce_command(report, config=config)
    if as_json:
        print_json(
            {**report.to_dict(), "config": str(config), "reproduce": reproduce, "seconds": elapsed}
        )
    else:
        _render_report(report, reproduce, elapsed, title=f"gradcheck --config {config}")
        if report.fast and not requested:
            console().print(
                f"[dim]{report.elements} parameters (more than {MODEL_ELEMENTWISE_LIMIT}): "
                "checked by random projections per parameter tensor[/]"
            )
    if not report.passed:
        raise typer.Exit(1)
