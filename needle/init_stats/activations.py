"""The nonlinearities of a `propagate` stack, as functions of Tensors, and the share of the
signal's variance each keeps."""

from __future__ import annotations

from collections.abc import Callable

from needle import init, nn, ops
from needle.autograd import Tensor
from needle.errors import unknown_choice


def _leaky_relu(slope: float) -> Callable[[Tensor], Tensor]:
    # max(x, 0) + a·min(x, 0) = relu(x) − a·relu(−x)
    return lambda x: ops.relu(x) - ops.relu(-x) * slope


def _selu(x: Tensor) -> Tensor:
    # λ·(x for x > 0, α·(eˣ − 1) otherwise) = λ·(relu(x) − α·relu(1 − eˣ))
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    return (ops.relu(x) - ops.relu(1 - ops.exp(x)) * alpha) * scale


def activation(nonlinearity: str, param: float | None = None) -> Callable[[Tensor], Tensor]:
    """The nonlinearity as a function of Tensors, built from needle's modules and ops."""
    modules: dict[str, Callable[[], Callable[[Tensor], Tensor]]] = {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "linear": nn.Identity,
        "identity": nn.Identity,
        "leaky_relu": lambda: _leaky_relu(init.leaky_relu_slope(param)),
        "selu": lambda: _selu,
    }
    if nonlinearity not in modules:
        raise unknown_choice("nonlinearity for a layer stack", nonlinearity, modules)
    return modules[nonlinearity]()


def kept_variance(nonlinearity: str, param: float | None) -> float | None:
    """c = E[φ(z)²]/Var(z) for z ~ N(0, σ²), the share of the signal's variance the
    nonlinearity keeps; for these positively homogeneous φ it also equals E[φ'(z)²], the
    share of the gradient's. relu ½, leaky_relu (1 + a²)/2, linear 1; None for tanh, sigmoid
    and selu, which have no closed form.

    Derived here from φ, not from `init.calculate_gain`, so the prediction of `propagate`
    checks the gain: Kaiming's gain² is 1/c exactly for these three.
    """
    if nonlinearity == "relu":
        return 0.5
    if nonlinearity == "leaky_relu":
        return (1 + init.leaky_relu_slope(param) ** 2) / 2
    if nonlinearity in ("linear", "identity"):
        return 1.0
    return None
