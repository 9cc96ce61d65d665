"""Optimizers: update parameters from their `.grad`.

`step()` works on the arrays directly (it is on every training step's hot path), with their
operators and the namespace of their device (`api`): numpy arrays on cpu_numpy(), NDArrays
elsewhere. It gives each parameter a new array instead of writing into the old one, so no
graph grows, a caller holding the previous array keeps its values, and `.grad` is never
modified. Python scalars keep float32 arrays float32. The state (`state_dict()`) is numpy
arrays whatever the device.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from needle.autograd import Tensor
from needle.backend_ndarray import api
from needle.errors import UsageError


class Optimizer:
    """Holds a list of parameters; subclasses define `step()`.

    Per-parameter state (momentum buffers, moment estimates) lives in dicts from parameter
    index to numpy array, one dict per name in `_per_param`; `state_dict()` exports them.
    """

    _per_param: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Tensor]) -> None:
        self.params = list(params)

    def step(self) -> None:
        raise NotImplementedError

    def reset_grad(self) -> None:
        """Forget every parameter's gradient (and the graph it may keep alive)."""
        for p in self.params:
            p.grad = None

    @staticmethod
    def _grad(w: Any, g: Any, weight_decay: float) -> Any:
        """g + weight_decay · w for a parameter's array w and its gradient's g, in w's dtype."""
        if g.dtype != w.dtype:
            g = api(g).astype(g, w.dtype)
        if weight_decay:
            g = g + weight_decay * w
        return g

    @staticmethod
    def _assign(p: Tensor, new: Any) -> None:
        # A numpy float64 hyperparameter (say, from a schedule) would promote float32 here.
        p.cached_data = api(new).astype(new, p.dtype)

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's accumulated state as plain data: `{name: {param_index: array}}`
        for each per-parameter buffer, plus counters (Adam's `t`). Arrays are copies.
        Hyperparameters are not included: they come from the constructor."""
        return {
            name: {i: np.array(api(a).to_numpy(a)) for i, a in getattr(self, name).items()}
            for name in self._per_param
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict()` returned, for the same list of parameters; a state
        that does not fit raises UsageError and changes nothing."""
        unexpected = set(state) - set(self._per_param)
        if unexpected:
            raise UsageError(
                f"{type(self).__name__} state has unknown entries {sorted(unexpected)}; "
                f"expected {list(self._per_param)}"
            )
        loaded: dict[str, dict[int, np.ndarray]] = {}
        for name in self._per_param:
            buffers = loaded[name] = {}
            for key, array in state.get(name, {}).items():
                i = int(key)
                if not 0 <= i < len(self.params):
                    raise UsageError(
                        f"{type(self).__name__} state '{name}' refers to parameter {i}, but "
                        f"there are {len(self.params)} parameters"
                    )
                p = self.params[i]
                array = np.asarray(array)
                if array.shape != p.shape:
                    raise UsageError(
                        f"{type(self).__name__} state '{name}' for parameter {i} has shape "
                        f"{array.shape}, but the parameter has shape {p.shape}"
                    )
                buffers[i] = p.device.array(array.astype(p.dtype, copy=True))
        for name, buffers in loaded.items():  # only once every buffer has passed
            setattr(self, name, buffers)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum as an exponential average (the course's,
    not PyTorch's):

        g = grad + weight_decay · p
        u = momentum · u + (1 − momentum) · g        (u starts at 0)
        p ← p − lr · u
    """

    _per_param = ("u",)

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 0.01,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params)
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.u: dict[int, np.ndarray] = {}

    def step(self) -> None:
        # Python floats: a numpy float64 hyperparameter (a schedule's) would promote float32.
        rate, momentum, decay = -float(self.lr), float(self.momentum), float(self.weight_decay)
        for i, p in enumerate(self.params):
            grad = p.grad
            if grad is None:
                continue
            w = p.cached_data
            u = self._grad(w, grad.cached_data, decay)
            if momentum:  # with momentum 0, u = g exactly; skip the buffer
                u = momentum * self.u.get(i, 0.0) + (1 - momentum) * u
                self.u[i] = u
            # p − lr·u with a single new array (negation is exact, so the bits are the same).
            new = u * rate
            new += w
            p.cached_data = new


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), with `t` counting calls to `step()`:

    g = grad + weight_decay · p
    m = β₁ · m + (1 − β₁) · g,   v = β₂ · v + (1 − β₂) · g²      (both start at 0)
    m_hat = m / (1 − β₁ᵗ),       v_hat = v / (1 − β₂ᵗ)
    p ← p − lr · m_hat / (√v_hat + eps)
    """

    _per_param = ("m", "v")
    # AdamW's switch: weight decay shrinks p itself instead of joining the gradient.
    _decoupled = False

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 0.01,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params)
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weight_decay = weight_decay
        self.t = 0
        self.m: dict[int, np.ndarray] = {}
        self.v: dict[int, np.ndarray] = {}

    def step(self) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        correction1, correction2 = 1 - b1**self.t, 1 - b2**self.t
        l2 = 0.0 if self._decoupled else self.weight_decay
        shrink = 1 - self.lr * self.weight_decay if self._decoupled else 1.0
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = self._grad(p.cached_data, p.grad.cached_data, l2)
            m = b1 * self.m.get(i, 0.0) + (1 - b1) * g
            v = b2 * self.v.get(i, 0.0) + (1 - b2) * g**2
            self.m[i], self.v[i] = m, v
            m_hat, v_hat = m / correction1, v / correction2
            w = p.cached_data if shrink == 1 else shrink * p.cached_data
            self._assign(p, w - self.lr * m_hat / (api(v_hat).sqrt(v_hat) + self.eps))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        t = int(state.pop("t", 0))
        super().load_state_dict(state)
        self.t = t


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019, "Decoupled Weight Decay
    Regularization"): the decay shrinks p directly instead of entering the moments as an L2
    gradient, so 1/√v_hat does not rescale it and every entry shrinks by the same factor:

    g = grad
    m, v, m_hat, v_hat as in Adam
    p ← p − lr · (m_hat / (√v_hat + eps) + weight_decay · p)

    computed, as PyTorch does, as p ← (1 − lr · weight_decay) · p − lr · m_hat / (√v_hat + eps).
    The default weight_decay is PyTorch's 0.01; with 0 it is Adam (without decay) exactly.
    """

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 0.01,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, lr, beta1, beta2, eps, weight_decay)


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> float:
    """Scale the gradients of `params` together so that their global norm is at most
    `max_norm`, and return the norm they had (Pascanu et al., 2013, "On the difficulty of
    training recurrent neural networks"; PyTorch's `clip_grad_norm_`):

        norm = √(Σ_p Σ_i grad_p,i²)
        norm > max_norm:  grad_p ← grad_p · max_norm / (norm + 1e-6)

    Every gradient keeps its direction and the update its direction as a whole, unlike
    clipping each entry. Parameters without a gradient are skipped. Each `.grad` that is
    scaled is replaced by a new tensor, never written into, like the optimizers' updates.
    """
    if not max_norm > 0:
        raise UsageError(f"clip_grad_norm: max_norm must be > 0 (got {max_norm})")
    params = [p for p in params if p.grad is not None]
    squares = 0.0
    for p in params:
        g = p.grad.cached_data
        squares += float(api(g).to_numpy(api(g).sum(g * g)))
    norm = squares**0.5
    if norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for p in params:
            p.grad = Tensor.make_const(p.grad.cached_data * scale)
    return norm
