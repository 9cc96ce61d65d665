"""`needle gradcheck`: an op's (or a model's) analytic gradient against central differences.

The command parses (`gradcheck_options`), calls one library check and renders its report
(`gradcheck_render`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from needle_cli.gradcheck_options import (
    check_options,
    command_options,
    parse_op_options,
    reject_clashes,
    reject_extra,
    reproduce_command,
    split_op,
    split_shapes,
)
from needle_cli.gradcheck_render import render_all, render_list, render_report
from needle_cli.gradcheck_user_op import load_op_class
from needle_cli.render import Overrides, console, print_json

# An elementwise check costs two evaluations per element; beyond this many elements it
# takes minutes, and --fast (random projections, which check_op lets through) is the tool.
ELEMENTWISE_LIMIT = 20_000

HELP = """Check an op's gradient against float64 central differences.

The analytic gradient (needle's backward under a random cotangent) is compared element by
element with central differences of step eps·max(1, |x|). Points where the two one-sided
differences disagree (relu at 0, a tie of a max) are reported as non-differentiable, not as
errors. Exit code 0: all gradients match; 1: a gradient disagrees or cannot be computed
(its backward raises); 2: bad usage.

Tolerances follow from the step and the precision of each side. An element passes when
|analytic − numerical| ≤ atol + rtol·|numerical| + floor. The default rtol is
eps²·10⁴/6 (the differences' truncation error h²·|f‴|/6, for functions bending up to 10⁴
times their slope at the scale of x) plus u·10³ (the analytic side's rounding, u its dtype's
unit roundoff): 1.7e-9 in float64, so a 0.1 % error fails, and 6.0e-5 in float32. The floor
is what rounding alone can explain, (R·2⁻⁵³/h + R'·u/max(1, |x|))·Σ|v·f| with R = R' = 16
(16384 and 1024 at order 2, where each evaluation is a backward pass), computed per element,
so it follows the magnitude of the inputs (see --scale). atol, 0 by default, adds to it. A
gradient that is 0 within the floor on both sides (a bias before a batch norm) is counted as
zero, with no relative error.

OP is a registered op's function name; its parameters become options (see --list).
Values: --axes 1, --axes 0,1, --axes -1, --axes none; --scalar -1.5; shapes as 3,4.
--op FILE.py:ClassName checks an op class of your own instead, with the same options,
report and reproduce line.
"""

EPILOG = """Examples:

\b
  needle gradcheck logsumexp --axes 1
  needle gradcheck summation --axes 0,1 --shape 2,3,4
  needle gradcheck power_scalar --scalar -1.5 --order 2
  needle gradcheck conv --stride 2 --padding 1
  needle gradcheck matmul --shape 1000,1000 --shape 1000,1000 --fast
  needle gradcheck reshape --shape 4,3 --input-shape 12
  needle gradcheck --all --dtype float32
  needle gradcheck logsumexp --axes 1 --scale 1e30
  needle gradcheck --op my_ops.py:MyLog --draw positive --shape 2,5
  needle gradcheck --config configs/quickstart.yaml --set model.layers.0.linear=8
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
            help="Absolute tolerance, on top of the rounding floor [default: 0], e.g. --atol 1e-9.",
            show_default=False,
        ),
    ] = None,
    rtol: Annotated[
        float | None,
        typer.Option(
            help="Relative tolerance [default: eps²·10⁴/6 + u·10³: 1.7e-9 in float64, "
            "6.0e-5 in float32], e.g. --rtol 1e-6.",
            show_default=False,
        ),
    ] = None,
    scale: Annotated[
        float | None,
        typer.Option(
            metavar="S",
            help="Multiply the sample inputs by S [default: 1], to probe an op at large or "
            "small magnitudes, e.g. logsumexp --axes 1 --scale 1e30.",
            show_default=False,
        ),
    ] = None,
    order: Annotated[
        int,
        typer.Option(
            help="2 checks the gradient and also the gradient of the gradient: --order 2."
        ),
    ] = 1,
    fast: Annotated[
        bool,
        typer.Option(
            "--fast",
            help="Check 3 random projections vᵀJu per input instead of every element, "
            "e.g. for --shape 1000,1000.",
        ),
    ] = False,
    op_file: Annotated[
        str | None,
        typer.Option(
            "--op",
            metavar="FILE.py:CLASS",
            help="Check a TensorOp class from your own file, e.g. --op my_ops.py:MyExp: its "
            "__init__'s arguments become options (--name VALUE, VALUE a Python literal such as "
            "0.5, 0,1 or none), its compute's arguments its inputs, one --shape each "
            "[default: 3,4].",
            show_default=False,
        ),
    ] = None,
    draw: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="How to draw the inputs: normal (standard normal), positive ([0.5, 2), for "
            "log and roots) or away_from_zero (±[0.5, 2)) [default: the op's own; normal for "
            "--op], e.g. --draw positive.",
            show_default=False,
        ),
    ] = None,
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
    overrides: Overrides = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON: --all --json.")
    ] = False,
) -> None:
    from needle.errors import UsageError
    from needle.gradcheck import check_scale

    op, extra = split_op(op, list(ctx.args))
    modes = [name for name, on in [("--list", list_ops), ("--all", all_ops)] if on]
    modes += [name for name, value in [("--config", config), ("--op", op_file)] if value]
    if op is not None:
        modes.append("OP")
    if len(modes) > 1:
        raise UsageError(
            f"give one of OP, --op, --all, --list, --config (got {' and '.join(modes)})"
        )
    if not modes:
        raise UsageError(
            "give an OP to check (e.g. needle gradcheck logsumexp), --op FILE.py:ClassName, "
            "--all, --list or --config"
        )

    if list_ops:
        reject_extra(extra, ctx, "--list")
        return render_list(as_json)

    options = check_options(
        dtype=dtype, seed=seed, eps=eps, atol=atol, rtol=rtol, order=order, fast=fast
    )
    if overrides and config is None:
        raise UsageError("--set overrides a value of --config FILE.yaml; give --config too")
    if scale is not None and config is not None:
        raise UsageError("--scale applies to an OP or --all (their sample inputs), not to --config")
    scale = check_scale(1.0 if scale is None else scale)
    if all_ops or config is not None:
        mode = "--all" if all_ops else "--config"
        reject_extra(extra, ctx, mode)
        if shape or input_shape:
            raise UsageError(f"--shape and --input-shape apply to one OP, not to {mode}")
        if draw is not None:
            raise UsageError(f"--draw applies to one OP or --op, not to {mode}")
        if all_ops:
            return _check_all(seed, scale, options, as_json)
        return _check_config(config, overrides or [], seed, options, as_json)

    from needle.gradcheck import check_op, op_spec
    from needle.ops.registry import get_op

    if op_file is not None:
        given = len(input_shape or shape or []) or None  # how many inputs `*args` takes
        spec = op_spec(load_op_class(op_file), draw=draw or "normal", n_inputs=given)
        reject_clashes(spec, command_options(ctx))
    else:
        spec = get_op(op)
    params = parse_op_options(spec, extra, command_options(ctx))
    params, shapes = split_shapes(spec, params, shape or [], input_shape or [])
    started = time.perf_counter()
    report = check_op(
        spec if op_file is not None else spec.name,
        params,
        shapes=shapes,
        seed=seed,
        scale=scale,
        draw=None if op_file is not None else draw,  # an --op's spec has its draws
        max_elements=ELEMENTWISE_LIMIT,
        **options,
    )
    elapsed = time.perf_counter() - started
    reproduce = reproduce_command(report, spec=spec, op_file=op_file, draw=draw)
    if as_json:
        print_json({**report.to_dict(), "reproduce": reproduce, "seconds": elapsed})
    else:
        render_report(report, reproduce, elapsed)
    if not report.passed:
        raise typer.Exit(1)


def _check_all(seed: int, scale: float, options: dict[str, Any], as_json: bool) -> None:
    from needle.gradcheck import check_all

    started = time.perf_counter()
    reports = check_all(seed=seed, scale=scale, **options)
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
        render_all(reports, options, elapsed)
    if failed:
        raise typer.Exit(1)


def _check_config(
    config: Path, overrides: list[str], seed: int, options: dict[str, Any], as_json: bool
) -> None:
    from needle.gradcheck import MODEL_ELEMENTWISE_LIMIT, check_model
    from needle.train.config import load_config

    started = time.perf_counter()
    # Without --fast, the library picks: every element of a small model, projections beyond.
    requested = options["fast"]
    loaded = load_config(config, overrides)
    report = check_model(loaded, seed=seed, **{**options, "fast": requested or None})
    elapsed = time.perf_counter() - started
    reproduce = reproduce_command(report, config=config, overrides=overrides)
    if as_json:
        print_json(
            {**report.to_dict(), "config": str(config), "reproduce": reproduce, "seconds": elapsed}
        )
    else:
        render_report(report, reproduce, elapsed, title=f"gradcheck --config {config}")
        if report.fast and not requested:
            console().print(
                f"[dim]{report.elements} parameters (more than {MODEL_ELEMENTWISE_LIMIT}): "
                "checked by random projections per parameter tensor[/]"
            )
    if not report.passed:
        raise typer.Exit(1)
