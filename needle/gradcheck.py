"""Check analytic gradients against numerical differentiation.

The analytic side is needle's backward pass under a random cotangent `v` (so a backward
that ignores `out_grad` fails): for each input, `g = Jᵀv`. The numerical side
differentiates `φ(x) = ⟨v, f(x)⟩` by central differences in float64, with a step scaled to
each element's magnitude, `h = eps · max(1, |x|)`.

Where the two one-sided differences disagree (relu at 0, a tie of a max), `φ` has a kink:
such an element is reported as a non-differentiable point, not as a gradient error.

    >>> import numpy as np, needle as ndl
    >>> from needle.gradcheck import check_gradients
    >>> report = check_gradients(lambda x: ndl.logsumexp(x, axes=(1,)), [np.ones((2, 3))])
    >>> report.passed
    True
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from needle import init
from needle.autograd import Tensor
from needle.errors import UsageError
from needle.ops.registry import REGISTRY, OpSpec, get_op

# Tolerances by the dtype of the analytic computation: float32 rounds at ~6e-8 per
# operation, so it gets looser bounds than float64 rather than failing falsely.
DEFAULT_TOLERANCES = {
    "float64": {"atol": 1e-5, "rtol": 1e-3},
    "float32": {"atol": 1e-4, "rtol": 5e-3},
}
DEFAULT_EPS = 1e-6


def default_tolerances(dtype: str) -> dict[str, float]:
    """`{"atol": …, "rtol": …}` for an analytic computation in `dtype` (a dtype's name);
    float32's for any dtype without its own."""
    return DEFAULT_TOLERANCES.get(dtype, DEFAULT_TOLERANCES["float32"])


# One-sided slopes further apart than this (relative to their size) mark a kink; for a
# smooth function they differ by about h·|φ''|, far below it.
KINK_TOLERANCE = 1e-3


@dataclass(frozen=True)
class InputReport:
    """How one input's analytic gradient compares with the numerical one."""

    index: int
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple[int, ...] | None  # element (or projection number with --fast)
    analytic: float  # at the worst element
    numerical: float
    passed: bool
    checked: int  # elements (or projections) compared
    nondifferentiable: tuple[tuple[int, ...], ...] = ()
    problem: str | None = None  # a failure that is not a number: a wrong gradient shape


@dataclass(frozen=True)
class GradcheckReport:
    inputs: tuple[InputReport, ...]
    dtype: str
    order: int
    fast: bool
    eps: float
    atol: float
    rtol: float
    seed: int
    label: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    input_names: tuple[str, ...] = ()  # one per input: "a", "b", "modules.0.weight", or "0"

    @property
    def passed(self) -> bool:
        return all(report.passed for report in self.inputs)

    @property
    def failing_inputs(self) -> list[int]:
        return [report.index for report in self.inputs if not report.passed]

    @property
    def elements(self) -> int:
        """Elements of all the inputs together: a model's parameter count."""
        return sum(math.prod(report.shape) for report in self.inputs)

    @property
    def checked(self) -> int:
        """Elements (or projections) compared, over all the inputs."""
        return sum(report.checked for report in self.inputs)

    @property
    def kinks(self) -> int:
        """Non-differentiable points found (and not counted as errors), over all the inputs."""
        return sum(len(report.nondifferentiable) for report in self.inputs)

    @property
    def max_abs_error(self) -> float:
        return max(report.max_abs_error for report in self.inputs)

    @property
    def max_rel_error(self) -> float:
        return max(report.max_rel_error for report in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data


Function = Callable[..., Tensor]


def validate_tolerances(
    *, eps: float = DEFAULT_EPS, atol: float | None = None, rtol: float | None = None
) -> None:
    """Raise `UsageError` unless `eps` is in (0, 1) and `atol`, `rtol` are finite and ≥ 0
    (None: the dtype's default). An infinite or nan tolerance makes a check that cannot
    fail; a step of nan, inf or ≥ |x| measures nothing."""
    if not (_is_number(eps) and 0 < eps < 1):
        raise UsageError(f"eps must be a number in (0, 1) (got {eps})")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and not (_is_number(value) and 0 <= value < math.inf):
            raise UsageError(f"{name} must be a finite number ≥ 0 (got {value})")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


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
) -> GradcheckReport:
    """Compare `fn`'s analytic gradient with central differences, input by input.

    Args:
        fn: a function of needle Tensors returning a Tensor.
        inputs: numpy arrays, one per argument of `fn`.
        dtype: dtype of the analytic computation (default: float64). The numerical side
            always runs in float64.
        eps: relative finite-difference step: `h = eps · max(1, |x|)`.
        atol, rtol: an element passes when `|analytic − numerical| ≤ atol + rtol·|numerical|`
            (defaults by dtype, see `DEFAULT_TOLERANCES`).
        seed: seeds the random cotangent (and projections).
        order: 2 also differentiates the gradient: checks the gradient of
            `Σ ⟨w_i, ∂⟨v, f⟩/∂x_i⟩` for random `w_i`.
        fast: compare random projections `⟨g, u⟩` instead of every element — a few function
            evaluations per input instead of two per element.
        projections: number of random directions per input with `fast`.
        label, params, input_names: carried into the report to say what was checked;
            inputs without names are named by position, "0", "1", ….

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
    tolerances = default_tolerances(dtype.name)
    atol = tolerances["atol"] if atol is None else atol
    rtol = tolerances["rtol"] if rtol is None else rtol
    rng = np.random.default_rng(init.check_seed(seed))
    arrays = [np.asarray(x, dtype=np.float64) for x in inputs]
    for i, x in enumerate(arrays):
        if x.size == 0:
            raise UsageError(f"input {i} has shape {x.shape}, with no elements to check")
    if order == 2:
        fn = _gradient_function(fn, arrays, rng)

    cotangent = _cotangent(fn, arrays, rng)
    analytic = _analytic(fn, arrays, cotangent, dtype)

    def phi(xs: list[np.ndarray]) -> float:
        out = fn(*[Tensor(x, requires_grad=False) for x in xs]).numpy()
        return float(np.sum(cotangent * out.astype(np.float64)))

    base = phi(arrays)  # φ at the unperturbed inputs: one evaluation shared by every input
    compare = _compare_projections if fast else _compare_elements
    reports = []
    for i, grad in enumerate(analytic):
        if grad.shape != arrays[i].shape:
            reports.append(_shape_problem(i, arrays[i].shape, grad.shape))
            continue
        reports.append(
            compare(
                i, phi, base, arrays, grad, eps=eps, atol=atol, rtol=rtol, rng=rng, n=projections
            )
        )
    return GradcheckReport(
        inputs=tuple(reports),
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


def check_op(
    name: str,
    params: dict[str, Any] | None = None,
    *,
    shapes: Sequence[tuple[int, ...]] | None = None,
    seed: int = 0,
    max_elements: int | None = None,
    **options: Any,
) -> GradcheckReport:
    """Check a registered op on random inputs that fit `params` (away from its kinks).

    `options` are `check_gradients`' keyword arguments (dtype, eps, atol, rtol, order, fast).
    Parameters or shapes the op cannot take raise `UsageError` naming the op, its parameters
    and the shapes. `max_elements` refuses an elementwise check (two evaluations per
    element) of more input elements than that; a `fast` check has no limit.
    """
    spec = get_op(name)
    params = spec.resolve_params(params or {})
    inputs = spec.sample_inputs(
        params, rng=np.random.default_rng(init.check_seed(seed)), shapes=shapes
    )
    _check_fits(spec, params, inputs)
    total = sum(x.size for x in inputs)
    if max_elements is not None and not options.get("fast") and total > max_elements:
        raise UsageError(
            f"op '{name}': {total} input elements is too many to check one by one "
            f"(limit {max_elements}); use --fast for random projections, or a smaller --shape"
        )
    return check_gradients(
        _op_function(spec, params),
        inputs,
        seed=seed,
        label=name,
        params=params,
        input_names=op_input_names(spec),
        **options,
    )


def check_all(*, seed: int = 0, **options: Any) -> list[GradcheckReport]:
    """`check_op` for every registered op over each of its settings (`OpSpec.settings`), in
    registry order: one report per (op, setting)."""
    return [
        check_op(name, setting.params, shapes=setting.shapes, seed=seed, **options)
        for name, spec in REGISTRY.items()
        for setting in spec.settings
    ]


# A model check compares every parameter element when the model has at most this many
# parameters (two forward passes each); beyond, random projections per parameter tensor.
MODEL_ELEMENTWISE_LIMIT = 5_000


def check_model(
    config: Any,
    *,
    batch_size: int = 8,
    seed: int = 0,
    fast: bool | None = None,
    max_elements: int = MODEL_ELEMENTWISE_LIMIT,
    **options: Any,
) -> GradcheckReport:
    """Check every parameter gradient of the model a training config builds.

    The model is built as training builds it (`build_model`, weights drawn after seeding
    numpy with `config.seed`), its parameters cast to float64, and the gradient of the
    training loss on the first `batch_size` training samples is checked (see
    `check_module`). `fast=None` checks every element of a model with at most
    `max_elements` parameters, and random projections of a larger one.
    """
    from needle.train.build import build_model
    from needle.train.datasets import load_data

    data = load_data(config)
    with init.seeded(config.seed):
        model = build_model(config, data.in_features, data.num_classes)
    X, y = data.train.X[:batch_size], data.train.y[:batch_size]
    return check_module(
        model, X, y, seed=seed, fast=fast, max_elements=max_elements, label="model", **options
    )


def check_module(
    model: Any,
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int = 0,
    fast: bool | None = None,
    max_elements: int = MODEL_ELEMENTWISE_LIMIT,
    label: str = "model",
    **options: Any,
) -> GradcheckReport:
    """Check ∂L/∂θ for every parameter θ of `model` (in training mode), where L is the mean
    softmax loss `nn.SoftmaxLoss()(model(X), y)`; inputs are named as `named_parameters()`
    names them ("modules.0.weight").

    For the check, each parameter is replaced by a float64 tensor in every module attribute
    that holds it, and put back afterwards. Randomness in the forward pass (dropout) is made
    the same in every evaluation by reseeding numpy's global RNG before each one; its state
    is restored afterwards.
    """
    from needle import nn

    named = model.named_parameters()
    holders = _holders(model, named)
    arrays = [p.numpy().astype(np.float64) for _, p in named]
    total = sum(a.size for a in arrays)
    fast = total > max_elements if fast is None else fast
    features = Tensor(np.asarray(X, dtype=np.float64), requires_grad=False)
    labels = Tensor(np.asarray(y), requires_grad=False)
    loss = nn.SoftmaxLoss()
    model.train()
    # A fixed seed per evaluation: every forward pass draws the same dropout masks.
    mask_seed = int(np.random.default_rng(init.check_seed(seed)).integers(2**31))

    def put(values: Sequence[Tensor]) -> None:
        for places, value in zip(holders, values, strict=True):
            for module, attr in places:
                setattr(module, attr, value)

    def training_loss(*params: Tensor) -> Tensor:
        put(params)
        np.random.seed(mask_seed)
        return loss(model(features), labels)

    try:
        with init.rng_restored():  # every evaluation reseeds it
            return check_gradients(
                training_loss,
                arrays,
                seed=seed,
                fast=fast,
                label=label,
                input_names=[name for name, _ in named],
                **options,
            )
    finally:
        put([p for _, p in named])


def _holders(model: Any, named: list[tuple[str, Any]]) -> list[list[tuple[Any, str]]]:
    """For each parameter, the (module, attribute) pairs that hold it: more than one for a
    parameter shared between layers. One held only in a list, tuple or dict cannot be swapped
    for the check's tensor, and is refused rather than left out."""
    places: dict[int, list[tuple[Any, str]]] = {id(p): [] for _, p in named}
    for _, module in model.named_modules():
        for attr, value in vars(module).items():
            if id(value) in places:
                places[id(value)].append((module, attr))
    loose = [name for name, p in named if not places[id(p)]]
    if loose:
        raise UsageError(
            f"check_module swaps parameters through module attributes; {', '.join(loose)} "
            f"{'is' if len(loose) == 1 else 'are'} held only in a list, tuple or dict"
        )
    return [places[id(p)] for _, p in named]


def op_input_names(spec: OpSpec) -> tuple[str, ...]:
    """The names of an op function's tensor arguments: `("a", "b")` for `add(a, b)`."""
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    parameters = inspect.signature(spec.function).parameters.values()
    names = [p.name for p in parameters if p.kind in positional][: spec.n_inputs]
    return tuple(names) if len(names) == spec.n_inputs else tuple(map(str, range(spec.n_inputs)))


def _check_fits(spec: OpSpec, params: dict[str, Any], inputs: list[np.ndarray]) -> None:
    """Run the op forward once, so inputs it cannot take fail as a usage error naming the op,
    its parameters and the shapes, rather than as numpy's error (or as a vacuous pass on
    empty arrays) in the middle of the check."""
    what = f"op '{spec.name}'" + "".join(f" {key}={value}" for key, value in params.items())
    for i, x in enumerate(inputs):
        if x.size == 0:
            raise UsageError(f"{what}: input {i} has shape {x.shape}, with no elements to check")
    shapes = ", ".join(str(x.shape) for x in inputs)
    try:
        out = spec.call(params, *[Tensor(x, requires_grad=False) for x in inputs])
    except UsageError as err:
        raise UsageError(f"{what}, input shape {shapes}: {err}") from None
    except (ValueError, IndexError) as err:
        raise UsageError(f"{what} cannot take inputs of shape {shapes}: {err}") from None
    # An empty output (broadcast_to shape=(0, 3)) has an empty cotangent: every gradient
    # would be 0 on both sides, and the check would pass whatever backward computes.
    if out.size == 0:
        raise UsageError(
            f"{what}, input shape {shapes}: the output has shape {out.shape}, with no elements "
            "to check"
        )


def _op_function(spec: OpSpec, params: dict[str, Any]) -> Function:
    # `params` are resolved once by check_op, not again on each of the check's evaluations.
    def fn(*tensors: Tensor) -> Tensor:
        return spec.function(*tensors, **params)

    return fn


def _cotangent(fn: Function, arrays: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    out = fn(*[Tensor(x, requires_grad=False) for x in arrays])
    # An empty cotangent makes every gradient 0 on both sides: a check that cannot fail.
    if out.size == 0:
        raise UsageError(f"the output has shape {out.shape}, with no elements to check")
    return rng.standard_normal(out.shape)


def _analytic(
    fn: Function, arrays: list[np.ndarray], cotangent: np.ndarray, dtype: np.dtype
) -> list[np.ndarray]:
    leaves = [Tensor(x.astype(dtype), requires_grad=True) for x in arrays]
    out = fn(*leaves)
    # fn may have run a backward pass of its own (order 2): start from clean gradients.
    for leaf in leaves:
        leaf.grad = None
    if out.requires_grad:
        out.backward(Tensor(cotangent.astype(out.dtype), requires_grad=False))
    return [
        np.zeros_like(x) if leaf.grad is None else leaf.grad.numpy().astype(np.float64)
        for x, leaf in zip(arrays, leaves, strict=True)
    ]


def _gradient_function(fn: Function, arrays: list[np.ndarray], rng: np.random.Generator):
    """`x ↦ Σ_i ⟨w_i, ∂⟨v, f(x)⟩/∂x_i⟩`: checking its gradient checks second derivatives."""
    inner_cotangent = _cotangent(fn, arrays, rng)
    weights = [rng.standard_normal(x.shape) for x in arrays]

    def gradient_dot(*xs: Tensor) -> Tensor:
        # Constant inputs (the numerical side) become leaves so backward reaches them.
        leaves = [x if x.requires_grad else Tensor(x, requires_grad=True) for x in xs]
        out = fn(*leaves)
        total = Tensor(np.zeros((), dtype=out.dtype), requires_grad=False)
        if not out.requires_grad:
            return total
        out.backward(Tensor(inner_cotangent.astype(out.dtype), requires_grad=False))
        for leaf, w in zip(leaves, weights, strict=True):
            if leaf.grad is not None:
                total = total + (leaf.grad * Tensor(w.astype(out.dtype), requires_grad=False)).sum()
        return total

    return gradient_dot


def _shape_problem(index: int, shape: tuple, grad_shape: tuple) -> InputReport:
    return InputReport(
        index=index,
        shape=shape,
        max_abs_error=float("inf"),
        max_rel_error=float("inf"),
        worst_index=None,
        analytic=float("nan"),
        numerical=float("nan"),
        passed=False,
        checked=0,
        problem=f"gradient has shape {grad_shape}, input has shape {shape}",
    )


def _step(x: np.ndarray | float, eps: float) -> np.ndarray | float:
    return eps * np.maximum(1.0, np.abs(x))


def _is_kink(forward: float, backward: float) -> bool:
    return abs(forward - backward) > KINK_TOLERANCE * max(1.0, abs(forward), abs(backward))


def _summarize(
    index: int,
    shape: tuple[int, ...],
    analytic: np.ndarray,
    numerical: np.ndarray,
    positions: list[tuple[int, ...]],
    kinks: list[tuple[int, ...]],
    *,
    atol: float,
    rtol: float,
) -> InputReport:
    """Errors over the compared values that are not kinks; the worst is the one furthest
    beyond its tolerance."""
    kink_set = set(kinks)
    keep = np.array([p not in kink_set for p in positions], dtype=bool)
    abs_err = np.abs(analytic - numerical)
    rel_err = abs_err / np.maximum(np.maximum(np.abs(analytic), np.abs(numerical)), 1e-300)
    rel_err[abs_err == 0] = 0.0
    # Floored so that zero tolerances (atol = rtol = 0) rank errors instead of dividing by 0.
    tolerance = np.maximum(atol + rtol * np.abs(numerical), 1e-300)
    excess = np.where(keep, abs_err / tolerance, -1.0)
    worst = int(np.argmax(excess)) if keep.any() else None  # None: every value is a kink
    passed = bool(np.all(abs_err[keep] <= atol + rtol * np.abs(numerical[keep])))
    return InputReport(
        index=index,
        shape=shape,
        max_abs_error=0.0 if worst is None else float(abs_err[keep].max()),
        max_rel_error=0.0 if worst is None else float(rel_err[keep].max()),
        worst_index=None if worst is None else positions[worst],
        analytic=float("nan") if worst is None else float(analytic[worst]),
        numerical=float("nan") if worst is None else float(numerical[worst]),
        passed=passed,
        checked=len(positions),
        nondifferentiable=tuple(kinks),
    )


def _compare_elements(i, phi, base, arrays, grad, *, eps, atol, rtol, rng, n) -> InputReport:
    x = arrays[i]
    positions = list(np.ndindex(*x.shape))  # C order, as grad.ravel()
    numerical = np.empty(len(positions))
    kinks = []
    work = x.copy()
    shifted = [work if j == i else a for j, a in enumerate(arrays)]
    for k, position in enumerate(positions):
        h = float(_step(x[position], eps))
        work[position] = x[position] + h
        plus = phi(shifted)
        work[position] = x[position] - h
        minus = phi(shifted)
        work[position] = x[position]
        numerical[k] = (plus - minus) / (2 * h)
        if _is_kink((plus - base) / h, (base - minus) / h):
            kinks.append(position)
    return _summarize(i, x.shape, grad.ravel(), numerical, positions, kinks, atol=atol, rtol=rtol)


def _compare_projections(i, phi, base, arrays, grad, *, eps, atol, rtol, rng, n) -> InputReport:
    """⟨g, u⟩ against the directional derivative along u, for n random unit directions u."""
    x = arrays[i]
    h = float(_step(np.max(np.abs(x), initial=0.0), eps))
    analytic, numerical, kinks = np.empty(n), np.empty(n), []
    for k in range(n):
        u = rng.standard_normal(x.shape)
        u /= max(np.linalg.norm(u), 1e-300)
        plus = phi([a + h * u if j == i else a for j, a in enumerate(arrays)])
        minus = phi([a - h * u if j == i else a for j, a in enumerate(arrays)])
        numerical[k] = (plus - minus) / (2 * h)
        analytic[k] = float(np.sum(grad * u))
        if _is_kink((plus - base) / h, (base - minus) / h):
            kinks.append((k,))
    positions = [(k,) for k in range(n)]
    return _summarize(i, x.shape, analytic, numerical, positions, kinks, atol=atol, rtol=rtol)
