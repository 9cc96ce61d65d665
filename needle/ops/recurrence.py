"""A recurrent layer's whole window as one op: `lstm_layer(z_input, W_hh, h0, c0)` and
`rnn_layer(z_input, W_hh, h0, nonlinearity)`.

z_input (T, B, G·H) is the input part of each step's pre-activations, X_t·W_ih + b_ih +
b_hh for every t (it does not depend on the state); W_hh (H, G·H) the recurrent weight;
then the initial state, h0 (B, H) and for the LSTM c0 (B, H). Step by step,

    z_t = z_input[t] + h_{t−1}·W_hh,   state_t = cell(z_t, state_{t−1})

and the op returns (H, *state_T), H (T, B, H) stacking h_1 … h_T. Written as that
composition of `matmul` and the cell's op (`unrolled`), a window is 2T nodes each way and
its W_hh gradient T products and T − 1 additions; a language model's step runs it for
every layer. Here it is one node forward and one backward:

- `Recurrence` runs the T steps in the array namespace, keeping what each step's cell
  needs for its gradient (`step`) and the states.
- `RecurrenceGrad` is backpropagation through time over them: from the last step back, the
  cell's vector-Jacobian product (`step_vjp`) and dh_{t−1} = dz_t·W_hhᵀ; then the whole
  W_hh gradient as one product, [h_0 … h_{T−1}]ᵀ·[dz_1 … dz_T] over the T·B rows. Every
  other array it returns has the bits of the composition's gradient; W_hh's sums the same
  products in another order.
- `RecurrenceGrad`'s own gradient, needed only for second derivatives, is the
  composition's (`autograd.fused_vjp_gradient`: the vjp of ⟨w, vjp of `unrolled`⟩, built
  of ops that differentiate again).

A cell (`LSTMCellSteps` in needle/ops/lstm.py, `RNNCellSteps` here) gives `gates` (G),
`state_size` and its step three ways: on arrays (`step`), its vjp on arrays (`step_vjp`),
and in ops (`unrolled_step`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from needle.autograd import Tensor, TensorTuple, TensorTupleOp
from needle.backend_ndarray import api
from needle.backward import fused_vjp_gradient
from needle.errors import UsageError, unknown_choice
from needle.ops import strided
from needle.ops.elementwise import relu, tanh
from needle.ops.lstm import LSTMCellSteps
from needle.ops.matmul import matmul
from needle.ops.registry import OpParam, register
from needle.ops.tuples import split, stack

_ROWS = (slice(None), slice(None))


NONLINEARITIES = ("tanh", "relu")  # an Elman cell's activations


class RNNCellSteps:
    """The Elman cell as `Recurrence` runs it: h′ = act(z), act tanh or relu; state (h,)."""

    name, gates, state_size = "rnn_layer", 1, 1

    def __init__(self, nonlinearity: str):
        if nonlinearity not in NONLINEARITIES:
            raise unknown_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        self.nonlinearity = nonlinearity

    def step(self, z: Any, state: tuple[Any, ...]) -> tuple[tuple[Any], Any]:
        xp = api(z)
        h = xp.tanh(z) if self.nonlinearity == "tanh" else xp.maximum(z, 0)
        return (h,), h

    def step_vjp(self, h: Any, state: tuple, d_state: list) -> tuple[Any, tuple]:
        (dh,) = d_state
        if self.nonlinearity == "tanh":  # the arrays `ops.tanh`'s gradient makes
            return dh * (1 - h * h), ()
        return api(dh).multiply(dh, h > 0), ()  # h > 0 exactly where z > 0, as relu's

    def unrolled_step(self, z: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor]:
        return (tanh(z) if self.nonlinearity == "tanh" else relu(z),)


def _check(cell: Any, z_input: tuple, w_hh: tuple, states: list[tuple]) -> None:
    """Refused unless z_input is (T ≥ 1, B, G·H), W_hh (H, G·H) and each state (B, H)."""
    fits = len(z_input) == 3 and len(states) == cell.state_size
    if fits:
        steps, batch, width = z_input
        hidden = states[0][1] if len(states[0]) == 2 else -1
        fits = (
            steps >= 1
            and all(shape == (batch, hidden) for shape in states)
            and width == cell.gates * hidden
            and w_hh == (hidden, width)
        )
    if not fits:
        state = "h0 and c0" if cell.state_size == 2 else "h0"
        gates = f"{cell.gates}H" if cell.gates > 1 else "H"
        shapes = ", ".join(str(s) for s in (z_input, w_hh, *states))
        raise UsageError(
            f"{cell.name}: inputs of shapes {shapes}; expected z_input (T, B, {gates}) with "
            f"T ≥ 1, W_hh (H, {gates}), {state} (B, H)"
        )


class Recurrence(TensorTupleOp):
    """(z_input (T, B, G·H), W_hh (H, G·H), *state0) → (H (T, B, H), *state_T) for `cell`;
    see the module's docstring."""

    def __init__(self, cell: Any):
        self.cell = cell

    def compute(self, z_input: Any, w_hh: Any, *state: Any) -> tuple[Any, ...]:
        _check(self.cell, z_input.shape, w_hh.shape, [s.shape for s in state])
        states, saved = _run(self.cell, z_input, w_hh, state)
        self.keep((z_input, w_hh, *state), (states, saved))  # for the gradient, if taken
        return (api(z_input).stack([s[0] for s in states[1:]], 0), *states[-1])

    def gradient(self, out_grad: TensorTuple, node: TensorTuple):
        grad = RecurrenceGrad(self.cell, self.kept(node))
        return _for_those_needed(node.inputs, grad(*node.inputs, *out_grad.tuple()).tuple())


class RecurrenceGrad(TensorTupleOp):
    """(z_input, W_hh, *state0, dH, *d_state_T) → (dz_input, dW_hh, *d_state0):
    `Recurrence`'s vector-Jacobian product. `saved`: the forward pass's (states, kept
    arrays), else it is run again."""

    def __init__(self, cell: Any, saved: tuple[list, list] | None = None):
        self.cell = cell
        self.saved = saved

    def compute(self, z_input: Any, w_hh: Any, *rest: Any) -> tuple[Any, ...]:
        k = self.cell.state_size
        state0, d_out, d_state = rest[:k], rest[k], list(rest[k + 1 :])
        given, self.saved = self.saved, None  # the forward's arrays stand for one call
        states, saved = given or _run(self.cell, z_input, w_hh, state0)
        xp = api(z_input)
        w_t = xp.transpose(w_hh, (1, 0))
        d_steps = xp.unstack(d_out, 0)
        dz = [None] * len(saved)
        for t in range(len(saved) - 1, -1, -1):
            d_state[0] = xp.add(d_steps[t], d_state[0])
            dz[t], d_rest = self.cell.step_vjp(saved[t], states[t], d_state)
            d_state = [xp.matmul(dz[t], w_t), *d_rest]
        d_input = xp.stack(dz, 0)
        steps, batch, width = d_input.shape
        h_before = xp.reshape(xp.stack([s[0] for s in states[:-1]], 0), (steps * batch, -1))
        d_rows = xp.reshape(d_input, (steps * batch, width))
        return (d_input, xp.matmul(xp.transpose(h_before, (1, 0)), d_rows), *d_state)

    def gradient(self, out_grad: TensorTuple, node: TensorTuple):
        def composition(*primals: Tensor) -> list[Tensor]:
            return unrolled(self.cell, *primals)

        return fused_vjp_gradient(composition, node.inputs, 2 + self.cell.state_size, out_grad)


def _run(cell: Any, z_input: Any, w_hh: Any, state: tuple) -> tuple[list, list]:
    """The T steps on arrays: [state_0, …, state_T], and what each step keeps for its vjp."""
    xp = api(z_input)
    states, saved = [state], []
    for z_step in xp.unstack(z_input, 0):
        z = xp.matmul(state[0], w_hh)
        strided.add_into(z, _ROWS, z_step)  # z_step + h·W_hh, as matmul(addend=) adds it
        state, kept = cell.step(z, state)
        states.append(state)
        saved.append(kept)
    return states, saved


def _for_those_needed(inputs: tuple, grads: Any) -> tuple:
    """Each input's gradient, None for an input that needs none."""
    return tuple(g if x.requires_grad else None for x, g in zip(inputs, grads, strict=True))


def unrolled(cell: Any, z_input: Tensor, w_hh: Tensor, *state: Tensor) -> list[Tensor]:
    """The layer as the composition it fuses: per step a `matmul` with the step's input
    part as its addend, then the cell's op; [H, *state_T]."""
    outputs = []
    for z_step in split(z_input, 0).tuple():
        state = cell.unrolled_step(matmul(state[0], w_hh, addend=z_step), state)
        outputs.append(state[0])
    return [stack(outputs, 0), *state]


def _layer_shapes(steps: int, batch: int, hidden: int, cell: Any) -> list[tuple[int, ...]]:
    width = cell.gates * hidden
    return [(steps, batch, width), (hidden, width)] + [(batch, hidden)] * cell.state_size


def _case(cell: Any):
    def case(rng: np.random.Generator):
        steps, batch, hidden = (int(n) for n in rng.integers(1, 4, 3))
        return {}, _layer_shapes(steps, batch, hidden, cell)

    return case


LSTM_STEPS = LSTMCellSteps()


@register(
    Recurrence,
    n_inputs=4,
    shapes_for=lambda p: _layer_shapes(3, 2, 2, LSTM_STEPS),
    random_case=_case(LSTM_STEPS),
)
def lstm_layer(z_input: Tensor, w_hh: Tensor, h0: Tensor, c0: Tensor) -> TensorTuple:
    """An LSTM layer over a window: (H (T, B, H), h_T, c_T) from each step's input part
    z_input (T, B, 4H: i, f, g, o), the recurrent weight W_hh (H, 4H) and the state h0, c0."""
    return Recurrence(LSTM_STEPS)(z_input, w_hh, h0, c0)


RNN_STEPS = {name: RNNCellSteps(name) for name in NONLINEARITIES}


def _rnn_case(rng: np.random.Generator):
    steps, batch, hidden = (int(n) for n in rng.integers(1, 4, 3))
    nonlinearity = NONLINEARITIES[int(rng.integers(0, len(NONLINEARITIES)))]
    return {"nonlinearity": nonlinearity}, _layer_shapes(steps, batch, hidden, RNN_STEPS["tanh"])


@register(
    Recurrence,
    n_inputs=3,
    params=[
        OpParam(
            "nonlinearity",
            "choice",
            "the activation, tanh or relu",
            default="tanh",
            choices=NONLINEARITIES,
        )
    ],
    shapes_for=lambda p: _layer_shapes(3, 2, 2, RNN_STEPS["tanh"]),
    random_case=_rnn_case,
    settings=[{"nonlinearity": name} for name in NONLINEARITIES],
    nondifferentiable="a pre-activation at 0, with relu (relu'(0) is taken as 0)",
)
def rnn_layer(z_input: Tensor, w_hh: Tensor, h0: Tensor, nonlinearity: str = "tanh") -> TensorTuple:
    """An Elman RNN layer over a window: (H (T, B, H), h_T) from each step's input part
    z_input (T, B, H), the recurrent weight W_hh (H, H) and the state h0, with
    h_t = act(z_input[t] + h_{t−1}·W_hh), act tanh or relu."""
    if nonlinearity not in RNN_STEPS:
        raise unknown_choice("nonlinearity", nonlinearity, NONLINEARITIES)
    return Recurrence(RNN_STEPS[nonlinearity])(z_input, w_hh, h0)
