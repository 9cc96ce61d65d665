"""A signal through a deep stack: `propagate` pushes a unit-variance batch through Linear layers
(or, given a kernel, conv layers) built with a scheme and records the spread of the signal
forward and of the gradient backward, beside what the variance argument predicts."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from needle import init, ops
from needle.autograd import Tensor
from needle.errors import UsageError
from needle.init_stats.activations import activation, kept_variance
from needle.init_stats.formulas import Theory, positive_int, theory

# A --depth stack: a signal vanishes or explodes within tens of layers; more only take time.
MAX_DEPTH = 1_000
# Values a stack holds, depth·width² weights and depth·batch·width activations: up to about
# 30 bytes each at peak (float64, forward and backward, measured), so 0.6 GB at this limit.
MAX_STACK_VALUES = 20_000_000
DEFAULT_BATCH = 256
# A conv stack's images: few, as each holds side² positions per channel.
CONV_BATCH = 8
# The central side × side pixels of a conv stack's maps that no zero padding reaches, forward
# or backward, where every output sums channels·K² inputs as the variance argument assumes
# (a border pixel sums fewer); the images are made that much larger than the stack's reach.
CONV_INTERIOR = 8


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
    # A conv stack: its K, its images' side, and the side of their central pixels the stds are
    # of (CONV_INTERIOR). `width` is then the channels. None for a Linear stack.
    kernel: int | None = None
    image: int | None = None
    interior: int | None = None

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


def conv_image(depth: int, kernel: int) -> int:
    """The side of a conv stack's images: CONV_INTERIOR plus, on each side, the depth·(K//2)
    pixels its zero padding reaches."""
    return CONV_INTERIOR + 2 * depth * (kernel // 2)


def stack_size(
    depth: int, width: int, batch: int | None = None, *, kernel: int | None = None
) -> tuple[int, int, int]:
    """(depth, width, batch) checked, before anything is built (batch defaulting to
    DEFAULT_BATCH rows, or CONV_BATCH images with a kernel): each a positive integer,
    depth at most `MAX_DEPTH`, and the stack's weights and activations, depth·width·(width +
    batch) values (a conv stack's depth·channels·(channels·K² + batch·side²), with an odd K
    so that padding K//2 keeps the maps' size), at most `MAX_STACK_VALUES`."""
    depth, width = positive_int(depth, "depth"), positive_int(width, "width")
    if batch is None:
        batch = DEFAULT_BATCH if kernel is None else CONV_BATCH
    batch = positive_int(batch, "batch")
    if depth > MAX_DEPTH:
        raise UsageError(f"depth must be at most {MAX_DEPTH} (got {depth})")
    if kernel is None:
        values = depth * width * (width + batch)
        stack = f"a stack of depth {depth} and width {width} (batch {batch}) holds"
        formula = "depth × width × (width + batch)"
    else:
        kernel = positive_int(kernel, "kernel")
        if kernel % 2 == 0:
            raise UsageError(
                f"a conv stack keeps its maps' size with padding K//2, which needs an odd "
                f"kernel (got {kernel})"
            )
        side = conv_image(depth, kernel)
        values = depth * width * (width * kernel**2 + batch * side**2)
        stack = (
            f"a conv stack of depth {depth}, {width} channels and {kernel}×{kernel} kernels "
            f"({batch} images of {side}×{side}) holds"
        )
        formula = "depth × channels × (channels·K² + batch·side²)"
    if values > MAX_STACK_VALUES:
        raise UsageError(
            f"{stack} {formula} = {values} weights and activations; at most {MAX_STACK_VALUES}"
        )
    return depth, width, batch


def propagate(
    scheme: str,
    *,
    depth: int,
    width: int = 256,
    batch: int | None = None,
    nonlinearity: str | None = None,
    param: float | None = None,
    mode: str | None = None,
    gain: float | None = None,
    seed: int = 0,
    kernel: int | None = None,
) -> Propagation:
    """Push a unit-variance batch x ~ N(0, 1) of shape (batch, width) through `depth` layers
    h_l = φ(z_l), z_l = h_{l−1} W_l (Linear without bias, W_l drawn with `scheme`), then
    backward from a unit-variance cotangent on h_L.

    With a `kernel` K the layers are bias-free convolutions, K×K, stride 1, padding K//2, of
    `width` channels in and out, on (batch, side, side, width) images (`batch` defaults to
    CONV_BATCH, `side` is `conv_image`): the same argument with fan = width·K², measured on
    the central CONV_INTERIOR² pixels, which no padding reaches.

    With Var(W) = gain²/fan, Var(z_{l+1}) = fan·Var(W)·E[φ(z_l)²]: for relu E[φ(z)²] =
    Var(z)/2, so Kaiming (gain √2) keeps Var(z) steady while Xavier (gain 1, fan_in = fan_out)
    halves it every layer. The backward pass mirrors this with fan_out.

    `nonlinearity` is the stack's φ (default relu) and, for kaiming schemes, the gain's source.
    `depth` is at most `MAX_DEPTH`, and the stack at most `MAX_STACK_VALUES` (`stack_size`).
    """
    depth, width, batch = stack_size(depth, width, batch, kernel=kernel)
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
        kernel=kernel,
    )
    initializer = init.get_initializer(scheme)
    kwargs = resolved.initializer_kwargs()
    shape: tuple[int, ...] = (batch, width)
    side = None
    if kernel is not None:
        kwargs["shape"] = resolved.draw_shape  # (K, K, width, width)
        side = conv_image(depth, kernel)
        shape = (batch, side, side, width)
    with init.seeded(seed):
        # The gradient flows back to the input, not to the weights: only ∂L/∂z is measured.
        x = init.randn(*shape, dtype="float64", requires_grad=True)
        cotangent = init.randn(*shape, dtype="float64")
        weights = [
            initializer(resolved.fan_in, resolved.fan_out, dtype="float64", **kwargs)
            for _ in range(depth)
        ]
    expected = expected_signal(resolved, phi_name, param, depth)
    # An exploding stack is a result too: its infs and nans are measured, not warned about.
    with np.errstate(over="ignore", invalid="ignore"):
        h, pre_activations = x, []
        for weight in weights:
            z = _layer(h, weight, kernel)
            pre_activations.append(z)
            h = phi(z)
        h.backward(cotangent)
        signals = tuple(
            LayerSignal(
                layer=i + 1,
                forward_std=_std(z.numpy(), depth, kernel),
                backward_std=_std(z.grad.numpy(), depth, kernel) if z.grad is not None else 0.0,
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
        kernel=kernel,
        image=side,
        interior=None if kernel is None else CONV_INTERIOR,
    )


def _layer(h: Tensor, weight: Tensor, kernel: int | None) -> Tensor:
    """z = h·W, a Linear layer without bias; or h ⋆ W, a conv one keeping the maps' size."""
    if kernel is None:
        return ops.matmul(h, weight)
    return ops.conv(h, weight, stride=1, padding=kernel // 2)


def _std(values: np.ndarray, depth: int, kernel: int | None) -> float:
    """The std of a layer's values: all of a Linear stack's; of a conv stack's maps, the
    central pixels, beyond the depth·(K//2) on each side that zero padding reaches."""
    if kernel is not None:
        edge = depth * (kernel // 2)
        values = values[:, edge : values.shape[1] - edge, edge : values.shape[2] - edge, :]
    return float(np.std(values))
