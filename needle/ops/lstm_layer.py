"""An LSTM layer over a whole window as one op: `lstm_layer(z_input, W_hh, h0, c0)` →
(H, h_T, c_T), from the input part of each step's gate pre-activations z_input (T, B, 4H):
X_t·W_ih + b_ih + b_hh for every t, which does not depend on the state; the recurrent
weight W_hh (H, 4H); and the initial state h0, c0 (B, H). Step by step,

    z_t = z_input[t] + h_{t−1}·W_hh,   (h_t, c_t) = lstm_gates(z_t, c_{t−1})

and H (T, B, H) stacks h_1 … h_T. Written as that composition of `matmul` and `lstm_gates`
(`unrolled`), a window is 2T nodes each way and its W_hh gradient T products and T − 1
additions; a language model's step runs it for every layer. Here it is one node forward
and one backward:

- `LSTMLayer` runs the T steps in the array namespace, keeping each step's activations
  (as `LSTMGates` does) and states.
- `LSTMLayerGrad` is backpropagation through time over them: from the last step back, the
  gates' vector-Jacobian product (`gates_vjp`) and dh_{t−1} = dz_t·W_hhᵀ; then the whole
  W_hh gradient as one product, [h_0 … h_{T−1}]ᵀ·[dz_1 … dz_T] over the T·B rows.
  Every other array it returns has the bits of the composition's gradient; W_hh's sums the
  same products in another order.
- `LSTMLayerGrad`'s own gradient, needed only for second derivatives, is the composition's:
  the vjp (`autograd.vjp`) of ⟨u, vjp of `unrolled`⟩, built of ops that differentiate again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from needle.autograd import Tensor, TensorTuple, TensorTupleOp, vjp
from needle.backend_ndarray import api
from needle.errors import UsageError
from needle.ops import strided
from needle.ops.lstm import gate_activations, gates_vjp, lstm_gates
from needle.ops.matmul import matmul
from needle.ops.registry import register
from needle.ops.tuples import split, stack

_ROWS = (slice(None), slice(None))


def _check(z_input: tuple, w_hh: tuple, h0: tuple, c0: tuple) -> int:
    """H, once z_input is (T ≥ 1, B, 4H), W_hh (H, 4H) and h0, c0 (B, H); refused otherwise."""
    fits = len(z_input) == 3 and len(h0) == 2 and h0 == c0
    if fits:
        steps, batch, width = z_input
        hidden = h0[1]
        fits = steps >= 1 and h0[0] == batch and width == 4 * hidden and w_hh == (hidden, width)
    if not fits:
        raise UsageError(
            f"lstm_layer: inputs of shapes {z_input}, {w_hh}, {h0}, {c0}; expected z_input "
            "(T, B, 4H) with T ≥ 1, W_hh (H, 4H), h0 and c0 (B, H)"
        )
    return hidden


class LSTMLayer(TensorTupleOp):
    """(z_input (T, B, 4H), W_hh (H, 4H), h0, c0 (B, H)) → (H (T, B, H), h_T, c_T); see the
    module's docstring."""

    def compute(self, z_input: Any, w_hh: Any, h0: Any, c0: Any) -> tuple[Any, Any, Any]:
        hidden = _check(z_input.shape, w_hh.shape, h0.shape, c0.shape)
        xp = api(z_input)
        h, c = h0, c0
        states, activations = [(h0, c0)], []
        for z_step in xp.unstack(z_input, 0):
            z = xp.matmul(h, w_hh)
            strided.add_into(z, _ROWS, z_step)  # z_step + h·W_hh, as matmul(addend=) adds it
            i, f, g, o = gate_activations(z, hidden)
            c = xp.add(xp.multiply(f, c), xp.multiply(i, g))
            tanh_c = xp.tanh(c)
            h = xp.multiply(o, tanh_c)
            activations.append((i, f, g, o, tanh_c))
            states.append((h, c))
        self.saved = (activations, states)  # for the gradient, if one is taken
        return xp.stack([h for h, _ in states[1:]], 0), h, c

    def gradient(self, out_grad: TensorTuple, node: TensorTuple):
        grads = LSTMLayerGrad(getattr(self, "saved", None))(*node.inputs, *out_grad.tuple())
        return _for_those_needed(node.inputs, grads.tuple())


class LSTMLayerGrad(TensorTupleOp):
    """(z_input, W_hh, h0, c0, dH, dh_T, dc_T) → (dz_input, dW_hh, dh0, dc0): `LSTMLayer`'s
    vector-Jacobian product. `saved`: the forward pass's activations and states, else they
    are computed again."""

    def __init__(self, saved: tuple[list, list] | None = None):
        self.saved = saved

    def compute(self, z_input, w_hh, h0, c0, d_out, dh, dc) -> tuple[Any, Any, Any, Any]:
        if self.saved is None:
            forward = LSTMLayer()
            forward.compute(z_input, w_hh, h0, c0)
            self.saved = forward.saved
        activations, states = self.saved
        xp = api(z_input)
        w_t = xp.transpose(w_hh, (1, 0))
        d_steps = xp.unstack(d_out, 0)
        dz = [None] * len(activations)
        for t in range(len(activations) - 1, -1, -1):
            dz[t], dc = gates_vjp(activations[t], states[t][1], xp.add(d_steps[t], dh), dc)
            dh = xp.matmul(dz[t], w_t)
        d_input = xp.stack(dz, 0)
        steps, batch, width = d_input.shape
        h_before = xp.reshape(xp.stack([h for h, _ in states[:-1]], 0), (steps * batch, -1))
        d_rows = xp.reshape(d_input, (steps * batch, width))
        return d_input, xp.matmul(xp.transpose(h_before, (1, 0)), d_rows), dh, dc

    def gradient(self, out_grad: TensorTuple, node: TensorTuple):
        # Inputs that need no gradient become leaves that do, so that the composition's
        # vjp has a gradient in each to take ⟨u, ·⟩ of (a constant h0 still shapes the rest).
        xs = [
            x if x.requires_grad else Tensor.make_const(x.cached_data, requires_grad=True)
            for x in node.inputs[:4]
        ]
        cotangents = list(node.inputs[4:])
        firsts = vjp(unrolled(*xs), cotangents, xs)
        total = None
        for first, u in zip(firsts, out_grad.tuple(), strict=True):
            if first is not None:
                term = (first * u).sum()
                total = term if total is None else total + term
        if total is None:
            return (None,) * len(node.inputs)
        ones = Tensor.make_const(api(total.cached_data).ones_like(total.cached_data))
        grads = vjp([total], [ones], xs + cotangents)
        return _for_those_needed(node.inputs, grads)


def _for_those_needed(inputs: tuple, grads: Any) -> tuple:
    """Each input's gradient, None for an input that needs none."""
    return tuple(g if x.requires_grad else None for x, g in zip(inputs, grads, strict=True))


def unrolled(z_input: Tensor, w_hh: Tensor, h0: Tensor, c0: Tensor) -> list[Tensor]:
    """`lstm_layer` as the composition it fuses: per step a `matmul` with the step's input
    part as its addend and `lstm_gates`; [H, h_T, c_T]."""
    h, c, outputs = h0, c0, []
    for z_step in split(z_input, 0).tuple():
        h, c = lstm_gates(matmul(h, w_hh, addend=z_step), c).tuple()
        outputs.append(h)
    return [stack(outputs, 0), h, c]


def _layer_shapes(steps: int, batch: int, hidden: int) -> list[tuple[int, ...]]:
    return [(steps, batch, 4 * hidden), (hidden, 4 * hidden), (batch, hidden), (batch, hidden)]


def _layer_case(rng: np.random.Generator):
    steps, batch, hidden = (int(n) for n in rng.integers(1, 4, 3))
    return {}, _layer_shapes(steps, batch, hidden)


@register(
    LSTMLayer, n_inputs=4, shapes_for=lambda p: _layer_shapes(3, 2, 2), random_case=_layer_case
)
def lstm_layer(z_input: Tensor, w_hh: Tensor, h0: Tensor, c0: Tensor) -> TensorTuple:
    """An LSTM layer over a window: (H (T, B, H), h_T, c_T) from each step's input part
    z_input (T, B, 4H: i, f, g, o), the recurrent weight W_hh (H, 4H) and the state h0, c0."""
    return LSTMLayer()(z_input, w_hh, h0, c0)
