"""conv_step.py's numpy floor: the conv training step (and the evaluation forward pass)
written by hand in numpy, on NHWC arrays, from a needle model's own weights.

Layers: conv by im2col (one strided copy, one sgemm for the forward pass and one for the
weight gradient, the input gradient by one sgemm per kernel tap added into place), batch
norm with batch statistics (running statistics in evaluation), ReLU, Flatten to needle's
NCHW order, Linear, residual adds; softmax loss and plain SGD. Every column sum is one
product with a vector of ones. `FloorStep(model, dtype)` is a training step, `FloorEval`
an evaluation; float32 is timed, float64 is the reference both sides are checked against.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

# Appended, not prepended: PYTHONPATH can point at another checkout to compare versions.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from needle import nn  # noqa: E402

LR = 0.01


# Layers on NHWC arrays. In training, each forward keeps what its backward needs; each
# backward sets `grads` (in the order of `params`) and returns the input's gradient. With
# `training` False (`set_training`) a forward keeps nothing and BatchNorm uses its running
# statistics. `dtype` is float32 for the timed floor, float64 for the reference both sides
# are checked against.

_ONES: dict[tuple[int, np.dtype], np.ndarray] = {}


def column_sums(a: np.ndarray) -> np.ndarray:
    """Σ over the rows of an (M, C) matrix, as ones(M) @ a: one BLAS product, where
    `a.sum(axis=0)` runs numpy's inner loop over only C entries at a time."""
    key = (a.shape[0], a.dtype)
    if key not in _ONES:
        _ONES[key] = np.ones(a.shape[0], a.dtype)
    return _ONES[key] @ a


class FloorConv:
    """y = conv(x, W) + b, as nn.Conv: zero padding (K − 1)//2, W of shape (K, K, Cin, Cout)."""

    training = True

    def __init__(self, conv: nn.Conv, dtype: type) -> None:
        self.weight = conv.weight.numpy().astype(dtype)
        self.bias = conv.bias.numpy().astype(dtype)
        self.params = [self.weight, self.bias]
        self.stride, self.padding, self.kernel = conv.stride, conv.padding, conv.kernel_size

    def forward(self, x: np.ndarray) -> np.ndarray:
        n, h, w, c = x.shape
        k, s, p = self.kernel, self.stride, self.padding
        padded = np.zeros((n, h + 2 * p, w + 2 * p, c), x.dtype)
        padded[:, p : p + h, p : p + w] = x
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        sn, sh, sw, sc = padded.strides
        windows = np.lib.stride_tricks.as_strided(
            padded, (n, ho, wo, k, k, c), (sn, sh * s, sw * s, sh, sw, sc), writeable=False
        )
        cols = windows.reshape(n * ho * wo, k * k * c)  # im2col: the one copy
        if self.training:
            self.cols, self.in_shape = cols, x.shape
        out = cols @ self.weight.reshape(k * k * c, -1)
        out += self.bias
        return out.reshape(n, ho, wo, -1)

    def backward(self, out_grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        n, ho, wo, c_out = out_grad.shape
        g = out_grad.reshape(n * ho * wo, c_out)
        self.grads = [(self.cols.T @ g).reshape(self.weight.shape), column_sums(g)]
        if not need_input_grad:
            return None
        (_, h, w, c), k, s, p = self.in_shape, self.kernel, self.stride, self.padding
        taps = self.weight  # (K, K, Cin, Cout)
        padded = np.zeros((n, h + 2 * p, w + 2 * p, c), g.dtype)
        for di in range(k):  # col2im: each tap's share added back where the tap read
            rows = slice(di, di + s * (ho - 1) + 1, s)
            for dj in range(k):
                share = (g @ taps[di, dj].T).reshape(n, ho, wo, c)
                padded[:, rows, dj : dj + s * (wo - 1) + 1 : s] += share
        return padded[:, p : p + h, p : p + w]


class FloorBatchNorm:
    """y = w · (x − μ) / √(σ² + eps) + b per channel, μ and σ² (biased) over N·H·W; the
    running statistics updated as BatchNorm1d does. With x̂ the normalized input and
    m = N·H·W rows: ∂w = Σ dy·x̂, ∂b = Σ dy, dx = w/√(σ² + eps) · (dy − ∂b/m − x̂·∂w/m).
    Evaluation: the running μ and σ², as y = x · s + (b − μ · s), s = w / √(σ² + eps)."""

    training = True

    def __init__(self, bn: nn.BatchNorm2d, dtype: type) -> None:
        self.weight, self.bias = bn.weight.numpy().astype(dtype), bn.bias.numpy().astype(dtype)
        self.params = [self.weight, self.bias]
        self.running_mean = bn.running_mean.numpy().astype(dtype)
        self.running_var = bn.running_var.numpy().astype(dtype)
        self.eps, self.momentum = bn.eps, bn.momentum

    def forward(self, x: np.ndarray) -> np.ndarray:
        rows = x.reshape(-1, x.shape[-1])
        if not self.training:
            scale = self.weight / np.sqrt(self.running_var + self.eps)
            out = rows * scale
            out += self.bias - self.running_mean * scale
            return out.reshape(x.shape)
        mean = column_sums(rows) / len(rows)
        centered = rows - mean
        var = column_sums(np.square(centered)) / len(rows)
        self.inv_std = 1 / np.sqrt(var + self.eps)
        self.x_hat = centered * self.inv_std
        m = self.momentum
        self.running_mean = (1 - m) * self.running_mean + m * mean
        self.running_var = (1 - m) * self.running_var + m * var
        return (self.x_hat * self.weight + self.bias).reshape(x.shape)

    def backward(self, out_grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray:
        dy = out_grad.reshape(self.x_hat.shape)
        m = dy.shape[0]
        d_bias, d_weight = column_sums(dy), column_sums(dy * self.x_hat)
        self.grads = [d_weight, d_bias]
        dx = dy - d_bias / m - self.x_hat * (d_weight / m)
        dx *= self.weight * self.inv_std
        return dx.reshape(out_grad.shape)


class FloorReLU:
    params: list[np.ndarray] = []
    training = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = np.maximum(x, 0)
        if self.training:
            self.out = out
        return out

    def backward(self, out_grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray:
        return out_grad * (self.out > 0)


class FloorFlatten:
    """NHWC → the (N, C·H·W) rows needle's Flatten makes of NCHW images."""

    params: list[np.ndarray] = []
    training = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.training:
            self.in_shape = x.shape
        return x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)

    def backward(self, out_grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray:
        n, h, w, c = self.in_shape
        return out_grad.reshape(n, c, h, w).transpose(0, 2, 3, 1)


class FloorLinear:
    training = True

    def __init__(self, linear: nn.Linear, dtype: type) -> None:
        self.weight = linear.weight.numpy().astype(dtype)
        self.bias = linear.bias.numpy().astype(dtype)
        self.params = [self.weight, self.bias]

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.training:
            self.x = x
        return x @ self.weight + self.bias

    def backward(self, out_grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray:
        self.grads = [self.x.T @ out_grad, column_sums(out_grad)[None]]
        return out_grad @ self.weight.T


class FloorSequential:
    params: list[np.ndarray] = []

    def __init__(self, layers: list) -> None:
        self.layers = layers

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, out_grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        for i in range(len(self.layers) - 1, -1, -1):
            out_grad = self.layers[i].backward(out_grad, need_input_grad or i > 0)
        return out_grad


class FloorResidual:
    params: list[np.ndarray] = []

    def __init__(self, fn: FloorSequential) -> None:
        self.fn = fn

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.fn.forward(x) + x

    def backward(self, out_grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray:
        return self.fn.backward(out_grad) + out_grad


def floor_of(module: nn.Module, dtype: type = np.float32):
    """The floor's layer for a needle module, with copies of its weights in `dtype`."""
    if isinstance(module, nn.Sequential):
        return FloorSequential([floor_of(m, dtype) for m in module.modules])
    if isinstance(module, nn.Residual):
        return FloorResidual(floor_of(module.fn, dtype))
    kinds = {
        nn.Conv: FloorConv,
        nn.BatchNorm2d: FloorBatchNorm,
        nn.Linear: FloorLinear,
        nn.ReLU: lambda m, dtype: FloorReLU(),
        nn.Flatten: lambda m, dtype: FloorFlatten(),
    }
    if type(module) not in kinds:
        raise TypeError(f"the numpy floor has no layer for {type(module).__name__}")
    return kinds[type(module)](module, dtype)


def leaves(layer) -> list:
    """The layer and its descendants, depth first, in execution order."""
    children = getattr(layer, "layers", None) or ([layer.fn] if hasattr(layer, "fn") else [])
    return [layer] + [leaf for child in children for leaf in leaves(child)]


def set_training(net, training: bool) -> None:
    """Training or evaluation for every layer of a floor network, as `Module.train()` and
    `Module.eval()` set it for needle's."""
    for layer in leaves(net):
        layer.training = training


def softmax_loss(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean cross-entropy of softmax(logits) against labels y, and its gradient."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, y]))
    d_logits = exp / total
    d_logits[rows, y] -= 1
    d_logits /= n
    return loss, d_logits


class FloorStep:
    """The floor's training step: forward from NCHW images, softmax loss, backward, SGD."""

    def __init__(self, model: nn.Module, dtype: type = np.float32) -> None:
        self.net = floor_of(model, dtype)
        self.dtype = dtype
        self.with_params = [layer for layer in leaves(self.net) if layer.params]
        self.first_conv = next(layer for layer in self.with_params if isinstance(layer, FloorConv))

    def __call__(self, x: np.ndarray, y: np.ndarray) -> float:
        images = x.transpose(0, 2, 3, 1).astype(self.dtype, copy=False)
        loss, d_logits = softmax_loss(self.net.forward(images), y)
        self.net.backward(d_logits, need_input_grad=False)
        for layer in self.with_params:
            for p, g in zip(layer.params, layer.grads, strict=True):
                p -= LR * g
        return loss


class FloorEval:
    """The floor's evaluation: the forward pass from NCHW images with BatchNorm's running
    statistics, keeping nothing for a backward pass; the logits."""

    def __init__(self, model: nn.Module, dtype: type = np.float32) -> None:
        self.net = floor_of(model, dtype)
        set_training(self.net, False)
        self.dtype = dtype

    def __call__(self, x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        return self.net.forward(x.transpose(0, 2, 3, 1).astype(self.dtype, copy=False))
