"""`check_gradients`: a function's analytic gradient against central differences.

The function returns a Tensor or a TensorTuple (`split`). For a tuple the cotangent is a
tuple of random arrays `v_i`, one per element, and φ = Σ_i ⟨v_i, out_i⟩.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from needle import init
from needle.autograd import Op, Tensor, TensorTuple, Value, compute_gradient_of_variables
from needle.backend_ndarray import api
from needle.devices import Device, check_device
from needle.errors import UsageError
from needle.gradcheck.report import GradcheckReport, InputReport
from needle.gradcheck.tolerances import (
    DEFAULT_EPS,
    default_tolerances,
    rounding_floor,
    validate_tolerances,
)
from needle.ops.tuples import make_tuple

# One-sided slopes further apart than this (relative to their size) mark a kink; for a
# smooth function they differ by about h·|φ''|, far below it.
KINK_TOLERANCE = 1e-3


Function = Callable[..., Value]  # Tensors in; a Tensor or a TensorTuple out
# One random array per element of the output: one for a Tensor.
Cotangent = list[np.ndarray]


def output_arrays(out: Value) -> list[Any]:
    """The arrays of a function's result: one for a Tensor, one per element of a tuple."""
    return list(out.cached_data) if isinstance(out, TensorTuple) else [out.cached_data]


def output_size(out: Value) -> int:
    """How many numbers a function's result holds (0 for an empty tensor or tuple)."""
    return sum(a.size for a in output_arrays(out))


def describe_output(out: Value) -> str:
    """`shape (0, 3)`, or for a tuple the shapes of its elements."""
    if isinstance(out, TensorTuple):
        return f"{len(out)} tensors of shapes {[a.shape for a in out.cached_data]}"
    return f"shape {out.shape}"


def check_gradients(
    fn: Function,
    inputs: Sequence[np.ndarray],
    *,
    dtype: Any = None,
    eps: float = DEFAULT_EPS,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    order: int = 1,
    fast: bool = False,
    projections: int = 3,
    label: str = "",
    params: dict[str, Any] | None = None,
    input_names: Sequence[str] = (),
    device: Device | None = None,
) -> GradcheckReport:
    """Compare `fn`'s analytic gradient with central differences, input by input.

    Args:
        fn: a function of needle Tensors returning a Tensor.
        inputs: numpy arrays, one per argument of `fn`.
        dtype: dtype of the analytic computation (default: float64). The numerical side
            always runs in float64.
        eps: relative finite-difference step: `h = eps · max(1, |x|)`.
        atol, rtol: an element passes when `|analytic − numerical| ≤ atol + rtol·|numerical|
            + floor`, the floor being what rounding alone explains (defaults by dtype and
            eps, `default_tolerances`; the reasoning is in `needle.gradcheck.tolerances`).
        seed: seeds the random cotangent (and projections).
        order: 2 checks the gradient and also its gradient, like torch's gradcheck with
            gradgradcheck: the gradient of `Σ ⟨w_i, ∂⟨v, f⟩/∂x_i⟩` for random `w_i` is
            compared too (`GradcheckReport.second_order`), with draws of its own, so the
            first order's comparisons are those of order 1.
        fast: compare random projections `⟨g, u⟩` instead of every element — a few function
            evaluations per input instead of two per element.
        projections: number of random directions per input with `fast`.
        label, params, input_names: carried into the report to say what was checked;
            inputs without names are named by position, "0", "1", ….
        device: where `fn` computes (default `default_device()`); the comparison is numpy
            float64 on the host either way.

    Settings under which the check could not fail or could not run raise `UsageError`:
    see `validate_tolerances`; `order` other than 1 or 2; `projections` < 1; an input or
    an output with no elements.
    """
    if order not in (1, 2):
        raise UsageError(f"order must be 1 or 2 (got {order})")
    validate_tolerances(eps=eps, atol=atol, rtol=rtol)
    if not (isinstance(projections, (int, np.integer)) and projections >= 1):
        raise UsageError(f"projections must be a positive integer (got {projections})")
    dtype = np.dtype(dtype or np.float64)
    if dtype.kind != "f":
        raise UsageError(f"gradients need a floating dtype (got {dtype})")
    tolerances = default_tolerances(dtype, eps)
    atol = tolerances["atol"] if atol is None else atol
    rtol = tolerances["rtol"] if rtol is None else rtol
    seed = init.check_seed(seed)
    device = check_device(device)
    # Rounded to the analytic side's dtype, so that both sides differentiate at one point.
    arrays = [np.asarray(x, dtype=np.float64).astype(dtype).astype(np.float64) for x in inputs]
    for i, x in enumerate(arrays):
        if x.size == 0:
            raise UsageError(f"input {i} has shape {x.shape}, with no elements to check")
    settings = dict(eps=eps, atol=atol, rtol=rtol, n=projections, fast=fast, dtype=dtype)
    first = _compare(fn, arrays, np.random.default_rng(seed), order=1, device=device, **settings)
    second: tuple[InputReport, ...] = ()
    if order == 2:
        # Its own stream of draws, so the first order's comparisons are those of order 1.
        rng = np.random.default_rng([seed, 2])
        try:
            gradient_fn = _gradient_function(fn, arrays, rng, dtype, device)
            second = _compare(gradient_fn, arrays, rng, order=2, device=device, **settings)
        except GradientRaised as err:  # the gradient itself cannot be computed
            second = tuple(_problem(i, x.shape, str(err), order=2) for i, x in enumerate(arrays))
    return GradcheckReport(
        inputs=first,
        second_order=second,
        dtype=dtype.name,
        order=order,
        fast=fast,
        eps=eps,
        atol=atol,
        rtol=rtol,
        seed=seed,
        label=label,
        params=dict(params or {}),
        input_names=tuple(input_names) or tuple(map(str, range(len(inputs)))),
    )


def _compare(
    fn: Function,
    arrays: list[np.ndarray],
    rng: np.random.Generator,
    *,
    order: int,
    dtype: np.dtype,
    fast: bool,
    device: Device | None,
    **settings: Any,
) -> tuple[InputReport, ...]:
    """`fn`'s analytic gradient against central differences of `φ = ⟨v, fn⟩`, per input."""
    cotangent = _cotangent(fn, arrays, rng, dtype, device)
    # At order 2 fn runs a backward pass itself, whatever the inputs require: raised there,
    # an error cannot be put down to one input.
    analytic = _analytic(fn, arrays, cotangent, dtype, device, per_input=order == 1)

    def terms(xs: list[np.ndarray]) -> np.ndarray:
        out = fn(*_constants(xs, device))
        return np.concatenate(
            [
                (v * api(a).to_numpy(a)).ravel()
                for v, a in zip(cotangent, output_arrays(out), strict=True)
            ]
        )

    def phi(xs: list[np.ndarray]) -> float:
        return float(np.sum(terms(xs)))

    # φ at the unperturbed inputs, shared by every input, and Φ = Σ|v·f|, the size of the
    # terms φ adds up, which its rounding error is relative to.
    at_base = terms(arrays)
    base, size = float(np.sum(at_base)), float(np.sum(np.abs(at_base)))
    compare = _compare_projections if fast else _compare_elements
    reports = []
    for i, grad in enumerate(analytic):
        if isinstance(grad, str):
            report = _problem(i, arrays[i].shape, grad)
        elif grad.shape != arrays[i].shape:
            message = f"gradient has shape {grad.shape}, input has shape {arrays[i].shape}"
            report = _problem(i, arrays[i].shape, message)
        else:
            report = compare(
                i,
                phi,
                base,
                arrays,
                grad,
                rng=rng,
                terms=size,
                dtype=dtype,
                order=order,
                **settings,
            )
        reports.append(dataclasses.replace(report, order=order))
    return tuple(reports)


def _constants(arrays: Sequence[np.ndarray], device: Device | None) -> list[Tensor]:
    return [Tensor(x, device=device, requires_grad=False) for x in arrays]


def _cotangent(
    fn: Function,
    arrays: list[np.ndarray],
    rng: np.random.Generator,
    dtype: np.dtype,
    device: Device | None,
) -> Cotangent:
    """A random cotangent for fn's output (an array per element of a tuple), in float64
    holding values of `dtype`, so both sides use the same one."""
    out = fn(*_constants(arrays, device))
    # An empty cotangent makes every gradient 0 on both sides: a check that cannot fail.
    if output_size(out) == 0:
        raise UsageError(f"the output has {describe_output(out)}, with no elements to check")
    return [_draw(rng, a.shape, dtype) for a in output_arrays(out)]


def _seed_backward(out: Value, cotangent: Cotangent, device: Device | None) -> None:
    """The backward pass from `out` under `cotangent`, in the dtypes of out's arrays."""
    grads = [
        Tensor(v.astype(a.dtype), device=device, requires_grad=False)
        for v, a in zip(cotangent, output_arrays(out), strict=True)
    ]
    tuple_out = isinstance(out, TensorTuple)
    compute_gradient_of_variables(out, make_tuple(*grads) if tuple_out else grads[0])


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype).astype(np.float64)


class GradientRaised(Exception):
    """The gradient under check raised (inside a function that differentiates it, order 2)."""


def _raised(err: Exception) -> str:
    """`backward raised UsageError in MatMul.gradient: …`: the error, and the op whose
    `gradient` raised it (the innermost one on the traceback)."""
    if isinstance(err, GradientRaised):
        return str(err)
    where = ""
    tb = err.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if tb.tb_frame.f_code.co_name == "gradient" and isinstance(owner, Op):
            where = f" in {type(owner).__name__}.gradient"
        tb = tb.tb_next
    message = str(err).strip().splitlines()
    return f"backward raised {type(err).__name__}{where}: {message[0] if message else ''}"


def _analytic(
    fn: Function,
    arrays: list[np.ndarray],
    cotangent: Cotangent,
    dtype: np.dtype,
    device: Device | None,
    *,
    per_input: bool,
) -> list[np.ndarray | str]:
    """Each input's gradient `Jᵀv`, computed in `dtype`; where backward raised, what it
    raised. One backward pass for all the inputs; if it raises and `per_input`, one pass per
    input (the others constant), to tell which input's gradient cannot be computed."""
    everything = range(len(arrays))
    try:
        return _backward(fn, arrays, cotangent, dtype, device, everything)
    # The code under check is the gradient: whatever it raises is its failure, not ours.
    except Exception as err:
        if not per_input or len(arrays) == 1:
            return [_raised(err)] * len(arrays)
    grads: list[np.ndarray | str] = []
    for i in everything:
        try:
            grads.append(_backward(fn, arrays, cotangent, dtype, device, [i])[i])
        except Exception as err:
            grads.append(_raised(err))
    return grads


def _backward(
    fn: Function,
    arrays: list[np.ndarray],
    cotangent: Cotangent,
    dtype: np.dtype,
    device: Device | None,
    wanted: Sequence[int],
) -> list[np.ndarray]:
    leaves = [
        Tensor(x.astype(dtype), device=device, requires_grad=i in wanted)
        for i, x in enumerate(arrays)
    ]
    out = fn(*leaves)
    # fn may have run a backward pass of its own (order 2): start from clean gradients.
    for leaf in leaves:
        leaf.grad = None
    if out.requires_grad:
        _seed_backward(out, cotangent, device)
    return [
        np.zeros_like(x) if leaf.grad is None else leaf.grad.numpy().astype(np.float64)
        for x, leaf in zip(arrays, leaves, strict=True)
    ]


def _gradient_function(
    fn: Function,
    arrays: list[np.ndarray],
    rng: np.random.Generator,
    dtype: np.dtype,
    device: Device | None,
) -> Function:
    """`x ↦ Σ_i ⟨w_i, ∂⟨v, f(x)⟩/∂x_i⟩`: checking its gradient checks second derivatives."""
    inner_cotangent = _cotangent(fn, arrays, rng, dtype, device)
    weights = [_draw(rng, x.shape, dtype) for x in arrays]

    def gradient_dot(*xs: Tensor) -> Tensor:
        # Constant inputs (the numerical side) become leaves so backward reaches them.
        leaves = [x if x.requires_grad else Tensor(x, requires_grad=True) for x in xs]
        out = fn(*leaves)
        out_dtype = output_arrays(out)[0].dtype
        total = Tensor(np.zeros((), dtype=out_dtype), device=device, requires_grad=False)
        if not out.requires_grad:
            return total
        try:
            _seed_backward(out, inner_cotangent, device)
        except Exception as err:  # see _analytic
            raise GradientRaised(_raised(err)) from err
        for leaf, w in zip(leaves, weights, strict=True):
            if leaf.grad is not None:
                weight = Tensor(w.astype(out_dtype), device=device, requires_grad=False)
                total = total + (leaf.grad * weight).sum()
        return total

    return gradient_dot


def _problem(index: int, shape: tuple, problem: str, *, order: int = 1) -> InputReport:
    """A failed comparison that has no numbers: the gradient could not be compared."""
    return InputReport(
        index=index,
        shape=shape,
        max_abs_error=float("inf"),
        max_rel_error=float("inf"),
        worst_index=None,
        analytic=float("nan"),
        numerical=float("nan"),
        tolerance=float("nan"),
        passed=False,
        checked=0,
        problem=problem,
        order=order,
    )


def _step(x: np.ndarray | float, eps: float) -> np.ndarray | float:
    return eps * np.maximum(1.0, np.abs(x))


def _is_kink(forward: float, backward: float, floor: float) -> bool:
    """One-sided slopes further apart than smooth bending and rounding explain."""
    spread = KINK_TOLERANCE * max(1.0, abs(forward), abs(backward))
    return abs(forward - backward) > spread + 4 * floor  # each slope: 2 roundings over h


def _summarize(
    index: int,
    shape: tuple[int, ...],
    analytic: np.ndarray,
    numerical: np.ndarray,
    positions: list[tuple[int, ...]],
    kinks: list[tuple[int, ...]],
    *,
    floor: np.ndarray,
    atol: float,
    rtol: float,
) -> InputReport:
    """Errors over the compared values that are not kinks; the worst is the one furthest
    beyond its tolerance. Values that are 0 within rounding on both sides (|analytic| and
    |numerical| within atol + floor) are counted as zeros: their relative error says
    nothing, so it is taken over the others (None when there are none)."""
    kink_set = set(kinks)
    keep = np.array([p not in kink_set for p in positions], dtype=bool)
    abs_err = np.abs(analytic - numerical)
    absolute = atol + floor
    larger = np.maximum(np.abs(analytic), np.abs(numerical))
    zero = keep & (larger <= absolute)
    tolerance = absolute + rtol * np.abs(numerical)
    # Floored so that zero tolerances (atol = rtol = 0) rank errors instead of dividing by 0.
    excess = np.where(keep, abs_err / np.maximum(tolerance, 1e-300), -1.0)
    worst = int(np.argmax(excess)) if keep.any() else None  # None: every value is a kink
    relative = keep & ~zero
    rel_err = abs_err[relative] / larger[relative]
    return InputReport(
        index=index,
        shape=shape,
        max_abs_error=0.0 if worst is None else float(abs_err[keep].max()),
        max_rel_error=float(rel_err.max()) if rel_err.size else None,
        worst_index=None if worst is None else positions[worst],
        analytic=float("nan") if worst is None else float(analytic[worst]),
        numerical=float("nan") if worst is None else float(numerical[worst]),
        tolerance=float("nan") if worst is None else float(tolerance[worst]),
        passed=bool(np.all(abs_err[keep] <= tolerance[keep])),
        checked=len(positions),
        zeros=int(zero.sum()),
        nondifferentiable=tuple(kinks),
    )


def _compare_elements(
    i, phi, base, arrays, grad, *, eps, atol, rtol, terms, dtype, order, rng, n
) -> InputReport:
    x = arrays[i]
    positions = list(np.ndindex(*x.shape))  # C order, as grad.ravel()
    steps = _step(x, eps)
    floor = np.ravel(rounding_floor(np.abs(x), steps, terms, dtype, order))
    numerical = np.empty(len(positions))
    kinks = []
    work = x.copy()
    shifted = [work if j == i else a for j, a in enumerate(arrays)]
    for k, position in enumerate(positions):
        h = float(steps[position])
        work[position] = x[position] + h
        plus = phi(shifted)
        work[position] = x[position] - h
        minus = phi(shifted)
        work[position] = x[position]
        numerical[k] = (plus - minus) / (2 * h)
        if _is_kink((plus - base) / h, (base - minus) / h, floor[k]):
            kinks.append(position)
    return _summarize(
        i, x.shape, grad.ravel(), numerical, positions, kinks, floor=floor, atol=atol, rtol=rtol
    )


def _compare_projections(
    i, phi, base, arrays, grad, *, eps, atol, rtol, terms, dtype, order, rng, n
) -> InputReport:
    """⟨g, u⟩ against the directional derivative along u, for n random unit directions u."""
    x = arrays[i]
    magnitude = np.max(np.abs(x), initial=0.0)
    h = float(_step(magnitude, eps))
    floor = np.full(n, rounding_floor(magnitude, h, terms, dtype, order))
    analytic, numerical, kinks = np.empty(n), np.empty(n), []
    for k in range(n):
        u = rng.standard_normal(x.shape)
        u /= max(np.linalg.norm(u), 1e-300)
        plus = phi([a + h * u if j == i else a for j, a in enumerate(arrays)])
        minus = phi([a - h * u if j == i else a for j, a in enumerate(arrays)])
        numerical[k] = (plus - minus) / (2 * h)
        analytic[k] = float(np.sum(grad * u))
        if _is_kink((plus - base) / h, (base - minus) / h, floor[k]):
            kinks.append((k,))
    positions = [(k,) for k in range(n)]
    return _summarize(
        i, x.shape, analytic, numerical, positions, kinks, floor=floor, atol=atol, rtol=rtol
    )
