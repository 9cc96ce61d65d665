"""The module machinery, `Module` and `Parameter`, and the dense layers built on it.

A module finds its parameters by walking its attributes (modules, lists, tuples and dicts, in
insertion order); nothing is registered. Modules draw random numbers only when constructed,
through `needle.init`, in construction order, so a seeded model matches the course's needle
number for number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from needle import init, ops
from needle.autograd import Device, Tensor
from needle.backend_ndarray import api
from needle.errors import UsageError
from needle.init import Dtype


class Parameter(Tensor):
    """A tensor that is a learnable parameter of a module: `Module.parameters()` returns it."""


def _walk(value: Any, name: str, seen: set[int], recurse: bool) -> Iterator[tuple[str, Any]]:
    """(dotted name, item) for every Tensor and Module reachable from `value`, depth first in
    attribute insertion order, each object once (shared layers are not counted twice, and a
    module that refers back to its parent does not loop). With `recurse=False` a module is
    reported but not entered."""
    if isinstance(value, (Tensor, Module)):
        if id(value) in seen:
            return
        seen.add(id(value))
        yield name, value
        if not (isinstance(value, Module) and recurse):
            return
        items: Any = vars(value).items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    elif isinstance(value, dict):
        items = value.items()
    else:
        return
    for key, item in items:
        yield from _walk(item, f"{name}.{key}" if name else str(key), seen, recurse)


class Module:
    """Base class of every layer. Subclasses set attributes in `__init__` and define `forward`.

    `training` is True after construction; `train()` / `eval()` set it on every descendant.
    """

    def __init__(self) -> None:
        self.training = True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def _named(self, kind: type) -> list[tuple[str, Any]]:
        """(dotted path, item) for every instance of `kind` reachable from this module."""
        walk = _walk(self, "", set(), recurse=True)
        return [(name, item) for name, item in walk if isinstance(item, kind)]

    def parameters(self) -> list[Parameter]:
        """Every `Parameter` reachable through attributes, in insertion order, each once."""
        return [parameter for _, parameter in self.named_parameters()]

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """`parameters()` with the dotted path each is first reached by: `("modules.0.weight",
        weight)` for the weight of a Sequential's first layer."""
        return self._named(Parameter)

    def named_modules(self) -> list[tuple[str, Module]]:
        """This module (named "") and every module inside it, depth first in attribute order,
        each once, with its dotted path."""
        return self._named(Module)

    def children(self) -> list[Module]:
        """The modules held directly by this one (in attributes, lists, tuples or dicts)."""
        seen = {id(self)}
        walk = _walk(list(vars(self).values()), "", seen, recurse=False)
        return [item for _, item in walk if isinstance(item, Module)]

    def train(self) -> Module:
        """Put this module and all its descendants in training mode."""
        return self._set_training(True)

    def eval(self) -> Module:
        """Put this module and all its descendants in evaluation mode."""
        return self._set_training(False)

    def _set_training(self, mode: bool) -> Module:
        for _, module in self.named_modules():
            module.training = mode
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every tensor the module holds, parameters and plain tensors such as
        BatchNorm's running statistics alike, keyed by dotted attribute path
        (`"modules.0.weight"`)."""
        return {name: tensor.numpy().copy() for name, tensor in self._named(Tensor)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Replace each tensor's storage with the array of the same name in `state`.

        The names and shapes must match `state_dict()` exactly (otherwise UsageError, and
        nothing is replaced); arrays are cast to each tensor's dtype and copied, so `state` can
        be reused.
        """
        tensors = dict(self._named(Tensor))
        missing, unexpected = tensors.keys() - state.keys(), state.keys() - tensors.keys()
        if missing or unexpected:
            raise UsageError(
                f"state does not match {type(self).__name__}: missing {sorted(missing)}, "
                f"unexpected {sorted(unexpected)}"
            )
        loaded: dict[str, np.ndarray] = {}
        for name, tensor in tensors.items():
            array = np.asarray(state[name])
            if array.shape != tensor.shape:
                raise UsageError(f"state '{name}' has shape {array.shape}, expected {tensor.shape}")
            loaded[name] = array.astype(tensor.dtype, copy=True)
        for name, tensor in tensors.items():  # only once every array has passed
            tensor.data = Tensor.make_const(tensor.device.array(loaded[name]))


class Identity(Module):
    """y = x."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class Linear(Module):
    """y = x W + b, with W of shape (in_features, out_features) and b of shape (1, out_features).

    W ~ initializer(in_features, out_features); b ~ initializer(out_features, 1) reshaped to
    a row (fan_in = out_features, as the course has it). W is drawn first. The initializer
    defaults to `init.kaiming_uniform`; any function of (fan_in, fan_out, device=, dtype=)
    returning a Tensor will do, e.g. `functools.partial(init.xavier_normal, gain=2.0)`.
    Inputs of shape (..., in_features) give outputs of shape (..., out_features).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Device | None = None,
        dtype: Dtype = "float32",
        *,
        initializer: Callable[..., Tensor] = init.kaiming_uniform,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(initializer(in_features, out_features, device=device, dtype=dtype))
        self.bias: Parameter | None = None
        if bias:
            column = initializer(out_features, 1, device=device, dtype=dtype)
            self.bias = Parameter(ops.reshape(column, (1, out_features)).detach())

    def forward(self, X: Tensor) -> Tensor:
        lead = X.shape[:-1]
        flat = len(lead) != 1  # matmul on a 2-D view: one plain product, cheap gradients
        if flat:
            X = ops.reshape(X, (math.prod(lead), self.in_features))
        # The (1, out_features) bias row is added into the product, in the same node: an
        # add, or an explicit broadcast_to, would give the same numbers and more nodes.
        out = ops.matmul(X, self.weight, addend=self.bias)
        if flat:
            out = ops.reshape(out, (*lead, self.out_features))
        return out


class Flatten(Module):
    """(B, d1, d2, ...) → (B, d1·d2·...)."""

    def forward(self, X: Tensor) -> Tensor:
        return ops.reshape(X, (X.shape[0], math.prod(X.shape[1:])))


class Reshape(Module):
    """(B, ...) → (B, *shape): each sample's numbers, in order, in a new shape of the same
    count; from (B, d1·d2·...) to (B, d1, d2, ...) it is Flatten's inverse, as flat features
    become images."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, X: Tensor) -> Tensor:
        if X.ndim < 1 or math.prod(X.shape[1:]) != math.prod(self.shape):
            raise UsageError(
                f"Reshape to {self.shape} takes samples of {math.prod(self.shape)} numbers; "
                f"got shape {X.shape}"
            )
        return ops.reshape(X, (X.shape[0], *self.shape))


class ReLU(Module):
    """y = max(x, 0)."""

    def forward(self, x: Tensor) -> Tensor:
        return ops.relu(x)


class Tanh(Module):
    """y = tanh(x)."""

    def forward(self, x: Tensor) -> Tensor:
        return ops.tanh(x)


class Sigmoid(Module):
    """y = 1 / (1 + e^(−x))."""

    def forward(self, x: Tensor) -> Tensor:
        return ops.sigmoid(x)


class Sequential(Module):
    """Apply `modules` in order: y = mₙ(…m₂(m₁(x)))."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        self.modules = modules

    def forward(self, x: Tensor) -> Tensor:
        for module in self.modules:
            x = module(x)
        return x


class Residual(Module):
    """y = fn(x) + x."""

    def __init__(self, fn: Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return ops.add(self.fn(x), x)


class SoftmaxLoss(Module):
    """Cross-entropy of softmax(logits) against integer labels, averaged over the batch:

        loss = (1/N) Σᵢ [ log Σⱼ exp(zᵢⱼ) − zᵢ,yᵢ ] = −(1/N) Σᵢ log_softmax(z)ᵢ,yᵢ

    `logits` has shape (N, k), `y` holds N labels in [0, k) (any integer dtype, or whole
    floats); the result is 0-d. The course picks zᵢ,yᵢ as a product with one_hot(y); here
    the loss is one op, `ops.cross_entropy`, reading each row's entry by index: the same
    numbers without a (N, k) one-hot matrix, one node forward and one backward. The sum is
    over log_softmax, never lse − z_y, two rounded numbers near z's magnitude.
    """

    def forward(self, logits: Tensor, y: Tensor) -> Tensor:
        # cross_entropy checks the labels' range against the logits itself: not twice.
        return ops.cross_entropy(logits, init.class_indices(y, None, op="SoftmaxLoss"))


class BatchNorm1d(Module):
    """Normalize each feature over the batch: y = w · (x − μ) / √(σ² + eps) + b.

    Training uses the batch's mean μ and biased variance σ² over axis 0 and updates, outside
    the graph, `running = (1 − momentum) · running + momentum · batch_stat`. Evaluation uses
    the running statistics. `weight`/`bias` are Parameters; the running statistics are not.
    """

    def __init__(
        self,
        dim: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        device: Device | None = None,
        dtype: Dtype = "float32",
    ) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.momentum = momentum
        self.weight = Parameter(init.ones(dim, device=device, dtype=dtype))
        self.bias = Parameter(init.zeros(dim, device=device, dtype=dtype))
        self.running_mean = init.zeros(dim, device=device, dtype=dtype)
        self.running_var = init.ones(dim, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return self._evaluate(x)
        return self._normalize(x, (0,))

    def _normalize(self, x: Tensor, axes: tuple[int, ...]) -> Tensor:
        """Training: y = w · x̂ + b with the batch's statistics over `axes`, in one node
        (`standardize` with w and b, one per channel, as its scale and shift)."""
        standardize = ops.Standardize(axes, self.eps)
        out = standardize(x, self.weight, self.bias)
        self._update_running(standardize.mean, standardize.var)
        return out

    def _evaluate(self, x: Tensor, axis: int = 1) -> Tensor:
        """Evaluation, for features on x's axis `axis`: the running statistics, in one node
        (w and b keep their gradients), the (dim,) arrays as they are."""
        stats = (self.running_mean, self.running_var, self.weight, self.bias)
        return ops.normalize(x, *stats, self.eps, axis)

    def _update_running(self, mean: Any, var: Any) -> None:
        # On the arrays: the statistics must not join (or keep alive) the graph. The new
        # array is of the running statistic's own device and dtype, so it replaces the old
        # one directly (what `.data =` checks holds by construction).
        m = self.momentum
        for running, batch in ((self.running_mean, mean), (self.running_var, var)):
            xp = api(batch)
            updated = (1 - m) * running.cached_data + m * xp.reshape(batch, running.shape)
            running.cached_data = xp.astype(updated, running.dtype)


class LayerNorm1d(Module):
    """Normalize each sample over its last axis: y = w · (x − μ) / √(σ² + eps) + b, with the
    sample's mean μ and biased variance σ²; `weight` starts at ones, `bias` at zeros."""

    def __init__(
        self, dim: int, eps: float = 1e-5, device: Device | None = None, dtype: Dtype = "float32"
    ) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = Parameter(init.ones(dim, device=device, dtype=dtype))
        self.bias = Parameter(init.zeros(dim, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        x_hat = ops.standardize(x, (x.ndim - 1,), self.eps)
        return ops.broadcast_to(self.weight, x.shape) * x_hat + ops.broadcast_to(self.bias, x.shape)


class Dropout(Module):
    """Training: zero each entry with probability `p` and scale the rest by 1/(1 − p), so the
    expectation is unchanged; the keep-mask is `randb(*x.shape, p=1 − p)`, drawn on every
    call, even when p = 0 (so the random stream does not depend on p). Evaluation: y = x."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0 <= p <= 1:
            raise UsageError(f"Dropout: drop probability p={p} is not in [0, 1]")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        mask = init.randb(*x.shape, p=1 - self.p, device=x.device, dtype=x.dtype)
        if self.p == 1:  # every entry dropped; 1/(1 − p) would turn the zeros into NaN
            return x * mask
        return x * mask / (1 - self.p)
