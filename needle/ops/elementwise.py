"""Elementwise ops: binary ops broadcast like numpy, and each gradient is summed back to
its input's shape by `sum_to_shape`, the one adjoint of broadcasting."""

from __future__ import annotations

from typing import Any

import numpy as np

from needle.autograd import Tensor, TensorOp
from needle.backend_ndarray import NDArray, api
from needle.errors import UsageError
from needle.ops.registry import (
    OpParam,
    Setting,
    away_from_zero,
    normal,
    positive,
    random_shape,
    register,
)
from needle.ops.shape import sum_to_shape

SCALAR = OpParam("scalar", "scalar", "the scalar operand, e.g. --scalar -1.5")


def as_scalar(value: Any) -> Any:
    """A Python number from a number or a 1-element array.

    Python numbers are "weak" in numpy's promotion rules, so float32 stays float32;
    a numpy float64 scalar would silently upcast the result.
    """
    if isinstance(value, Tensor):
        value = value.cached_data
    if isinstance(value, NDArray):
        value = value.numpy()
    if isinstance(value, (np.ndarray, np.generic)):
        if np.size(value) != 1:
            raise UsageError(f"expected a scalar or a 1-element array, got shape {np.shape(value)}")
        return np.asarray(value).reshape(-1)[0].item()
    return value


class ScalarOp(TensorOp):
    """An op with one scalar operand, held as a Python number (see `as_scalar`)."""

    def __init__(self, scalar: float):
        self.scalar = as_scalar(scalar)


def _scalar_case(scalars: tuple[float, ...]):
    def case(rng: np.random.Generator):
        return {"scalar": float(rng.choice(scalars))}, [random_shape(rng)]

    return case


class EWiseAdd(TensorOp):
    def compute(self, a: Any, b: Any) -> Any:
        return api(a).add(a, b)

    def gradient(self, out_grad: Tensor, node: Tensor):
        a, b = node.inputs
        return sum_to_shape(out_grad, a.shape), sum_to_shape(out_grad, b.shape)


@register(
    EWiseAdd,
    n_inputs=2,
    settings=[{}, Setting({}, ((3, 4), (4,))), Setting({}, ((2, 1, 4), (3, 1)))],
)
def add(a: Tensor, b: Tensor) -> Tensor:
    """a + b, broadcasting like numpy."""
    return EWiseAdd()(a, b)


class AddScalar(ScalarOp):
    def compute(self, a: Any) -> Any:
        return a + self.scalar

    def gradient(self, out_grad: Tensor, node: Tensor):
        return out_grad


@register(
    AddScalar,
    params=[SCALAR],
    random_case=_scalar_case((-2.0, 0.5, 3.0)),
    settings=[{"scalar": 2.5}, {"scalar": -1.0}],
)
def add_scalar(a: Tensor, scalar: float) -> Tensor:
    """a + scalar."""
    return AddScalar(scalar)(a)


class EWiseMul(TensorOp):
    def compute(self, a: Any, b: Any) -> Any:
        return api(a).multiply(a, b)

    def gradient(self, out_grad: Tensor, node: Tensor):
        a, b = node.inputs
        # A constant factor (a one-hot matrix, a mask) needs no gradient: skip its product.
        grad_a = sum_to_shape(out_grad * b, a.shape) if a.requires_grad else None
        grad_b = sum_to_shape(out_grad * a, b.shape) if b.requires_grad else None
        return grad_a, grad_b


@register(
    EWiseMul,
    n_inputs=2,
    settings=[{}, Setting({}, ((3, 4), (1, 4))), Setting({}, ((4,), (2, 3, 4)))],
)
def multiply(a: Tensor, b: Tensor) -> Tensor:
    """a * b elementwise, broadcasting like numpy."""
    return EWiseMul()(a, b)


class MulScalar(ScalarOp):
    def compute(self, a: Any) -> Any:
        return a * self.scalar

    def gradient(self, out_grad: Tensor, node: Tensor):
        return out_grad * self.scalar


@register(
    MulScalar,
    params=[SCALAR],
    random_case=_scalar_case((-2.0, 0.5, 3.0)),
    settings=[{"scalar": 2.5}, {"scalar": -0.5}],
)
def mul_scalar(a: Tensor, scalar: float) -> Tensor:
    """a * scalar."""
    return MulScalar(scalar)(a)


class EWisePow(TensorOp):
    """a ** b; d/da = b·a^(b−1), d/db = a^b·log a (a > 0)."""

    def compute(self, a: Any, b: Any) -> Any:
        return api(a).power(a, b)

    def gradient(self, out_grad: Tensor, node: Tensor):
        a, b = node.inputs
        grad_a = out_grad * b * power(a, b - 1)
        grad_b = out_grad * node * log(a)
        return sum_to_shape(grad_a, a.shape), sum_to_shape(grad_b, b.shape)


@register(
    EWisePow,
    n_inputs=2,
    draws=[positive, normal],
    nondifferentiable="a ≤ 0 (log a in the exponent's gradient)",
    settings=[{}, Setting({}, ((3, 4), (4,)))],
)
def power(a: Tensor, b: Tensor) -> Tensor:
    """a ** b elementwise (a > 0 for a gradient in b)."""
    return EWisePow()(a, b)


class PowerScalar(ScalarOp):
    """a ** scalar for any real exponent; gradient scalar·a^(scalar−1)."""

    def compute(self, a: Any) -> Any:
        return api(a).power(a, self.scalar)

    def gradient(self, out_grad: Tensor, node: Tensor):
        if self.scalar == 0:
            return out_grad * 0
        return out_grad * power_scalar(node.inputs[0], self.scalar - 1) * self.scalar


@register(
    PowerScalar,
    params=[SCALAR],
    draws=[positive],
    random_case=_scalar_case((-1.5, -1.0, 0.0, 0.5, 2.0, 3.0)),
    nondifferentiable="a = 0 for exponents below 1; a < 0 for fractional exponents",
    settings=[{"scalar": 2.0}, {"scalar": 3.0}, {"scalar": -1.5}, {"scalar": 0.5}, {"scalar": 0.0}],
)
def power_scalar(a: Tensor, scalar: float) -> Tensor:
    """a ** scalar, any real exponent (a > 0 for fractional ones)."""
    return PowerScalar(scalar)(a)


class EWiseDiv(TensorOp):
    def compute(self, a: Any, b: Any) -> Any:
        return api(a).divide(a, b)

    def gradient(self, out_grad: Tensor, node: Tensor):
        a, b = node.inputs
        grad_a = out_grad / b
        grad_b = sum_to_shape(-(grad_a * node), b.shape) if b.requires_grad else None
        return sum_to_shape(grad_a, a.shape) if a.requires_grad else None, grad_b


@register(
    EWiseDiv,
    n_inputs=2,
    draws=[normal, away_from_zero],
    nondifferentiable="b = 0 (a pole)",
    settings=[{}, Setting({}, ((3, 4), (3, 1)))],
)
def divide(a: Tensor, b: Tensor) -> Tensor:
    """a / b elementwise, broadcasting like numpy."""
    return EWiseDiv()(a, b)


class DivScalar(ScalarOp):
    def compute(self, a: Any) -> Any:
        return a / self.scalar

    def gradient(self, out_grad: Tensor, node: Tensor):
        return out_grad / self.scalar


@register(
    DivScalar,
    params=[SCALAR],
    random_case=_scalar_case((-2.0, 0.5, 3.0)),
    settings=[{"scalar": 4.0}, {"scalar": -0.5}],
)
def divide_scalar(a: Tensor, scalar: float) -> Tensor:
    """a / scalar; the scalar may be a 1-element array."""
    return DivScalar(scalar)(a)


class RDivScalar(ScalarOp):
    """scalar / a; gradient −scalar / a² = −out_grad · node / a."""

    def compute(self, a: Any) -> Any:
        # One quotient, in numpy's dtype for it: an integer input gives floats, as a / scalar
        # does. (scalar · a⁻¹ would round twice, and integers refuse negative powers.)
        return self.scalar / a

    def gradient(self, out_grad: Tensor, node: Tensor):
        return -(out_grad * node) / node.inputs[0]


@register(
    RDivScalar,
    params=[SCALAR],
    draws=[away_from_zero],
    random_case=_scalar_case((-2.0, 0.5, 3.0)),
    nondifferentiable="a = 0 (a pole)",
    settings=[{"scalar": 2.0}, {"scalar": -1.5}],
)
def rdivide_scalar(a: Tensor, scalar: float) -> Tensor:
    """scalar / a, true division (what `2 / tensor` computes)."""
    return RDivScalar(scalar)(a)


class Negate(TensorOp):
    def compute(self, a: Any) -> Any:
        return api(a).negative(a)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return negate(out_grad)


@register(Negate)
def negate(a: Tensor) -> Tensor:
    """−a."""
    return Negate()(a)


class Log(TensorOp):
    def compute(self, a: Any) -> Any:
        return api(a).log(a)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return out_grad / node.inputs[0]


@register(Log, draws=[positive], nondifferentiable="a ≤ 0 (outside the domain)")
def log(a: Tensor) -> Tensor:
    """Natural logarithm."""
    return Log()(a)


class Exp(TensorOp):
    def compute(self, a: Any) -> Any:
        return api(a).exp(a)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return out_grad * node


@register(Exp)
def exp(a: Tensor) -> Tensor:
    """e ** a."""
    return Exp()(a)


class ReLU(TensorOp):
    """max(a, 0); the gradient at 0 is taken as 0."""

    def compute(self, a: Any) -> Any:
        return api(a).maximum(a, 0)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return multiply(out_grad, Tensor.make_const(node.inputs[0].cached_data > 0))


@register(ReLU, draws=[away_from_zero], nondifferentiable="a = 0 (relu'(0) is taken as 0)")
def relu(a: Tensor) -> Tensor:
    """max(a, 0)."""
    return ReLU()(a)


class Tanh(TensorOp):
    """tanh a; gradient 1 − tanh² a."""

    def compute(self, a: Any) -> Any:
        return api(a).tanh(a)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return out_grad * (1 - node * node)


@register(Tanh)
def tanh(a: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return Tanh()(a)


class Sigmoid(TensorOp):
    """σ(a) = 1 / (1 + e^−a), computed without overflow; gradient σ(1 − σ)."""

    def compute(self, a: Any) -> Any:
        # e^−|a| never overflows; both branches of the logistic are then exact.
        xp = api(a)
        e = xp.exp(-xp.abs(a))
        return xp.where(a >= 0, 1 / (1 + e), e / (1 + e))

    def gradient(self, out_grad: Tensor, node: Tensor):
        return out_grad * (node * (1 - node))


@register(Sigmoid)
def sigmoid(a: Tensor) -> Tensor:
    """Logistic sigmoid."""
    return Sigmoid()(a)
