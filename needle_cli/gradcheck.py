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
    reject_extra,
    reproduce_command,
    split_op,
    split_shapes,
)
from needle_cli.gradcheck_render import render_all, render_list, render_report
from needle_cli.render import console, print_json

# An elementwise check costs two evaluations per element; beyond this many elements it
# takes minutes, and --fast (random projections, which check_op lets through) is the tool.
ELEMENTWISE_LIMIT = 20_000

HELP = """Check an op's gradient against float64 central differences.

The analytic gradient (needle's backward under a random cotangent) is compared element by
element with central differences of step eps·max(1, |x|). Points where the two one-sided
differences disagree (relu at 0, a tie of a max) are reported as non-differentiable, not as
errors. Exit code 0: all gradients match; 1: a gradient disagrees; 2: bad usage.

OP is a registered op's function name; its parameters become options (see --list).
Values: --axes 1, --axes 0,1, --axes -1, --axes none; --scalar -1.5; shapes as 3,4.
"""

EPILOG = """Examples:

  needle gradcheck logsumexp --axes 1

  needle gradcheck summation --axes 0,1 --shape 2,3,4

  needle gradcheck power_scalar --scalar -1.5 --order 2

  needle gradcheck matmul --shape 1000,1000 --shape 1000,1000 --fast

  needle gradcheck reshape --shape 4,3 --input-shape 12

  needle gradcheck --all --dtype float32

  needle gradcheck --config mnist.yaml
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
            "e.g. --config mnist.yaml.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON: --all --json.")
    ] = False,
) -> None:
    from needle.errors import UsageError

    op, extra = split_op(op, list(ctx.args))
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
        reject_extra(extra, ctx, "--list")
        return render_list(as_json)

    options = check_options(
        dtype=dtype, seed=seed, eps=eps, atol=atol, rtol=rtol, order=order, fast=fast
    )
    if all_ops or config is not None:
        mode = "--all" if all_ops else "--config"
        reject_extra(extra, ctx, mode)
        if shape or input_shape:
            raise UsageError(f"--shape and --input-shape apply to one OP, not to {mode}")
        if all_ops:
            return _check_all(seed, options, as_json)
        return _check_config(config, seed, options, as_json)

    from needle.gradcheck import check_op
    from needle.ops.registry import get_op

    spec = get_op(op)
    params = parse_op_options(spec, extra, command_options(ctx))
    params, shapes = split_shapes(spec, params, shape or [], input_shape or [])
    started = time.perf_counter()
    report = check_op(
        spec.name, params, shapes=shapes, seed=seed, max_elements=ELEMENTWISE_LIMIT, **options
    )
    elapsed = time.perf_counter() - started
    reproduce = reproduce_command(report)
    if as_json:
        print_json({**report.to_dict(), "reproduce": reproduce, "seconds": elapsed})
    else:
        render_report(report, reproduce, elapsed)
    if not report.passed:
        raise typer.Exit(1)


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
        render_all(reports, options, elapsed)
    if failed:
        raise typer.Exit(1)


def _check_config(config: Path, seed: int, options: dict[str, Any], as_json: bool) -> None:
    from needle.config import load_config
    from needle.gradcheck import MODEL_ELEMENTWISE_LIMIT, check_model

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
        render_report(report, reproduce, elapsed, title=f"gradcheck --config {config}")
        if report.fast and not requested:
            console().print(
                f"[dim]{report.elements} parameters (more than {MODEL_ELEMENTWISE_LIMIT}): "
                "checked by random projections per parameter tensor[/]"
            )
    if not report.passed:
        raise typer.Exit(1)
