"""`needle init-stats`: an initializer's theory beside its measured draws, and what a stack of
layers built with it does to the signal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from needle_cli import render
from needle_cli.render import Overrides, console, number, print_json

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from needle.init_stats import Histogram, InitStats, Propagation, SchemeReport

# The stack depth --compare uses when --depth is not given.
COMPARE_DEPTH = 10
HISTOGRAM_WIDTH, HISTOGRAM_HEIGHT = 72, 18  # columns and rows of the draws' histogram

HELP = """Compare an initializer's theory with its draws.

Prints the scheme's formulas with the numbers filled in, the expected beside the measured
mean, std, min, max (and bound for uniform schemes), the Kolmogorov–Smirnov distance to the
theoretical distribution with its verdict at 5 %, and a histogram of the draws over the
theoretical density.

With --depth L, also pushes a unit-variance batch through L Linear + nonlinearity layers built
with the scheme and shows, per layer, the std of the pre-activations (forward) and of their
gradients (backward), with what the variance argument predicts. With --kernel K too, the layers
are K×K convolutions (stride 1, padding K//2, no bias, K odd) of --fan-in channels in and out,
on a few images large enough that the stds are taken where no zero padding reaches; the
prediction is the same with fan = channels·K². --compare runs several schemes side by side.
SCHEME is one of xavier_uniform, xavier_normal, kaiming_uniform, kaiming_normal.

xavier_* take --gain (default 1); kaiming_* take their gain from --nonlinearity (default relu)
and --param, and divide by --mode (default fan_in). --nonlinearity is also the activation of
the --depth stack.
"""

EPILOG = """Examples:

\b
  needle init-stats kaiming_uniform
  needle init-stats xavier_normal --fan-in 784 --fan-out 100 --gain 1.5
  needle init-stats kaiming_normal --nonlinearity leaky_relu --param 0.2 --mode fan_out
  needle init-stats kaiming_uniform --kernel 3 --fan-in 64 --fan-out 128
  needle init-stats kaiming_uniform --depth 20 --width 512
  needle init-stats kaiming_uniform --kernel 3 --fan-in 32 --depth 10
  needle init-stats --compare xavier_uniform,kaiming_uniform --depth 10
  needle init-stats --config configs/quickstart.yaml --json
"""


def register(app: typer.Typer) -> None:
    """Add `needle init-stats` to the app."""
    app.command("init-stats", help=HELP, epilog=EPILOG)(init_stats)


def init_stats(
    scheme: Annotated[
        str | None,
        typer.Argument(
            metavar="SCHEME", help="Initializer, e.g. kaiming_uniform.", show_default=False
        ),
    ] = None,
    fan_in: Annotated[
        int | None,
        typer.Option(help="Fan-in [default: 256], e.g. --fan-in 784.", show_default=False),
    ] = None,
    fan_out: Annotated[
        int | None,
        typer.Option(help="Fan-out [default: 256], e.g. --fan-out 100.", show_default=False),
    ] = None,
    kernel: Annotated[
        int | None,
        typer.Option(
            metavar="K",
            help="A conv kernel's size: --fan-in and --fan-out are then the channels in and "
            "out, the fans in·K² and out·K², each draw a (K, K, in, out) kernel, e.g. --kernel 3.",
            show_default=False,
        ),
    ] = None,
    nonlinearity: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="kaiming's gain source and the --depth stack's activation [default: relu], "
            "e.g. --nonlinearity tanh.",
            show_default=False,
        ),
    ] = None,
    param: Annotated[
        float | None,
        typer.Option(
            metavar="A",
            help="leaky_relu's negative slope [default: 0.01], e.g. --param 0.2.",
            show_default=False,
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            help="kaiming: divide by fan_in or fan_out [default: fan_in], e.g. --mode fan_out.",
            show_default=False,
        ),
    ] = None,
    gain: Annotated[
        float | None,
        typer.Option(
            metavar="G", help="xavier's gain [default: 1], e.g. --gain 1.414.", show_default=False
        ),
    ] = None,
    samples: Annotated[
        int | None,
        typer.Option(
            metavar="K",
            help="Weights to draw, in whole fan_in×fan_out matrices [default: 65536], "
            "e.g. --samples 1000000.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seeds numpy's RNG [default: 0], e.g. --seed 3.", show_default=False),
    ] = None,
    depth: Annotated[
        int | None,
        typer.Option(
            metavar="L",
            help="Also push a batch through L layers built with the scheme, e.g. --depth 20.",
            show_default=False,
        ),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option(
            metavar="W",
            help="Width of the --depth stack's Linear layers [default: 256] (a --kernel stack "
            "has --fan-in channels), e.g. --width 512.",
            show_default=False,
        ),
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(
            metavar="S1,S2,…",
            help=f"Schemes to set side by side (with SCHEME if given), over a --depth stack "
            f"[default depth: {COMPARE_DEPTH}], e.g. --compare xavier_uniform,kaiming_uniform.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE.yaml",
            help="The statistics of each Linear layer of the model a training config builds, "
            "e.g. --config configs/quickstart.yaml.",
            show_default=False,
        ),
    ] = None,
    overrides: Overrides = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print every number as JSON, e.g. --json.")
    ] = False,
) -> None:
    from needle.errors import UsageError

    options = {
        "fan_in": fan_in,
        "fan_out": fan_out,
        "kernel": kernel,
        "nonlinearity": nonlinearity,
        "param": param,
        "mode": mode,
        "gain": gain,
        "samples": samples,
        "seed": seed,
        "depth": depth,
        "width": width,
    }
    given = {key: value for key, value in options.items() if value is not None}
    if config is not None:
        extra = ["--" + key.replace("_", "-") for key in given]
        extra += (["--compare"] if compare is not None else []) + (["SCHEME"] if scheme else [])
        if extra:
            raise UsageError(
                f"--config measures the Linear layers the config builds (with its own seed and "
                f"initializers); {', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not apply"
            )
        return _config(config, overrides or [], as_json)
    if overrides:
        raise UsageError("--set overrides a value of --config FILE.yaml; give --config too")
    if width is not None and depth is None and compare is None:
        raise UsageError("--width sets the --depth stack's layers; give --depth L too")
    schemes = ([scheme] if scheme else []) + _split_schemes(compare)
    if not schemes:
        raise UsageError(
            "give a SCHEME (e.g. needle init-stats kaiming_uniform), --compare S1,S2 or --config"
        )
    if compare is not None:
        given.setdefault("depth", COMPARE_DEPTH)

    from needle.init_stats import survey

    started = time.perf_counter()
    reports = survey(schemes, route_options=compare is not None, **given)
    elapsed = time.perf_counter() - started

    if as_json:
        entries = [report.to_dict() for report in reports]
        print_json(entries[0] if compare is None else {"schemes": entries})
        return
    out = console()
    if compare is None:
        stats, propagation = reports[0].stats, reports[0].propagation
        _render_stats(out, stats)
        if stats.theory.scheme.startswith("xavier") and nonlinearity and propagation is None:
            out.print(
                "[dim]note: xavier schemes take --gain; --nonlinearity only sets the activation "
                "of a --depth stack[/]"
            )
        if propagation is not None:
            _render_propagation(out, propagation)
    else:
        _render_comparison(out, reports)
    out.print(f"[dim]({elapsed:.2f} s)[/]")


# -- parsing -----------------------------------------------------------------------------------


def _split_schemes(text: str | None) -> list[str]:
    if text is None:
        return []
    from needle.errors import UsageError

    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError(f"--compare expects schemes separated by commas, got '{text}'")
    return names


# -- rendering ---------------------------------------------------------------------------------


def _distribution(stats: InitStats) -> str:
    theory = stats.theory
    scale = number(theory.scale.value)
    if theory.distribution == "uniform":
        return f"U(−{scale}, {scale})"
    return f"N(0, {scale}²)"


def _header(stats: InitStats) -> str:
    theory = stats.theory
    parts = [f"fan_in {theory.fan_in}", f"fan_out {theory.fan_out}"]
    if theory.kernel is not None:
        parts.insert(0, f"kernel {' × '.join(str(n) for n in theory.draw_shape)}")
    if theory.nonlinearity:
        parts.append(theory.nonlinearity + (f" a={theory.param:g}" if theory.param else ""))
    if theory.mode:
        parts.append(f"mode {theory.mode}")
    parts += [f"{stats.samples} samples", f"seed {stats.seed}"]
    return " · ".join(parts)


def _ks_line(stats: InitStats) -> str:
    ks = stats.ks
    verdict = (
        f"[green]✓ consistent with {_distribution(stats)}[/]"
        if ks.passed
        else f"[bold red]✗ not {_distribution(stats)}[/]"
    )
    return (
        f"Kolmogorov–Smirnov D = {ks.statistic:.4f}, critical {ks.coefficient:.3f}/√{ks.samples} = "
        f"{ks.critical:.4f} at α = {ks.alpha:g}: {verdict}"
    )


def _render_stats(out: Console, stats: InitStats) -> None:
    from rich.markup import escape
    from rich.text import Text

    out.print(f"[bold]init-stats {stats.theory.scheme}[/]  [dim]{_header(stats)}[/]")
    out.print(f"theory: {_distribution(stats)}")
    for formula in stats.theory.formulas:
        out.print(f"  {formula.text}")
    table = render.table()
    table.add_column("statistic")
    table.add_column("expected", justify="right")
    table.add_column("measured", justify="right")
    table.add_column("")
    for statistic in stats.statistics:
        table.add_row(
            statistic.name,
            f"{statistic.expected:.4f}",
            f"{statistic.measured:.4f}",
            f"[dim]{escape(statistic.note)}[/]",
        )
    out.print(table)
    out.print(_ks_line(stats))
    out.print()
    color = out.is_terminal and not out.no_color
    text = histogram_text(stats.histogram, _distribution(stats), color=color)
    out.print(Text.from_ansi(text), soft_wrap=True)
    if stats.histogram.outside:
        out.print(f"[dim]{stats.histogram.outside} draws beyond the edges[/]")


def histogram_text(histogram: Histogram, label: str, *, color: bool) -> str:
    """The draws' density as bars, one per bin, under the theoretical density's curve."""
    from needle_cli.charts import Bars
    from needle_cli.charts import histogram_text as draw

    bars = Bars(
        edges=list(histogram.edges),
        heights=list(histogram.density),
        curve=list(histogram.expected),
        title=f"density of the draws (bars) and of {label} (line)",
    )
    return draw(bars, width=HISTOGRAM_WIDTH, height=HISTOGRAM_HEIGHT, color=color)


def _trends(propagation: Propagation) -> tuple[str, str]:
    """The forward and the backward verdict, `×0.0476 vanishing`, coloured."""

    def text(trend: str, gain: float) -> str:
        if trend == "overflow":
            return "[bold red]overflow[/]"
        colour = "green" if trend == "steady" else "red"
        return f"[{colour}]×{number(gain)} {trend}[/]"

    return (
        text(propagation.forward_trend, propagation.forward_gain),
        text(propagation.backward_trend, propagation.backward_gain),
    )


def _stack(propagation: Propagation) -> str:
    """`depth 5 · width 256 · batch 256`, or a conv stack's kernel, channels and images."""
    head = f"[bold]depth {propagation.depth}[/] · "
    if propagation.kernel is None:
        return head + f"width {propagation.width} · batch {propagation.batch}"
    k, side, inner = propagation.kernel, propagation.image, propagation.interior
    return head + (
        f"conv {k}×{k} · {propagation.width} channels · {propagation.batch} images "
        f"{side}×{side}, std over the central {inner}×{inner}"
    )


def _render_propagation(out: Console, propagation: Propagation) -> None:
    out.print()
    out.print(
        f"{_stack(propagation)} · {propagation.activation} · input std "
        f"{propagation.input_std:.3f} · cotangent std {propagation.output_grad_std:.3f}"
    )
    table = render.table()
    table.add_column("layer", justify="right")
    for column in ("std z (forward)", "expected", "std ∂L/∂z (backward)", "expected"):
        table.add_column(column, justify="right")
    for signal in propagation.layers:
        table.add_row(
            str(signal.layer),
            number(signal.forward_std),
            _maybe(signal.expected_forward_std),
            number(signal.backward_std),
            _maybe(signal.expected_backward_std),
        )
    out.print(table)
    forward, backward = _trends(propagation)
    out.print(
        f"forward, layer 1 → {propagation.depth}: {forward}; "
        f"backward, layer {propagation.depth} → 1: {backward}"
    )


def _maybe(value: float | None) -> str:
    return "—" if value is None else number(value)


def _fit_table(*leading: str) -> Table:
    """Schemes against their theory, one row each (`_fit_cells`), after `leading` columns."""
    table = render.table()
    for column in (*leading, "scheme and formula"):
        table.add_column(column, no_wrap=True)
    for column in ("std", "expected", "KS D vs critical"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    return table


def _fit_cells(stats: InitStats) -> list[str]:
    theory, ks = stats.theory, stats.ks
    scale = theory.scale  # `bound = √2·√(3/256) = 0.1531`: the formula with its numbers only
    formula = f"{scale.quantity} = {scale.substituted} = {scale.value:.4f}"
    return [
        f"{theory.scheme}\n[dim]{formula}[/]",
        f"{stats.statistic('std').measured:.4f}",
        f"{theory.std:.4f}",
        f"{ks.statistic:.4f} {'≤' if ks.passed else '>'} {ks.critical:.4f}",
        "[green]✓ fits[/]" if ks.passed else "[bold red]✗ does not fit[/]",
    ]


def _render_comparison(out: Console, reports: list[SchemeReport]) -> None:
    out.print(f"[bold]init-stats --compare[/]  [dim]{_header(reports[0].stats)}[/]")
    table = _fit_table()
    for report in reports:
        table.add_row(*_fit_cells(report.stats))
    out.print(table)
    propagations = [report.propagation for report in reports if report.propagation]
    if not propagations:
        return
    head = propagations[0]
    out.print()
    out.print(f"{_stack(head)} · {head.activation}: std of z forward / of ∂L/∂z backward")
    layers = render.table()
    layers.add_column("layer", justify="right")
    for propagation in propagations:
        layers.add_column(f"{propagation.theory.scheme} fwd", justify="right")
        layers.add_column("bwd", justify="right")
    for i in range(head.depth):
        row = [str(i + 1)]
        for propagation in propagations:
            signal = propagation.layers[i]
            row += [number(signal.forward_std), number(signal.backward_std)]
        layers.add_row(*row)
    out.print(layers)
    for propagation in propagations:
        forward, backward = _trends(propagation)
        out.print(f"{propagation.theory.scheme}: forward {forward}, backward {backward}")


def _config(path: Path, overrides: list[str], as_json: bool) -> None:
    from rich.markup import escape

    from needle.init_stats import config_layer_stats
    from needle.train.config import load_config

    layers = config_layer_stats(load_config(path, overrides))
    if as_json:
        print_json({"config": str(path), "layers": [layer.to_dict() for layer in layers]})
        return
    out = console()
    out.print(
        f"[bold]init-stats --config {escape(str(path))}[/]  "
        f"[dim]{len(layers)} Linear and Conv layers[/]"
    )
    table = _fit_table("layer", "shape")
    for layer in layers:
        theory = layer.stats.theory
        table.add_row(
            escape(layer.name.removeprefix("model.")),
            "×".join(str(n) for n in theory.draw_shape),
            *_fit_cells(layer.stats),
        )
    out.print(table)
