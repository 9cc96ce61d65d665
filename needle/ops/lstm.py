"""The LSTM cell's gates as one op: `lstm_gates(z, c)` → (h′, c′), from the gate
pre-activations z = X·W_ih + b_ih + h·W_hh + b_hh (B, 4H), cut into i, f, g, o (PyTorch's
column order), and the cell state c (B, H):

    c′ = σ(f)·c + σ(i)·tanh(g),   h′ = σ(o)·tanh(c′)

Written with the elementwise ops this is 15 graph nodes a step forward and about twice as
many backward; a language model's window runs it T × layers times, so the Python per node
is most of the step. Here it is one node forward and one backward:

- `LSTMGates` keeps the activations σ(i), σ(f), tanh(g), σ(o) and tanh(c′) it computed, and
  its gradient is one `LSTMGatesGrad` node that reuses them. With dc = dh′·σ(o)·(1 − tanh²c′)
  + dc′ (the cotangents of h′ and c′):

      dz = [dc·tanh(g)·σ′(i), dc·c·σ′(f), dc·σ(i)·(1 − tanh²g), dh′·tanh(c′)·σ′(o)],
      dc_prev = dc·σ(f),          σ′ = σ(1 − σ)

- `LSTMGatesGrad`, F(z, c, dh′, dc′) = (dz, dc_prev), is the vector-Jacobian product of
  the gates G at (z, c): linear in the cotangents. So its gradient under cotangents
  u = (u_z, u_c) is, in the cotangents, the Jacobian-vector product J_G·u (forward-mode
  derivative of G along u), and in (z, c) the derivative of F along u (the Hessian of
  ⟨(dh′, dc′), G⟩ is symmetric). Both are written with the elementwise ops, so they can be
  differentiated again; they run only for second derivatives.

The same step on arrays (`gates_forward`, `gates_vjp`) is what `ops.lstm_layer` runs at each
step of a window (`LSTMCellSteps`, see needle/ops/recurrence.py).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from needle.autograd import Tensor, TensorTuple, TensorTupleOp
from needle.backend_ndarray import api
from needle.devices import device_of
from needle.errors import UsageError
from needle.ops import elementwise as ew
from needle.ops.registry import register
from needle.ops.shape import reshape
from needle.ops.tuples import split, stack


def _columns(a: Any, hidden: int) -> tuple[Any, Any, Any, Any]:
    """The four H-wide column blocks of a (B, 4H) array, as views."""
    xp, rows = api(a), slice(None)
    return tuple(xp.getitem(a, (rows, slice(k * hidden, (k + 1) * hidden))) for k in range(4))


def _hidden(z_shape: tuple[int, ...], c_shape: tuple[int, ...]) -> int:
    """H, once z is (B, 4H) and c is (B, H); refused otherwise."""
    if len(z_shape) != 2 or len(c_shape) != 2 or z_shape != (c_shape[0], 4 * c_shape[1]):
        raise UsageError(
            f"lstm_gates: gate pre-activations of shape {z_shape} and a cell state of shape "
            f"{c_shape}; expected (B, 4H) and (B, H)"
        )
    return c_shape[1]


@functools.lru_cache(maxsize=64)
def _gate_scales(hidden: int, dtype: str, device: Any) -> tuple[Any, Any]:
    """The (4H,) rows 1/2 in the columns of i, f, o and 1 in g's, then 1/2 and 0
    (`_gate_activations`), as arrays of `device` (None: numpy): made once, not on every step
    of every window (on cuda() each would be a copy to the GPU)."""
    half = [0.5] * hidden
    rows = np.asarray([half * 2 + [1.0] * hidden + half, half * 2 + [0.0] * hidden + half], dtype)
    return tuple(rows) if device is None else tuple(device.array(r, dtype=dtype) for r in rows)


def _gate_activations(z: Any, hidden: int) -> tuple[Any, Any, Any, Any]:
    """σ(i), σ(f), tanh(g), σ(o) from z (B, 4H), all four in one tanh of the whole array:
    σ(x) = ½·tanh(x/2) + ½, exact algebra, that never overflows either. (It gives σ of a
    very negative x to within float rounding of ½, not of σ itself; a gate multiplies, so
    that is the error that matters. Three times faster than `ops.sigmoid`'s two branches.)"""
    xp = api(z)
    device = None if type(z) is np.ndarray else device_of(z)
    scale, shift = _gate_scales(hidden, str(z.dtype), device)
    return _columns(xp.add(xp.multiply(xp.tanh(xp.multiply(z, scale)), scale), shift), hidden)


class LSTMGates(TensorTupleOp):
    """(z (B, 4H), c (B, H)) → (h′, c′); see the module's docstring."""

    def compute(self, z: Any, c: Any) -> tuple[Any, Any]:
        h_next, c_next, saved = gates_forward(z, c, _hidden(z.shape, c.shape))
        self.keep((z, c), saved)  # for the gradient, if one is taken
        return h_next, c_next

    def gradient(self, out_grad: TensorTuple, node: TensorTuple):
        z, c = node.inputs
        dh, dc = out_grad.tuple()
        grads = LSTMGatesGrad(self.kept(node))(z, c, dh, dc)
        return grads[0], grads[1]


class LSTMGatesGrad(TensorTupleOp):
    """(z, c, dh′, dc′) → (dz, dc_prev): `LSTMGates`' vector-Jacobian product. `saved`:
    the forward pass's activations, else they are computed again from z and c."""

    def __init__(self, saved: tuple[Any, ...] | None = None):
        self.saved = saved

    def compute(self, z: Any, c: Any, dh: Any, dc: Any) -> tuple[Any, Any]:
        saved, self.saved = self.saved, None  # the forward's activations stand for one call
        if saved is None:
            saved = gates_forward(z, c, _hidden(z.shape, c.shape))[2]
        return gates_vjp(saved, c, dh, dc)

    def gradient(self, out_grad: TensorTuple, node: TensorTuple):
        z, c, dh, dc = node.inputs
        u_z, u_c = out_grad.tuple()
        hidden = c.shape[1]
        zi, zf, zg, zo = _tensor_columns(z, hidden)
        i, f, g, o = ew.sigmoid(zi), ew.sigmoid(zf), ew.tanh(zg), ew.sigmoid(zo)
        si, sf, sg, so = i * (1 - i), f * (1 - f), 1 - g * g, o * (1 - o)
        c_next = f * c + i * g
        tanh_c = ew.tanh(c_next)
        st = 1 - tanh_c * tanh_c
        d_cell = dh * o * st + dc
        # G's derivative along u: the activations', c′'s and tanh(c′)'s.
        ui, uf, ug, uo = _tensor_columns(u_z, hidden)
        di, df, dg, do = si * ui, sf * uf, sg * ug, so * uo
        dc_next = df * c + f * u_c + di * g + i * dg
        dt = st * dc_next
        dh_next = do * tanh_c + o * dt
        # F's derivative along u, term by term of `compute`.
        dd_cell = dh * (do * st - 2 * o * tanh_c * dt)
        grad_z = (
            dd_cell * g * si + d_cell * dg * si + d_cell * g * (1 - 2 * i) * di,
            dd_cell * c * sf + d_cell * u_c * sf + d_cell * c * (1 - 2 * f) * df,
            dd_cell * i * sg + d_cell * di * sg - 2 * d_cell * i * g * dg,
            dh * dt * so + dh * tanh_c * (1 - 2 * o) * do,
        )
        grad_c = dd_cell * f + d_cell * df
        return _tensor_join(grad_z, z.shape), grad_c, dh_next, dc_next


def gates_forward(z: Any, c: Any, hidden: int) -> tuple[Any, Any, tuple[Any, ...]]:
    """(h′, c′, the activations σ(i), σ(f), tanh(g), σ(o), tanh(c′) kept for `gates_vjp`)
    from z (B, 4H) and c (B, H): the arrays `LSTMGates` computes (and `ops.lstm_layer` at
    each step)."""
    xp = api(z)
    i, f, g, o = _gate_activations(z, hidden)
    c_next = xp.add(xp.multiply(f, c), xp.multiply(i, g))
    tanh_c = xp.tanh(c_next)
    return xp.multiply(o, tanh_c), c_next, (i, f, g, o, tanh_c)


class LSTMCellSteps:
    """The LSTM cell as `ops.recurrence` runs it: the state (h, c), four gates."""

    name, gates, state_size = "lstm_layer", 4, 2

    def step(self, z: Any, state: tuple[Any, ...]) -> tuple[tuple[Any, Any], tuple[Any, ...]]:
        h_next, c_next, saved = gates_forward(z, state[1], state[1].shape[1])
        return (h_next, c_next), saved

    def step_vjp(self, saved: tuple, state: tuple, d_state: list) -> tuple[Any, tuple[Any]]:
        dz, dc_prev = gates_vjp(saved, state[1], *d_state)
        return dz, (dc_prev,)

    def unrolled_step(self, z: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return lstm_gates(z, state[1]).tuple()


def gates_vjp(saved: tuple[Any, ...], c: Any, dh: Any, dc: Any) -> tuple[Any, Any]:
    """(dz (B, 4H), dc_prev) from the activations σ(i), σ(f), tanh(g), σ(o), tanh(c′) of a
    step from state c, under cotangents dh′, dc′: the arrays `LSTMGatesGrad` computes (and
    `ops.lstm_layer` at each step of its backward pass)."""
    i, f, g, o, tanh_c = saved
    xp = api(c)
    d_cell = xp.add(xp.multiply(xp.multiply(dh, o), 1 - tanh_c * tanh_c), dc)
    parts = (
        d_cell * g * (i * (1 - i)),
        d_cell * c * (f * (1 - f)),
        d_cell * i * (1 - g * g),
        dh * tanh_c * (o * (1 - o)),
    )
    dz = xp.reshape(xp.stack(parts, 1), (c.shape[0], 4 * c.shape[1]))
    return dz, xp.multiply(d_cell, f)


def _tensor_columns(a: Tensor, hidden: int) -> tuple[Tensor, ...]:
    """A (B, 4H) tensor's four column blocks, as graph nodes."""
    return split(reshape(a, (a.shape[0], 4, hidden)), 1).tuple()


def _tensor_join(parts: tuple[Tensor, ...], shape: tuple[int, ...]) -> Tensor:
    """Four (B, H) tensors side by side as one of `shape` (B, 4H)."""
    return reshape(stack(list(parts), 1), shape)


def _gates_case(rng: np.random.Generator):
    batch, hidden = (int(n) for n in rng.integers(1, 4, 2))
    return {}, [(batch, 4 * hidden), (batch, hidden)]


@register(LSTMGates, n_inputs=2, shapes_for=lambda p: [(3, 8), (3, 2)], random_case=_gates_case)
def lstm_gates(z: Tensor, c: Tensor) -> TensorTuple:
    """An LSTM step from gate pre-activations z (B, 4H: i, f, g, o) and cell state c (B, H):
    (h′, c′) with c′ = σ(f)·c + σ(i)·tanh(g), h′ = σ(o)·tanh(c′)."""
    return LSTMGates()(z, c)
