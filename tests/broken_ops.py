"""Ops whose gradients are broken on purpose, each in a way a gradient checker must catch.

Shared by the library tests (`test_gradcheck.py`) and the CLI tests (`test_cli_gradcheck.py`):
each subclasses a real op and keeps its forward pass, so only the gradient is wrong.
"""

from __future__ import annotations

import numpy as np

import needle as ndl
from needle.autograd import Tensor


class ScaledMul(ndl.ops.EWiseMul):
    # 1 % too large for the first input only.
    def gradient(self, out_grad, node):
        grad_a, grad_b = super().gradient(out_grad, node)
        return grad_a * 1.01, grad_b


class ScaledExp(ndl.ops.Exp):
    def gradient(self, out_grad, node):
        return out_grad * node * 1.01


class ScaledTanh(ndl.ops.Tanh):
    def gradient(self, out_grad, node):
        return super().gradient(out_grad, node) * 1.01


class TransposedMatMul(ndl.ops.MatMul):
    # For square inputs the shape is right and the values are not.
    def gradient(self, out_grad, node):
        grad_a, grad_b = super().gradient(out_grad, node)
        return ndl.transpose(grad_a), grad_b


class AddWithoutReduction(ndl.ops.EWiseAdd):
    # Forgets to sum a broadcast input's gradient back to its shape.
    def gradient(self, out_grad, node):
        return out_grad, out_grad


class ExpIgnoringOutGrad(ndl.ops.Exp):
    def gradient(self, out_grad, node):
        return node


class SumIgnoringOutGrad(ndl.ops.Summation):
    # Right for the default cotangent of ones, wrong for any other.
    def gradient(self, out_grad, node):
        return Tensor.make_const(np.ones(node.inputs[0].shape))


class DetachedTanh(ndl.ops.Tanh):
    # First derivative right, but built from constants: its own derivative is lost (order 2
    # sees it).
    def gradient(self, out_grad, node):
        return out_grad * Tensor.make_const(1 - node.numpy() ** 2)


class ScaledLog(ndl.ops.Log):
    # Off by a constant factor: the second derivative of this wrong gradient is consistent
    # with itself, so only the first-order check can see it.
    def gradient(self, out_grad, node):
        return super().gradient(out_grad, node) * 1.01


class DivScalarForgettingTheScalar(ndl.ops.DivScalar):
    # d(a/s)/da = 1/s, written as 1: off by the factor s, and constant, like the right one.
    def gradient(self, out_grad, node):
        return out_grad


class MatMulForgettingTranspose(ndl.ops.MatMul):
    # d/da written as out_grad @ b, without bᵀ: for non-square b the product cannot be made,
    # and the backward pass raises. d/db is right.
    def gradient(self, out_grad, node):
        a, b = node.inputs
        grad_a = ndl.matmul(out_grad, b) if a.requires_grad else None
        grad_b = ndl.matmul(ndl.transpose(a), out_grad) if b.requires_grad else None
        return grad_a, grad_b


class SigmoidTimesTransposedOnes(ndl.ops.Sigmoid):
    # A constant of the transposed shape: numpy cannot broadcast it (a ValueError, not one
    # of needle's errors).
    def gradient(self, out_grad, node):
        s = node.numpy()
        return out_grad * Tensor.make_const((s * (1 - s)).T.copy())


def scaled_gradient(op_class: type, factor: float) -> type:
    """A subclass of `op_class` whose every input's gradient is `factor` times the right one."""

    class Scaled(op_class):
        def gradient(self, out_grad, node):
            grads = super().gradient(out_grad, node)
            if isinstance(grads, tuple):
                return tuple(None if g is None else g * factor for g in grads)
            return grads * factor

    Scaled.__name__ = Scaled.__qualname__ = f"{op_class.__name__}Times{factor:g}"
    return Scaled


class SplitStackingReversed(ndl.ops.Split):
    # Hands slice i the cotangent of slice n−1−i: right only for a palindrome of cotangents.
    def gradient(self, out_grad, node):
        return ndl.stack(out_grad.tuple()[::-1], self.axis)


class StackSplittingReversed(ndl.ops.Stack):
    # The same mistake the other way: of three inputs only the middle one's gradient is right.
    def gradient(self, out_grad, node):
        return ndl.make_tuple(*ndl.split(out_grad, self.axis).tuple()[::-1])
