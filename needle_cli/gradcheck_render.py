"""`needle gradcheck`'s output: one check's table, the --all summary, the --list of ops."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from needle_cli import render
from needle_cli.gradcheck_options import format_value, option_name, reproduce_command
from needle_cli.render import console, error, print_json

if TYPE_CHECKING:
    from needle.gradcheck import GradcheckReport, InputReport


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


def render_report(
    report: GradcheckReport, reproduce: str, elapsed: float, *, title: str | None = None
) -> None:
    from rich.markup import escape

    out = console()
    method = "random projections vᵀJu" if report.fast else "every element"
    out.print(f"[bold]{escape(title or 'gradcheck ' + describe(report))}[/]")
    scale = f" · scale {report.scale:g}" if report.scale != 1 else ""
    out.print(
        f"[dim]{report.dtype} · order {report.order} · {method} · seed {report.seed}{scale} · "
        f"eps {report.eps:g} · tolerance atol {report.atol:.2g} + "
        f"rtol {report.rtol:.2g}·|numerical| + rounding floor[/]"
    )
    names = report.input_names
    table = render.table()
    table.add_column("input", no_wrap=True, min_width=max(map(len, names), default=5))
    if report.order == 2:
        table.add_column("order", justify="right")
    for column in ("shape", "checked", "max abs err", "max rel err"):
        table.add_column(column, justify="right")
    table.add_column("projection" if report.fast else "worst at", justify="right")
    for column in ("analytic", "numerical", "tolerance"):
        table.add_column(column, justify="right")
    table.add_column("verdict", no_wrap=True)
    for item in report.comparisons:
        where = "—" if item.worst_index is None else str(item.worst_index)
        if report.fast and item.worst_index is not None:
            where = str(item.worst_index[0])
        order = [str(item.order)] if report.order == 2 else []
        table.add_row(
            escape(names[item.index]),
            *order,
            str(item.shape),
            str(item.checked),
            error(item.max_abs_error),
            relative_error(item.max_rel_error),
            where,
            render.value(item.analytic),
            render.value(item.numerical),
            error(item.tolerance),
            _verdict(item.passed, len(item.nondifferentiable)),
        )
    out.print(table)
    for item in report.comparisons:
        name = names[item.index] + (" (order 2)" if item.order == 2 else "")
        if item.problem:
            out.print(f"  [red]{escape(name)}: {escape(item.problem)}[/]")
        if item.zeros:
            out.print(f"  [dim]{escape(name)}: {zeros_note(item)}[/]")
        if item.nondifferentiable:
            points = ", ".join(str(p) for p in item.nondifferentiable[:5])
            more = " …" if len(item.nondifferentiable) > 5 else ""
            out.print(f"  [yellow]{escape(name)}: not differentiable at {points}{more}[/]")
    if report.passed:
        what = (
            "the gradient and its gradient match" if report.order == 2 else "the gradient matches"
        )
        out.print(f"[green]✓ pass[/]: {what} central differences ({elapsed:.2f} s)")
    else:
        failures = [
            _disagreement(kind, [escape(names[i]) for i in failing])
            for kind, failing in (
                ("gradient", report.failing_inputs),
                ("second derivatives", report.failing_second_order),
            )
            if failing
        ]
        out.print(f"[bold red]✗ FAIL[/]: {'; '.join(failures)}")
        out.print(f"reproduce: {reproduce}", soft_wrap=True, markup=False)


def relative_error(value: float | None) -> str:
    """A relative error, or "—" where there is none: every value was 0 within rounding."""
    return "—" if value is None else error(value)


def zeros_note(item: InputReport) -> str:
    """Why an input's relative error leaves some (or all) of its elements out."""
    if item.zeros == item.checked:
        return (
            f"every element's gradient is 0 within rounding (both sides within "
            f"{error(item.tolerance)} of 0): no relative error to speak of; it passes on the "
            "absolute error"
        )
    return (
        f"{item.zeros} of {item.checked} elements are 0 within rounding on both sides, "
        "left out of the relative error"
    )


def _disagreement(kind: str, names: list[str]) -> str:
    """`the gradient of input a disagrees`, `the second derivatives of inputs a, b disagree`."""
    plural = len(names) > 1 or kind == "second derivatives"
    subject = f"the {kind}s" if len(names) > 1 and kind == "gradient" else f"the {kind}"
    inputs = "inputs" if len(names) > 1 else "input"
    return f"{subject} of {inputs} {', '.join(names)} {'disagree' if plural else 'disagrees'}"


def render_all(reports: list[GradcheckReport], options: dict[str, Any], elapsed: float) -> None:
    """The --all summary: one row per (op, setting), then what failed with its reproduce line."""
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
            relative_error(report.max_rel_error),
            _verdict(report.passed, report.kinks),
        )
    out.print(table)
    ops = len({report.label for report in reports})
    failed = [report for report in reports if not report.passed]
    if failed:
        out.print(f"[bold red]✗ FAIL[/]: {len(failed)} of {len(reports)} checks over {ops} ops")
        for report in failed:
            for line in failure_lines(report):
                out.print(f"  {report.label} {line}", soft_wrap=True, markup=False)
            out.print(f"reproduce: {reproduce_command(report)}", soft_wrap=True, markup=False)
    else:
        out.print(
            f"[green]✓ pass[/]: {len(reports)} checks over {ops} ops "
            f"({options['dtype']}, order {options['order']}, {elapsed:.2f} s)"
        )


def failure_lines(report: GradcheckReport) -> list[str]:
    """One line per failed comparison: `a: backward raised …`, or `b (order 2): max abs err
    2.2e+00 at (1, 0), analytic 0, numerical -2.168`."""
    lines = []
    for item in report.comparisons:
        if item.passed:
            continue
        name = report.input_names[item.index] + (" (order 2)" if item.order == 2 else "")
        if item.problem:
            lines.append(f"{name}: {item.problem}")
        else:
            lines.append(
                f"{name}: max abs err {error(item.max_abs_error)} at {item.worst_index}, "
                f"analytic {render.value(item.analytic)}, numerical {render.value(item.numerical)}"
            )
    return lines


def render_list(as_json: bool) -> None:
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
