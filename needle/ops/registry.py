"""The one list of needle's ops: each function registered under its own name.

An `OpSpec` knows the op class, its parameters, how to build valid random inputs for given
parameters, a few parameter settings worth checking, and where the op is not
differentiable. `Tensor` operators, the tests and `needle gradcheck` all read this table.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from needle.errors import UsageError, unknown_choice

Shape = tuple[int, ...]
# Draws one input array of a given shape (float64) from a generator.
Draw = Callable[[np.random.Generator, Shape], np.ndarray]
# Default input shapes for given parameters.
ShapesFor = Callable[[dict[str, Any]], list[Shape]]
# A random valid (parameters, input shapes) pair, for property tests.
RandomCase = Callable[[np.random.Generator], tuple[dict[str, Any], list[Shape]]]

REQUIRED = object()


@dataclass(frozen=True)
class OpParam:
    """One constructor argument of an op: `kind` is "scalar", "int", "axes", "axis_pair",
    "shape" or "choice" (one of `choices`)."""

    name: str
    kind: str
    help: str
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()  # the values a "choice" parameter takes

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Setting:
    """Parameters worth checking, with input shapes (None: the op's default shapes)."""

    params: dict[str, Any]
    shapes: tuple[Shape, ...] | None = None


@dataclass(frozen=True)
class OpSpec:
    name: str
    op_class: type
    function: Callable[..., Any]
    n_inputs: int
    params: tuple[OpParam, ...]
    shapes_for: ShapesFor
    random_case: RandomCase
    draws: tuple[Draw, ...]
    settings: tuple[Setting, ...]
    nondifferentiable: str | None = None
    summary: str = field(default="")
    # The function takes its n_inputs tensors as one sequence, as `stack(args, axis)` does.
    tuple_input: bool = False

    def resolve_params(self, given: dict[str, Any]) -> dict[str, Any]:
        """Fill defaults and reject unknown or missing parameters."""
        known = {p.name for p in self.params}
        for key in given:
            if key not in known:
                valid = ", ".join(sorted(known)) or "none"
                raise UsageError(f"op '{self.name}' has no parameter '{key}'; valid: {valid}")
        resolved = {}
        for p in self.params:
            if p.name in given:
                resolved[p.name] = given[p.name]
            elif p.required:
                raise UsageError(f"op '{self.name}' needs --{p.name.replace('_', '-')}")
            else:
                resolved[p.name] = p.default
        return resolved

    def sample_inputs(
        self,
        params: dict[str, Any],
        *,
        rng: np.random.Generator,
        shapes: Sequence[Shape] | None = None,
        dtype: Any = np.float64,
    ) -> list[np.ndarray]:
        """Random inputs that fit `params`, drawn away from the op's kinks and poles."""
        params = self.resolve_params(params)
        shapes = list(shapes) if shapes is not None else self.shapes_for(params)
        if len(shapes) != self.n_inputs:
            raise UsageError(
                f"op '{self.name}' takes {self.n_inputs} input(s), got {len(shapes)} shape(s)"
            )
        return [
            draw(rng, tuple(shape)).astype(dtype)
            for draw, shape in zip(self.draws, shapes, strict=True)
        ]

    def call(self, params: dict[str, Any], *tensors: Any) -> Any:
        """Apply the op's function to tensors with resolved `params`."""
        return self.apply(self.resolve_params(params), *tensors)

    def apply(self, params: dict[str, Any], *tensors: Any) -> Any:
        """Apply the op's function to tensors with `params` already resolved."""
        if self.tuple_input:
            return self.function(list(tensors), **params)
        return self.function(*tensors, **params)


REGISTRY: dict[str, OpSpec] = {}


def get_op(name: str) -> OpSpec:
    """Look an op up by function name; an unknown name gets a did-you-mean."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise unknown_choice("op", name, REGISTRY) from None


def register(
    op_class: type,
    *,
    n_inputs: int = 1,
    params: Sequence[OpParam] = (),
    shapes_for: ShapesFor | None = None,
    random_case: RandomCase | None = None,
    draws: Sequence[Draw] | Draw | None = None,
    settings: Sequence[Setting | dict[str, Any]] = ({},),
    nondifferentiable: str | None = None,
    tuple_input: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated op function under its own name."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        name = function.__name__
        if name in REGISTRY:
            raise RuntimeError(f"op '{name}' registered twice")
        draw_list = draws if isinstance(draws, Sequence) else [draws or normal] * n_inputs
        REGISTRY[name] = OpSpec(
            name=name,
            op_class=op_class,
            function=function,
            n_inputs=n_inputs,
            params=tuple(params),
            shapes_for=shapes_for or (lambda _params: [(3, 4)] * n_inputs),
            random_case=random_case or elementwise_case(n_inputs),
            draws=tuple(draw_list),
            settings=tuple(s if isinstance(s, Setting) else Setting(s) for s in settings),
            nondifferentiable=nondifferentiable,
            tuple_input=tuple_input,
            summary=(function.__doc__ or "").strip().partition("\n")[0],
        )
        return function

    return decorate


# -- drawing inputs ----------------------------------------------------------------------
def normal(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    return rng.standard_normal(shape)


def positive(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Values in [0.5, 2): inside the domain of log, roots and negative powers."""
    return rng.uniform(0.5, 2.0, shape)


def away_from_zero(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Magnitudes in [0.5, 2) with random signs: clear of kinks and poles at 0."""
    return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def distinct(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Values at least 0.2 apart in a random order: no window's maximum is near a tie (a
    central difference never crosses from one maximum to another), and no group standardize
    takes is near-constant (its x̂ would be tiny against the rounding of x − μ)."""
    count = int(np.prod(shape))
    spaced = (rng.permutation(count) - count / 2) * 0.25
    return (spaced + rng.uniform(0.0, 0.05, count)).reshape(shape)


# -- random cases for property tests -----------------------------------------------------
def random_shape(rng: np.random.Generator, min_ndim: int = 0, max_ndim: int = 3) -> Shape:
    ndim = int(rng.integers(min_ndim, max_ndim + 1))
    return tuple(int(n) for n in rng.integers(1, 5, ndim))


def broadcastable_pair(rng: np.random.Generator) -> tuple[Shape, Shape]:
    """Two shapes that broadcast under numpy's rules (one may have fewer axes or size-1 axes)."""
    full = random_shape(rng, 0, 3)
    other = list(full[int(rng.integers(0, len(full) + 1)) :])
    for i in range(len(other)):
        if rng.random() < 0.3:
            other[i] = 1
    pair = (full, tuple(other))
    return pair if rng.random() < 0.5 else pair[::-1]


def elementwise_case(n_inputs: int) -> RandomCase:
    def case(rng: np.random.Generator) -> tuple[dict[str, Any], list[Shape]]:
        if n_inputs == 2:
            return {}, list(broadcastable_pair(rng))
        return {}, [random_shape(rng)] * n_inputs

    return case


def random_axes(rng: np.random.Generator, ndim: int) -> int | tuple[int, ...] | None:
    """None, an int or a tuple of distinct axes, sometimes negative."""
    choice = rng.integers(0, 3) if ndim else 0
    if choice == 0:
        return None
    axes = [int(a) for a in rng.permutation(ndim)[: int(rng.integers(1, ndim + 1))]]
    axes = [a - ndim if rng.random() < 0.3 else a for a in axes]
    return axes[0] if choice == 1 else tuple(axes)


def as_axes(axes: int | Sequence[int] | None) -> int | tuple[int, ...] | None:
    """`axes` as None, an int or a tuple: a list or an array of axes becomes a tuple, which
    `normalize_axes` can cache. Ops store their `axes` this way when they are made."""
    if axes is None or isinstance(axes, (int, np.integer, tuple)):
        return axes
    return tuple(axes)


@functools.lru_cache(maxsize=4096, typed=True)
def normalize_axes(axes: int | tuple[int, ...] | None, ndim: int) -> tuple[int, ...]:
    """Axes (None, an int or a tuple, see `as_axes`) as a sorted tuple of non-negative ints;
    None means all axes."""
    # Cached: reductions and their gradients ask for the same few answers on every step.
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    normalized = []
    for axis in axes:
        if not -ndim <= axis < ndim:
            raise UsageError(f"axis {axis} is out of range for an input with {ndim} axes")
        normalized.append(int(axis) % ndim)
    if len(set(normalized)) != len(normalized):
        raise UsageError(f"axes {tuple(axes)} repeat an axis")
    return tuple(sorted(normalized))
