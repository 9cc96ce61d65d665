"""Tensor constructors and weight initializers.

All randomness goes through numpy's global RNG, one `np.random.rand`/`np.random.randn` call per
constructor, so `np.random.seed(s)` reproduces every tensor, and code written against the
course's needle draws the same numbers here. Random values are scaled in float64 and only then
cast to `dtype`. `seeded(s)` seeds that RNG for a block and puts it back afterwards.

The initializers take `(fan_in, fan_out)` and return a tensor of that shape, or of `shape=` when
given (a conv kernel (k, k, in, out) scaled by its fans in·k², out·k²); any other keyword
(`dtype`, `device`, `requires_grad`) is passed through to `rand`/`randn`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from needle.autograd import Device, Tensor
from needle.errors import UsageError, unknown_choice

Dtype = Any  # a numpy dtype or its name, e.g. "float32"


def _tensor(array: np.ndarray, device: Device | None, dtype: Dtype, requires_grad: bool) -> Tensor:
    # Tensor() checks the device and casts with a single copy.
    return Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)


# -- the global RNG -------------------------------------------------------------------------


@contextlib.contextmanager
def rng_restored() -> Iterator[None]:
    """Run the block, then put numpy's global RNG back in the state it had before it, so
    whatever the block draws leaves the stream outside untouched."""
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG (the one every constructor here draws from) for the block, and
    restore its previous state afterwards.

    Example:
        >>> with seeded(3):
        ...     a = rand(2)
        >>> with seeded(3):
        ...     b = rand(2)
        >>> bool((a.numpy() == b.numpy()).all())
        True
    """
    seed = check_seed(seed)
    with rng_restored():
        np.random.seed(seed)
        yield


def check_seed(seed: Any) -> int:
    """`seed` as an int, refused unless it is a non-negative integer (what numpy accepts)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer (got {seed!r})")
    return int(seed)


# -- constructors ---------------------------------------------------------------------------


def rand(
    *shape: int,
    low: float = 0.0,
    high: float = 1.0,
    device: Device | None = None,
    dtype: Dtype = "float32",
    requires_grad: bool = False,
) -> Tensor:
    """Uniform samples on [low, high): `np.random.rand(*shape) * (high - low) + low`."""
    array = np.random.rand(*shape) * (high - low) + low
    return _tensor(array, device, dtype, requires_grad)


def randn(
    *shape: int,
    mean: float = 0.0,
    std: float = 1.0,
    device: Device | None = None,
    dtype: Dtype = "float32",
    requires_grad: bool = False,
) -> Tensor:
    """Normal samples N(mean, std²): `np.random.randn(*shape) * std + mean`."""
    array = np.random.randn(*shape) * std + mean
    return _tensor(array, device, dtype, requires_grad)


def constant(
    *shape: int,
    c: float = 1.0,
    device: Device | None = None,
    dtype: Dtype = "float32",
    requires_grad: bool = False,
) -> Tensor:
    """A tensor of `shape` filled with `c`."""
    return _tensor(np.full(shape, c, dtype=dtype), device, dtype, requires_grad)


def ones(
    *shape: int, device: Device | None = None, dtype: Dtype = "float32", requires_grad: bool = False
) -> Tensor:
    """A tensor of ones."""
    return constant(*shape, c=1.0, device=device, dtype=dtype, requires_grad=requires_grad)


def zeros(
    *shape: int, device: Device | None = None, dtype: Dtype = "float32", requires_grad: bool = False
) -> Tensor:
    """A tensor of zeros."""
    return constant(*shape, c=0.0, device=device, dtype=dtype, requires_grad=requires_grad)


def randb(
    *shape: int,
    p: float = 0.5,
    device: Device | None = None,
    dtype: Dtype = "bool",
    requires_grad: bool = False,
) -> Tensor:
    """Bernoulli samples `np.random.rand(*shape) <= p`: each entry is true with probability p."""
    return _tensor(np.random.rand(*shape) <= p, device, dtype, requires_grad)


def one_hot(
    n: int,
    i: Tensor | np.ndarray | Any,
    device: Device | None = None,
    dtype: Dtype = "float32",
    requires_grad: bool = False,
) -> Tensor:
    """Rows of the n×n identity at the integer labels `i`: shape `i.shape + (n,)`.

    Labels may come as floats holding whole numbers (cast, as the course does); anything
    outside [0, n) is refused rather than wrapped around by numpy's negative indexing. The
    ones are written into zeros: indexing an n×n identity would build all n² entries first,
    32 MB for a Transformer's 2048 positions on every forward.
    """
    labels = class_indices(i, n)
    rows = np.zeros((*labels.shape, n), dtype=dtype)
    flat = rows.reshape(-1, n)
    flat[np.arange(len(flat)), labels.ravel()] = 1
    return _tensor(rows, device, dtype, requires_grad)


def class_indices(
    i: Tensor | np.ndarray | Any, n: int | None, *, op: str = "one_hot", name: str = "label"
) -> np.ndarray:
    """The labels `i` as an integer array, checked to be whole numbers, in [0, n) unless n
    is None (for a caller whose op checks the range itself, as `ops.cross_entropy` does).
    An error names `op`, the caller, and calls each entry a `name` (a token id for
    `Embedding`)."""
    labels = i.numpy() if isinstance(i, Tensor) else np.asarray(i)
    if labels.dtype.kind not in "iu":
        if labels.dtype.kind != "f" or not np.array_equal(labels, np.trunc(labels)):
            raise UsageError(f"{op}: {name}s must be whole numbers (got {labels.dtype} values)")
        labels = labels.astype(np.intp)
    if n is not None and labels.size and (labels.min() < 0 or labels.max() >= n):
        bad = labels[(labels < 0) | (labels >= n)].flat[0]
        raise UsageError(f"{op}: {name} {bad} is outside [0, {n})")
    return labels


def zeros_like(
    array: Tensor, *, device: Device | None = None, requires_grad: bool = False
) -> Tensor:
    """Zeros with the shape and dtype of `array`, on its device unless `device` is given."""
    device = array.device if device is None else device
    return zeros(*array.shape, dtype=array.dtype, device=device, requires_grad=requires_grad)


def ones_like(
    array: Tensor, *, device: Device | None = None, requires_grad: bool = False
) -> Tensor:
    """Ones with the shape and dtype of `array`, on its device unless `device` is given."""
    device = array.device if device is None else device
    return ones(*array.shape, dtype=array.dtype, device=device, requires_grad=requires_grad)


# -- gain and fan ---------------------------------------------------------------------------

# Nonlinearities whose recommended gain is 1: they do not shrink the signal's variance
# (or, for sigmoid, following PyTorch's convention).
_UNIT_GAIN = (
    "linear",
    "identity",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)
NONLINEARITIES: tuple[str, ...] = (*_UNIT_GAIN, "tanh", "relu", "leaky_relu", "selu")
FAN_MODES: tuple[str, ...] = ("fan_in", "fan_out")
LEAKY_RELU_SLOPE = 0.01  # leaky_relu's negative slope when `param` does not give one


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity, as in `torch.nn.init.calculate_gain`.

    ============================  ======================
    nonlinearity                  gain
    ============================  ======================
    linear, identity, conv*       1
    sigmoid                       1
    tanh                          5/3
    relu                          √2
    leaky_relu                    √(2 / (1 + a²)), a = `param` (default 0.01)
    selu                          3/4
    ============================  ======================

    The gain multiplies an initializer's scale so that activations keep their variance
    through the layer (He et al. 2015 for relu; Klambauer et al. 2017 for selu).

    Example:
        >>> calculate_gain("leaky_relu", 0.2)  # doctest: +ELLIPSIS
        1.3867...
    """
    if nonlinearity in _UNIT_GAIN:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + leaky_relu_slope(param) ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise unknown_choice("nonlinearity", nonlinearity, NONLINEARITIES)


def leaky_relu_slope(param: float | None = None) -> float:
    """leaky_relu's negative slope a: `param`, or `LEAKY_RELU_SLOPE` (0.01) when it is None."""
    if param is None:
        return LEAKY_RELU_SLOPE
    if isinstance(param, (int, float)) and not isinstance(param, bool):
        return float(param)
    raise UsageError(f"leaky_relu: negative slope {param!r} is not a number")


def fan(fan_in: int, fan_out: int, mode: str) -> int:
    """The fan a Kaiming scale divides by: fan_in keeps the forward pass's variance,
    fan_out the backward pass's."""
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise unknown_choice("mode", mode, FAN_MODES)


# -- the scale each initializer draws at ------------------------------------------------------
# One function per formula, read by the initializers below and by `needle.init_stats`, so the
# numbers an initializer draws at and the numbers its theory shows cannot drift apart. Each
# takes the symbols its formula is written in.


def xavier_uniform_bound(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """a = gain · √(6 / (fan_in + fan_out)), the bound of `xavier_uniform`'s U(−a, a).

    Glorot & Bengio (2010): U(−a, a) has variance a²/3 = gain² · 2 / (fan_in + fan_out), the
    compromise between 1/fan_in (steady activations) and 1/fan_out (steady gradients).
    """
    return gain * math.sqrt(6 / (fan_in + fan_out))


def xavier_normal_std(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """std = gain · √(2 / (fan_in + fan_out)), of `xavier_normal`'s N(0, std²).

    Glorot & Bengio (2010): the variance of `xavier_uniform_bound`'s U(−a, a).
    """
    return gain * math.sqrt(2 / (fan_in + fan_out))


def kaiming_uniform_bound(fan: int, gain: float) -> float:
    """b = gain · √(3 / fan), the bound of `kaiming_uniform`'s U(−b, b).

    He et al. (2015): U(−b, b) has variance b²/3 = gain² / fan, which with the gain of the
    layer's nonlinearity (`calculate_gain`) keeps the variance of the activations (fan =
    fan_in) or of the gradients (fan = fan_out, see `fan`) from layer to layer.

    Example:
        >>> round(kaiming_uniform_bound(256, calculate_gain("relu")), 4)
        0.1531
    """
    return gain * math.sqrt(3 / fan)


def kaiming_normal_std(fan: int, gain: float) -> float:
    """std = gain / √fan, of `kaiming_normal`'s N(0, std²).

    He et al. (2015): the variance gain² / fan of `kaiming_uniform_bound`'s U(−b, b).
    """
    return gain / math.sqrt(fan)


# -- initializers ---------------------------------------------------------------------------


def _draw_shape(
    name: str, fan_in: int, fan_out: int, shape: tuple[int, ...] | None
) -> tuple[int, ...]:
    """The shape of an initializer's one draw: `shape`, or (fan_in, fan_out) when it is None."""
    if shape is None:
        return (fan_in, fan_out)
    if isinstance(shape, str):  # kaiming_uniform(9, 5, "tanh"): the course's third is shape
        raise UsageError(
            f"{name}: shape {shape!r} is not a shape; give the nonlinearity by keyword, "
            f"{name}(fan_in, fan_out, nonlinearity={shape!r})"
        )
    dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    whole = (isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in dims)
    if not all(whole) or any(n < 0 for n in dims):
        raise UsageError(f"{name}: shape {shape!r} must be a tuple of non-negative integers")
    return tuple(int(n) for n in dims)


def xavier_uniform(
    fan_in: int,
    fan_out: int,
    gain: float = 1.0,
    *,
    shape: tuple[int, ...] | None = None,
    **kwargs: Any,
) -> Tensor:
    """Xavier (Glorot) uniform: U(−a, a) with a = gain · √(6 / (fan_in + fan_out)).

    From Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
    networks" (2010): the variance 2 / (fan_in + fan_out) balances the forward and backward
    passes of a linear or tanh-like layer. `shape` (default (fan_in, fan_out)) is the shape
    of the draw; the bound always comes from the fans.

    Example:
        >>> w = xavier_uniform(784, 100, gain=calculate_gain("tanh"))
        >>> w.shape
        (784, 100)
    """
    a = xavier_uniform_bound(fan_in, fan_out, gain)
    return rand(*_draw_shape("xavier_uniform", fan_in, fan_out, shape), low=-a, high=a, **kwargs)


def xavier_normal(
    fan_in: int,
    fan_out: int,
    gain: float = 1.0,
    *,
    shape: tuple[int, ...] | None = None,
    **kwargs: Any,
) -> Tensor:
    """Xavier (Glorot) normal: N(0, std²) with std = gain · √(2 / (fan_in + fan_out)).

    Glorot & Bengio (2010); same variance as `xavier_uniform`. `shape` as there.
    """
    std = xavier_normal_std(fan_in, fan_out, gain)
    return randn(*_draw_shape("xavier_normal", fan_in, fan_out, shape), std=std, **kwargs)


def kaiming_uniform(
    fan_in: int,
    fan_out: int,
    shape: tuple[int, ...] | None = None,
    nonlinearity: str = "relu",
    *,
    mode: str = "fan_in",
    param: float | None = None,
    **kwargs: Any,
) -> Tensor:
    """Kaiming (He) uniform: U(−b, b) with b = gain · √(3 / fan).

    From He et al., "Delving Deep into Rectifiers" (2015): variance gain² / fan keeps the
    activations' (mode="fan_in") or the gradients' (mode="fan_out") scale through the layer.
    `gain = calculate_gain(nonlinearity, param)`, √2 for the default relu.

    `shape` is the third positional parameter, as in the course's hw4: the shape of the one
    `rand` draw (default (fan_in, fan_out)); the bound still comes from the fans, so a conv
    kernel is `kaiming_uniform(in·k², out·k², (k, k, in, out))`.

    Example:
        >>> kaiming_uniform(100, 10, nonlinearity="leaky_relu", param=0.1, mode="fan_out").shape
        (100, 10)
        >>> kaiming_uniform(3 * 9, 8 * 9, (3, 3, 3, 8)).shape
        (3, 3, 3, 8)
    """
    dims = _draw_shape("kaiming_uniform", fan_in, fan_out, shape)
    gain = calculate_gain(nonlinearity, param)
    bound = kaiming_uniform_bound(fan(fan_in, fan_out, mode), gain)
    return rand(*dims, low=-bound, high=bound, **kwargs)


def kaiming_normal(
    fan_in: int,
    fan_out: int,
    nonlinearity: str = "relu",
    *,
    shape: tuple[int, ...] | None = None,
    mode: str = "fan_in",
    param: float | None = None,
    **kwargs: Any,
) -> Tensor:
    """Kaiming (He) normal: N(0, std²) with std = gain / √fan.

    He et al. (2015); same variance as `kaiming_uniform`. `shape` (by keyword here, as the
    course keeps `nonlinearity` third) is the shape of the draw, default (fan_in, fan_out).
    """
    dims = _draw_shape("kaiming_normal", fan_in, fan_out, shape)
    gain = calculate_gain(nonlinearity, param)
    std = kaiming_normal_std(fan(fan_in, fan_out, mode), gain)
    return randn(*dims, std=std, **kwargs)


# The initializers by name, for configs' `init:` key and `needle init-stats SCHEME`.
INITIALIZERS: dict[str, Callable[..., Tensor]] = {
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "kaiming_uniform": kaiming_uniform,
    "kaiming_normal": kaiming_normal,
}


def get_initializer(name: str) -> Callable[..., Tensor]:
    """The initializer called `name`; a UsageError with a suggestion if there is none."""
    try:
        return INITIALIZERS[name]
    except KeyError:
        raise unknown_choice("initializer", name, INITIALIZERS) from None
