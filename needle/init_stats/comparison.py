"""Several schemes side by side: `survey` measures each scheme's draws and, given a depth, the
signal through a stack built with it, as `needle init-stats --compare` shows them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from needle.errors import UsageError
from needle.init_stats.measurement import DEFAULT_SAMPLES, InitStats, init_stats
from needle.init_stats.propagation import Propagation, propagate, stack_size


@dataclass(frozen=True)
class SchemeReport:
    """One scheme's draws against its theory, and the signal through a stack built with it
    (None when no stack was asked for)."""

    stats: InitStats
    propagation: Propagation | None

    def to_dict(self) -> dict[str, Any]:
        propagation = self.propagation.to_dict() if self.propagation else None
        return {"stats": self.stats.to_dict(), "propagation": propagation}


# The options only one family of schemes takes.
_FAMILY_OPTIONS = {"gain": "xavier", "mode": "kaiming", "param": "kaiming"}


def survey(
    schemes: Sequence[str],
    *,
    fan_in: int = 256,
    fan_out: int = 256,
    nonlinearity: str | None = None,
    param: float | None = None,
    mode: str | None = None,
    gain: float | None = None,
    kernel: int | None = None,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    depth: int | None = None,
    width: int | None = None,
    route_options: bool = False,
) -> list[SchemeReport]:
    """`init_stats` of each scheme and, given a `depth`, `propagate` through a stack of `depth`
    layers of `width` (default 256) built with it, all from the same seed (so every stack
    sees the same input batch). With a `kernel` the stack is of conv layers with `fan_in`
    channels in and out (a width is then refused).

    `nonlinearity` is the stack's activation and kaiming's gain source; a leaky_relu stack
    takes `param` as its slope, whatever the scheme. With `route_options` each scheme takes
    the options its family takes (`gain`: xavier; `mode`, `param`: kaiming), and an option no
    listed scheme takes is an error; without, every option goes to every scheme, and `theory`
    refuses one that does not apply.
    """
    if len(set(schemes)) != len(schemes):
        raise UsageError(f"a scheme is listed twice: {', '.join(schemes)}")
    options = {"nonlinearity": nonlinearity, "param": param, "mode": mode, "gain": gain}
    stack = depth is not None
    if kernel is not None and width is not None:
        raise UsageError(
            f"width sets a Linear stack's features; a conv stack (kernel {kernel}) has fan_in "
            f"({fan_in}) channels"
        )
    if kernel is not None:
        width = fan_in
    width = 256 if width is None else width
    if stack:  # refused before any scheme's draws, not after them
        stack_size(depth, width, kernel=kernel)
    routed = [_scheme_options(s, options, stack=stack, route=route_options) for s in schemes]
    if route_options:
        taken = {key for _, stack_options in routed for key in stack_options}
        for option, family in _FAMILY_OPTIONS.items():
            if options[option] is not None and option not in taken:
                raise UsageError(
                    f"{option} applies to {family}_* schemes, and none is compared "
                    f"({', '.join(schemes)})"
                )
    reports = []
    for scheme, (stats_options, stack_options) in zip(schemes, routed, strict=True):
        stats = init_stats(
            scheme, fan_in, fan_out, kernel=kernel, samples=samples, seed=seed, **stats_options
        )
        propagation = None
        if stack:
            propagation = propagate(
                scheme, depth=depth, width=width, kernel=kernel, seed=seed, **stack_options
            )
        reports.append(SchemeReport(stats, propagation))
    return reports


def _scheme_options(
    scheme: str, options: dict[str, Any], *, stack: bool, route: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options of `options` that are given, split for one scheme into (those of its
    weights' statistics, those of its stack)."""
    xavier = scheme.startswith("xavier")
    stack_slope = stack and options["nonlinearity"] == "leaky_relu"
    left_out = set()
    if route:
        left_out = {key for key, family in _FAMILY_OPTIONS.items() if not scheme.startswith(family)}
    if stack_slope:
        left_out.discard("param")
    stack_options = {k: v for k, v in options.items() if v is not None and k not in left_out}
    stack_only = set()
    if xavier:  # its weights depend on gain alone: the activation and its slope are the stack's
        stack_only = {"nonlinearity", "param"} if stack_slope else {"nonlinearity"}
    stats_options = {k: v for k, v in stack_options.items() if k not in stack_only}
    return stats_options, stack_options
