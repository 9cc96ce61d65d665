"""What to check: a registered op over its settings, a module's parameters, a config's model."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from needle import init
from needle.autograd import Tensor
from needle.errors import UsageError, unknown_choice
from needle.gradcheck.check import Function, check_gradients, describe_output, output_size
from needle.gradcheck.report import GradcheckReport
from needle.gradcheck.tolerances import is_number
from needle.gradcheck.user_ops import DRAWS, op_spec
from needle.ops.registry import REGISTRY, OpSpec, get_op


def check_op(
    op: str | type | OpSpec,
    params: dict[str, Any] | None = None,
    *,
    shapes: Sequence[tuple[int, ...]] | None = None,
    seed: int = 0,
    scale: float = 1.0,
    draw: str | None = None,
    max_elements: int | None = None,
    **options: Any,
) -> GradcheckReport:
    """Check an op on random inputs that fit `params` (away from its kinks).

    `op` is a registered op's name ("logsumexp"), a `TensorOp` subclass of your own (its
    `__init__`'s arguments are its `params`, its `compute`'s its inputs, see `op_spec`), or
    an `OpSpec`. Inputs are drawn as the registry says for its ops, in the shapes `shapes`
    (default: the op's own); `draw` ("normal", "positive", "away_from_zero") overrides how,
    and is "normal" for a class. `scale` multiplies the inputs: 1e30 probes an op's
    stability at large magnitudes (the tolerances follow, see `needle.gradcheck.tolerances`).

    `options` are `check_gradients`' keyword arguments (dtype, eps, atol, rtol, order,
    fast). Parameters or shapes the op cannot take raise `UsageError` naming the op, its
    parameters and the shapes. `max_elements` refuses an elementwise check (two evaluations
    per element) of more input elements than that; a `fast` check has no limit.

        >>> from needle.gradcheck import check_op
        >>> check_op("logsumexp", {"axes": 1}, scale=1e30).passed
        True
    """
    spec = _spec(op, draw, shapes)
    check_scale(scale)
    params = spec.resolve_params(params or {})
    rng = np.random.default_rng(init.check_seed(seed))
    inputs = [x * scale for x in spec.sample_inputs(params, rng=rng, shapes=shapes)]
    _check_fits(spec, params, inputs, options.get("device"))
    total = sum(x.size for x in inputs)
    if max_elements is not None and not options.get("fast") and total > max_elements:
        raise UsageError(
            f"op '{spec.name}': {total} input elements is too many to check one by one "
            f"(limit {max_elements}); use --fast for random projections, or a smaller --shape"
        )
    report = check_gradients(
        _op_function(spec, params),
        inputs,
        seed=seed,
        label=spec.name,
        params=params,
        input_names=op_input_names(spec),
        **options,
    )
    return dataclasses.replace(report, scale=scale)


def _spec(op: str | type | OpSpec, draw: str | None, shapes: Sequence | None) -> OpSpec:
    if isinstance(op, OpSpec):
        spec = op
    elif isinstance(op, str):
        spec = get_op(op)
    else:
        return op_spec(op, draw=draw or "normal", n_inputs=None if shapes is None else len(shapes))
    if draw is None:
        return spec
    if draw not in DRAWS:
        raise unknown_choice("draw", draw, DRAWS)
    return dataclasses.replace(spec, draws=(DRAWS[draw],) * spec.n_inputs)


def check_scale(scale: Any) -> float:
    """`scale` if it is a finite number > 0; else `UsageError` (a negative one would move
    positive draws out of log's domain, 0 would check nothing)."""
    if not (is_number(scale) and 0 < scale < math.inf):
        raise UsageError(f"scale must be a finite number > 0 (got {scale})")
    return float(scale)


def check_all(*, seed: int = 0, **options: Any) -> list[GradcheckReport]:
    """`check_op` for every registered op over each of its settings (`OpSpec.settings`), in
    registry order: one report per (op, setting)."""
    check_scale(options.get("scale", 1.0))
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
    from needle.train.session import as_input, model_input

    data = load_data(config)
    with init.seeded(config.seed):
        if data.language_model:
            model = build_model(
                config, data.sample_shape, data.num_classes, label_shape=data.label_shape
            )
        else:
            shape = model_input(config, data.sample_shape, data.num_classes)  # MLPs: flat
            model = build_model(config, shape, data.num_classes)
    if data.language_model:  # the first window of batch_size streams, from a zero state
        from needle.train.language import LanguageModel, Windows

        model = LanguageModel(model)
        window, targets = next(iter(Windows(data.train.X, batch_size, data.sample_shape[0])))
        X, y = window.ids.numpy(), targets.numpy().astype(np.int64)
    else:
        X, y = as_input(data.train.X[:batch_size], shape), data.train.y[:batch_size]
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
    that holds it, and put back afterwards; the check computes on the parameters' device.
    Randomness in the forward pass (dropout) is made
    the same in every evaluation by reseeding numpy's global RNG before each one; its state
    is restored afterwards.
    """
    from needle import nn

    named = model.named_parameters()
    holders = _holders(model, named)
    arrays = [p.numpy().astype(np.float64) for _, p in named]
    total = sum(a.size for a in arrays)
    fast = total > max_elements if fast is None else fast
    device = named[0][1].device if named else None  # where the model computes
    features = Tensor(np.asarray(X, dtype=np.float64), device=device, requires_grad=False)
    labels = Tensor(np.asarray(y), device=device, requires_grad=False)
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
                device=device,
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


def _check_fits(
    spec: OpSpec, params: dict[str, Any], inputs: list[np.ndarray], device: Any = None
) -> None:
    """Run the op forward once, so inputs it cannot take fail as a usage error naming the op,
    its parameters and the shapes, rather than as numpy's error (or as a vacuous pass on
    empty arrays) in the middle of the check."""
    what = f"op '{spec.name}'" + "".join(f" {key}={value}" for key, value in params.items())
    for i, x in enumerate(inputs):
        if x.size == 0:
            raise UsageError(f"{what}: input {i} has shape {x.shape}, with no elements to check")
    shapes = ", ".join(str(x.shape) for x in inputs)
    try:
        out = spec.call(params, *[Tensor(x, device=device, requires_grad=False) for x in inputs])
    except UsageError as err:
        raise UsageError(f"{what}, input shape {shapes}: {err}") from None
    except (ValueError, IndexError) as err:
        raise UsageError(f"{what} cannot take inputs of shape {shapes}: {err}") from None
    # An empty output (broadcast_to shape=(0, 3)) has an empty cotangent: every gradient
    # would be 0 on both sides, and the check would pass whatever backward computes.
    if output_size(out) == 0:
        raise UsageError(
            f"{what}, input shape {shapes}: the output has {describe_output(out)}, with no "
            "elements to check"
        )


def _op_function(spec: OpSpec, params: dict[str, Any]) -> Function:
    # `params` are resolved once by check_op, not again on each of the check's evaluations.
    def fn(*tensors: Tensor) -> Tensor:
        return spec.apply(params, *tensors)

    return fn
