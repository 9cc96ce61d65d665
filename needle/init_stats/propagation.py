"""A signal through a deep stack: `propagate` pushes a unit-variance batch through Linear layers
built with a scheme and records the spread of the signal forward and of the gradient backward,
beside what the variance argument predicts."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from needle import init, ops
from needle.errors import UsageError
from needle.init_stats.activations import activation, kept_variance
from needle.init_stats.formulas import Theory, positive_int, theory

# A --depth stack: a signal vanishes or explodes within tens of layers; more only take time.
MAX_DEPTH = 1_000
# Values a stack holds, depth·width² weights and depth·batch·width activations: up to about
# 30 bytes each at peak (float64, forward and backward, measured), so 0.6 GB at this limit.
MAX_STACK_VALUES = 20_000_000
DEFAULT_BATCH = 256


@dataclass(frozen=True)
class LayerSignal:
    """One layer of the stack: the std of its pre-activation z_l = h_{l−1} W_l forward, and of
    the gradient ∂L/∂z_l backward, with what the theory expects (None for nonlinearities
    without a closed form: tanh, sigmoid, selu)."""

    layer: int
    forward_std: float
    backward_std: float
    expected_forward_std: float | None = None
    expected_backward_std: float | None = None


@dataclass(frozen=True)
class Propagation:
    theory: Theory  # of one width × width layer
    activation: str
    depth: int
    width: int
    batch: int
    seed: int
    input_std: float
    output_grad_std: float  # of the cotangent fed to the last layer's output
    layers: tuple[LayerSignal, ...]

    @property
    def forward_gain(self) -> float:
        """std of z at the last layer over std at the first: 1 is a steady signal."""
        return _ratio(self.layers[-1].forward_std, self.layers[0].forward_std)

    @property
    def backward_gain(self) -> float:
        """std of ∂L/∂z at the first layer over std at the last (the way gradients flow)."""
        return _ratio(self.layers[0].backward_std, self.layers[-1].backward_std)

    @property
    def forward_trend(self) -> str:
        return trend(self.forward_gain)

    @property
    def backward_trend(self) -> str:
        return trend(self.backward_gain)

    def to_dict(self) -> dict[str, Any]:
        data = {**asdict(self), "theory": self.theory.to_dict()}
        data["forward_gain"], data["backward_gain"] = self.forward_gain, self.backward_gain
        return data


def _ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom != 0 else math.inf if top != 0 else 1.0


# A signal whose std shrinks or grows by less than this factor over the whole stack is steady.
STEADY_FACTOR = 2.0


def trend(gain: float) -> str:
    """What a stack does to the signal, from its std's `gain` over the stack: "vanishing",
    "exploding", "steady", or "overflow" when the gain could not be measured (nan)."""
    if math.isnan(gain):
        return "overflow"
    if gain < 1 / STEADY_FACTOR:
        return "vanishing"
    if gain > STEADY_FACTOR:
        return "exploding"
    return "steady"


def expected_signal(
    resolved: Theory, nonlinearity: str, param: float | None, depth: int
) -> list[tuple[float | None, float | None]]:
    """(forward, backward) std per layer that the variance argument predicts, for a unit
    input and a unit cotangent: with r = fan·Var(W) and c = E[φ(z)²]/Var(z),

        Var(z_1) = r,          Var(z_l) = r·c·Var(z_{l−1});
        Var(∂L/∂z_L) = c,      Var(∂L/∂z_l) = r·c·Var(∂L/∂z_{l+1}).
    """
    c = kept_variance(nonlinearity, param)
    if c is None:
        return [(None, None)] * depth
    r = resolved.fan_in * resolved.std**2  # square layers: fan_in = fan_out
    forward = [r * _power(r * c, layer - 1) for layer in range(1, depth + 1)]
    backward = [c * _power(r * c, depth - layer) for layer in range(1, depth + 1)]
    return [(math.sqrt(f), math.sqrt(b)) for f, b in zip(forward, backward, strict=True)]


def _power(base: float, exponent: int) -> float:
    # A deep stack's predicted variance can pass the largest float: that is inf, not a crash.
    try:
        return base**exponent
    except OverflowError:
        return math.inf


def stack_size(depth: int, width: int, batch: int = DEFAULT_BATCH) -> tuple[int, int, int]:
    """(depth, width, batch) checked, before anything is built: each a positive integer,
    depth at most `MAX_DEPTH`, and the stack's weights and activations, depth·width·(width +
    batch) values, at most `MAX_STACK_VALUES`."""
    depth, width = positive_int(depth, "depth"), positive_int(width, "width")
    batch = positive_int(batch, "batch")
    if depth > MAX_DEPTH:
        raise UsageError(f"depth must be at most {MAX_DEPTH} (got {depth})")
    values = depth * width * (width + batch)
    if values > MAX_STACK_VALUES:
        raise UsageError(
            f"a stack of depth {depth} and width {width} (batch {batch}) holds depth × width × "
            f"(width + batch) = {values} weights and activations; at most {MAX_STACK_VALUES}"
        )
    return depth, width, batch


def propagate(
    scheme: str,
    *,
    depth: int,
    width: int = 256,
    batch: int = DEFAULT_BATCH,
    nonlinearity: str | None = None,
    param: float | None = None,
    mode: str | None = None,
    gain: float | None = None,
    seed: int = 0,
) -> Propagation:
    """Push a unit-variance batch x ~ N(0, 1) of shape (batch, width) through `depth` layers
    h_l = φ(z_l), z_l = h_{l−1} W_l (Linear without bias, W_l drawn with `scheme`), then
    backward from a unit-variance cotangent on h_L.

    With Var(W) = gain²/fan, Var(z_{l+1}) = fan·Var(W)·E[φ(z_l)²]: for relu E[φ(z)²] =
    Var(z)/2, so Kaiming (gain √2) keeps Var(z) steady while Xavier (gain 1, fan_in = fan_out)
    halves it every layer. The backward pass mirrors this with fan_out.

    `nonlinearity` is the stack's φ (default relu) and, for kaiming schemes, the gain's source.
    `depth` is at most `MAX_DEPTH`, and the stack at most `MAX_STACK_VALUES` (`stack_size`).
    """
    depth, width, batch = stack_size(depth, width, batch)
    phi_name = nonlinearity or "relu"
    phi = activation(phi_name, param)
    kaiming = scheme.startswith("kaiming")
    resolved = theory(
        scheme,
        width,
        width,
        nonlinearity=phi_name if kaiming else None,
        param=param if kaiming else None,
        mode=mode,
        gain=gain,
    )
    initializer = init.get_initializer(scheme)
    kwargs = resolved.initializer_kwargs()
    with init.seeded(seed):
        # The gradient flows back to the input, not to the weights: only ∂L/∂z is measured.
        x = init.randn(batch, width, dtype="float64", requires_grad=True)
        cotangent = init.randn(batch, width, dtype="float64")
        weights = [initializer(width, width, dtype="float64", **kwargs) for _ in range(depth)]
    expected = expected_signal(resolved, phi_name, param, depth)
    # An exploding stack is a result too: its infs and nans are measured, not warned about.
    with np.errstate(over="ignore", invalid="ignore"):
        h, pre_activations = x, []
        for weight in weights:
            z = ops.matmul(h, weight)  # a Linear layer without bias
            pre_activations.append(z)
            h = phi(z)
        h.backward(cotangent)
        signals = tuple(
            LayerSignal(
                layer=i + 1,
                forward_std=float(np.std(z.numpy())),
                backward_std=float(np.std(z.grad.numpy())) if z.grad is not None else 0.0,
                expected_forward_std=expected[i][0],
                expected_backward_std=expected[i][1],
            )
            for i, z in enumerate(pre_activations)
        )
    return Propagation(
        theory=resolved,
        activation=phi_name,
        depth=depth,
        width=width,
        batch=batch,
        seed=seed,
        input_std=float(np.std(x.numpy())),
        output_grad_std=float(np.std(cotangent.numpy())),
        layers=signals,
    )
