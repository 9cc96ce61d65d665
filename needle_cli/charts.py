"""Curves and histograms drawn with plotext in the terminal, or with matplotlib as a PNG.

A chart is plain data (`Panel`s of `Line`s, or a `Bars` histogram); this module only lays
it out. plotext draws on one figure of its own module, so each chart clears it first.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

PANEL_HEIGHT = 12  # rows of one panel, legend and axes included, unless the legend needs more
MAX_WIDTH = 100  # columns: wider terminals get no more, a line plot gains little past it
PIPE_WIDTH = 80  # columns when the output has no width of its own
# Without colour the lines of a panel differ by marker: braille dots, then single characters.
PLAIN_MARKERS = ("braille", "•", "x", "+", "o", "*")


@dataclass(frozen=True)
class Line:
    """One labelled series: `y[i]` at `x[i]`, every value finite."""

    label: str
    x: list[float]
    y: list[float]


@dataclass(frozen=True)
class Panel:
    """Lines drawn over the same axes, titled."""

    title: str
    lines: list[Line]
    xlabel: str = "epoch"


@dataclass(frozen=True)
class Bars:
    """A histogram: `heights[i]` over [edges[i], edges[i+1]), with a `curve` at the bins'
    centres drawn over it (a theoretical density); the title says which is which."""

    edges: list[float]
    heights: list[float]
    curve: list[float]
    title: str


def tick_label(value: float) -> str:
    """A tick's number in 4 significant digits: the extremes of a series read as written."""
    return f"{value:.4g}"


def _figure(width: int, height: int, rows: int):
    import plotext

    figure = plotext.figure
    figure.clear()
    plotext.terminal.limit(False, False)  # the size asked for, whatever the terminal's
    figure.plot_size(width, height)
    if rows > 1:  # a grid of one is no grid: plotext then has no subplot (1, 1)
        figure.subplots(rows, 1)
    figure.theme("simple")  # no painted background: legible on light and dark terminals
    return figure


def _legend_rows(entries: int) -> int:
    return 2 * entries + 3  # plotext's box: a row per entry, a blank between, a frame


def _y_ticks(values: list[float]) -> list[float]:
    """Five ticks from the lowest value to the highest, so both extremes are printed."""
    low, high = min(values), max(values)
    if low == high:
        return [low]
    return [low + (high - low) * i / 4 for i in range(5)]


def _x_ticks(values: list[float]) -> list[float]:
    """Whole epochs a whole step apart, at most eight, the first and the last among them."""
    first, last = round(min(values)), round(max(values))
    step = max(1, math.ceil((last - first) / 7))
    ticks = list(range(first, last + 1, step))
    if ticks[-1] != last:
        if len(ticks) > 1 and last - ticks[-1] < step / 2:
            ticks.pop()  # too close to the last epoch to label both
        ticks.append(last)
    return ticks


def _y_limits(values: list[float]) -> tuple[float, float]:
    """The lowest and the highest value; around a constant, a band a tenth of it wide."""
    low, high = min(values), max(values)
    if low == high:
        half = abs(low) / 20 or 1.0
        return low - half, high + half
    return low, high


def _legend_corner(lines: list[Line]) -> tuple[str, str]:
    """The corner (ha, va) of the panel with the fewest points, where the legend hides least:
    a falling loss leaves the top right free, a rising accuracy the bottom right."""
    xs = [x for line in lines for x in line.x]
    ys = [y for line in lines for y in line.y]
    x_mid, y_mid = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    corners = [("right", "top"), ("right", "bottom"), ("left", "top"), ("left", "bottom")]

    def crowd(corner: tuple[str, str]) -> int:
        ha, va = corner
        return sum(
            (x >= x_mid if ha == "right" else x <= x_mid)
            and (y >= y_mid if va == "top" else y <= y_mid)
            for x, y in zip(xs, ys, strict=True)
        )

    return min(corners, key=crowd)  # ties: the first, the top right


def panels_text(panels: list[Panel], *, width: int, height: int = PANEL_HEIGHT, color: bool) -> str:
    """The panels one above the other, `width` columns wide, each at least `height` rows."""
    heights = [max(height, _legend_rows(len(p.lines)) + 6) for p in panels]
    figure = _figure(width, sum(heights), len(panels))
    for row, (panel, rows) in enumerate(zip(panels, heights, strict=True), start=1):
        plot = figure.subplot(row, 1) if len(panels) > 1 else figure
        plot.plot_size(width, rows)
        for i, line in enumerate(panel.lines):
            marker = "braille" if color else PLAIN_MARKERS[i % len(PLAIN_MARKERS)]
            signal = plot.signal(line.x, line.y, marker=marker)
            signal.label(line.label)
            signal.lines()
            plot.draw(signal)
        plot.title(panel.title)
        xs = [x for line in panel.lines for x in line.x]
        ys = [y for line in panel.lines for y in line.y]
        x_ticks, y_ticks = _x_ticks(xs), _y_ticks(ys)
        low, high = _y_limits(ys)
        plot.ruler("x").ticks(x_ticks, [tick_label(x) for x in x_ticks])
        plot.ruler("x").lim(min(xs), max(xs))
        plot.ruler("y").ticks(y_ticks, [tick_label(y) for y in y_ticks])
        plot.ruler("y").lim(low, high)
        ha, va = _legend_corner(panel.lines)
        plot.legend(
            x=max(xs) if ha == "right" else min(xs),
            y=high if va == "top" else low,
            ha=ha,
            va=va,
            relative=True,
        )
        if row == len(panels):
            plot.label(panel.xlabel)
    return figure.build().string(colorless=not color)


def histogram_text(bars: Bars, *, width: int, height: int, color: bool) -> str:
    """A histogram's bars with its curve over them."""
    plot = _figure(width, height, 1)
    centres = [(a + b) / 2 for a, b in zip(bars.edges, bars.edges[1:], strict=False)]
    # bar() takes its width as a fraction of the spacing: 1 makes the bins touch.
    plot.draw(plot.bar(centres, bars.heights, width=1))
    curve = plot.signal(centres, bars.curve, marker="braille")
    curve.lines()
    plot.draw(curve)
    # No legend: on a uniform's flat top there is no free corner for it; the title names both.
    top = max(max(bars.heights), max(bars.curve))
    y_ticks = _y_ticks([0.0, top])
    plot.ruler("y").ticks(y_ticks, [tick_label(y) for y in y_ticks])
    plot.ruler("y").lim(0.0, 1.1 * top)  # headroom, so bars that overshoot the curve show
    low, high = bars.edges[0], bars.edges[-1]
    x_ticks = [low, (low + high) / 2, high]
    plot.ruler("x").ticks(x_ticks, [tick_label(x) for x in x_ticks])
    plot.ruler("x").lim(low, high)
    plot.title(bars.title)
    return plot.build().string(colorless=not color)


def write_png(panels: list[Panel], path: Path) -> None:
    """The panels one above the other as a PNG at `path` (matplotlib, from the plot extra).
    Written whole or not at all."""
    from needle.errors import NeedleError
    from needle.fileio import write_bytes

    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise NeedleError(
            "--png needs matplotlib, which needle leaves optional: pip install 'needle[plot]'"
        ) from None
    figure = Figure(figsize=(7, 2.6 * len(panels)), layout="constrained")
    for axes, panel in zip(
        figure.subplots(len(panels), 1, squeeze=False)[:, 0], panels, strict=True
    ):
        for line in panel.lines:
            axes.plot(line.x, line.y, marker="." if len(line.x) < 30 else None, label=line.label)
        axes.set_title(panel.title)
        axes.set_xlabel(panel.xlabel)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    try:
        write_bytes(path, buffer.getvalue())
    except OSError as err:
        raise NeedleError(f"cannot write '{path}': {err.strerror}") from None
