"""Layers for sequences: `Embedding` of tokens, and the recurrent `RNNCell`, `RNN`,
`LSTMCell` and `LSTM`.

Sequences are time-major, as the course has them: token ids (T, B) held as integer-valued
floats (`needle.data.get_batch`), features (T, B, n), hidden states (num_layers, B, H).
A recurrent layer computes each layer's input part X·W_ih + b_ih + b_hh for the whole
window in one product (`input_part`) and hands it, with W_hh and the state, to
`ops.rnn_layer` or `ops.lstm_layer`: the recurrence h_t = cell(input part_t + h_{t−1}·W_hh)
over the window as one op, the same numbers as the cell run step by step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from needle import init, ops
from needle.autograd import Device, Tensor
from needle.errors import UsageError, unknown_choice
from needle.init import Dtype
from needle.nn.basic import Module, Parameter

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"tanh": ops.tanh, "relu": ops.relu}


class Embedding(Module):
    """A lookup table: token id i ↦ row i of `weight` (num_embeddings, embedding_dim).

    `weight` ~ N(0, 1), one `randn` draw (the course's order). The lookup reads the rows
    (`ops.gather_rows`); its gradient adds each out_grad row into its token's row, so the
    rows of repeated tokens add up. (The course writes it as one_hot(x) @ weight: the same
    numbers, through a (T·B, num_embeddings) product.)
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        device: Device | None = None,
        dtype: Dtype = "float32",
    ) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.weight = Parameter(
            init.randn(num_embeddings, embedding_dim, device=device, dtype=dtype)
        )

    def forward(self, x: Tensor) -> Tensor:
        """(T, B) ids → (T, B, embedding_dim)."""
        ids = init.class_indices(x, self.num_embeddings, op="Embedding", name="token id")
        rows = ops.gather_rows(self.weight, ids.reshape(-1))
        return ops.reshape(rows, (*ids.shape, self.embedding_dim))


def _uniform(*shape: int, hidden_size: int, device: Device | None, dtype: Dtype) -> Parameter:
    """One `rand` draw, U(−1/√hidden_size, 1/√hidden_size), as the course's cells draw."""
    bound = 1 / math.sqrt(hidden_size)
    return Parameter(init.rand(*shape, low=-bound, high=bound, device=device, dtype=dtype))


class _Cell(Module):
    """The parameters a recurrent cell shares, each drawn as `_uniform` in the course's order:
    `W_ih` (input_size, gates·H), `W_hh` (H, gates·H), then `bias_ih`, `bias_hh` (gates·H,)
    unless bias=False (then None)."""

    def __init__(
        self, input_size: int, hidden_size: int, gates: int, bias: bool, device, dtype
    ) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        width = gates * hidden_size

        def draw(*shape: int) -> Parameter:
            return _uniform(*shape, hidden_size=hidden_size, device=device, dtype=dtype)

        self.W_ih = draw(input_size, width)
        self.W_hh = draw(hidden_size, width)
        self.bias_ih = draw(width) if bias else None
        self.bias_hh = draw(width) if bias else None

    def _affine(self, X: Tensor, h: Tensor | None) -> Tensor:
        """X·W_ih + b_ih + h·W_hh + b_hh, (B, gates·H): one product per input for all gates.
        h=None is a zero state, so its product is left out. The attributes are read here, on
        each call: course code may replace them with plain Tensors."""
        if X.ndim != 2 or X.shape[1] != self.W_ih.shape[0]:
            raise UsageError(
                f"{type(self).__name__}: input of shape {X.shape}; expected (batch, "
                f"{self.W_ih.shape[0]})"
            )
        out = ops.matmul(X, self.W_ih)
        if h is not None:
            out = ops.matmul(h, self.W_hh, addend=out)
        if self.bias_ih is not None:
            out = out + self.bias_ih
        if self.bias_hh is not None:
            out = out + self.bias_hh
        return out

    def input_part(self, X: Tensor) -> Tensor:
        """X·W_ih + b_ih + b_hh for a whole sequence X (T, B, input_size) in one product:
        (T, B, gates·H), the part of the cell's affine map that does not depend on h. `RNN`
        and `LSTM` compute it once per layer and window rather than once per step."""
        steps, batch, n = X.shape
        out = ops.matmul(ops.reshape(X, (steps * batch, n)), self.W_ih)
        biases = [b for b in (self.bias_ih, self.bias_hh) if b is not None]
        if biases:  # added to each other first: one (T·B, gates·H) addition, one column sum
            out = out + (biases[0] + biases[1] if len(biases) == 2 else biases[0])
        return ops.reshape(out, (steps, batch, out.shape[1]))


class RNNCell(_Cell):
    """h′ = act(X·W_ih + b_ih + h·W_hh + b_hh), act tanh or relu; X (B, input_size), h (B, H)
    (None: zeros). Parameters as `_Cell` with one gate."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: Device | None = None,
        dtype: Dtype = "float32",
    ) -> None:
        if nonlinearity not in ACTIVATIONS:
            raise unknown_choice("nonlinearity", nonlinearity, ACTIVATIONS)
        super().__init__(input_size, hidden_size, 1, bias, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, X: Tensor, h: Tensor | None = None) -> Tensor:
        return ACTIVATIONS[self.nonlinearity](self._affine(X, h))


class LSTMCell(_Cell):
    """One LSTM step. With z = X·W_ih + b_ih + h·W_hh + b_hh cut into four H-wide gates
    i, f, g, o (PyTorch's column order):

        c′ = σ(f)·c + σ(i)·tanh(g),   h′ = σ(o)·tanh(c′)

    `forward(X, h=None | (h0, c0))` → (h′, c′); None means zero h and c. Parameters as `_Cell`
    with four gates. The gates are one op, `ops.lstm_gates`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: Device | None = None,
        dtype: Dtype = "float32",
    ) -> None:
        super().__init__(input_size, hidden_size, 4, bias, device, dtype)

    def forward(self, X: Tensor, h: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        h0, c0 = (None, None) if h is None else h
        return self._gates(self._affine(X, h0), c0)

    def _gates(self, z: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        if c is None:  # σ(f)·0 + σ(i)·tanh(g) is σ(i)·tanh(g) exactly
            c = _zero_state(z, self.hidden_size)
        return ops.lstm_gates(z, c).tuple()


def _zero_state(z: Tensor, hidden: int) -> Tensor:
    """Zeros (B, hidden) for pre-activations z (…, B, ·), of z's device and dtype: a state
    that was not given."""
    return init.zeros(z.shape[-2], hidden, device=z.device, dtype=z.dtype)


def _check_sequence(X: Tensor, input_size: int, layer: str) -> None:
    if X.ndim != 3 or X.shape[2] != input_size:
        raise UsageError(f"{layer}: input of shape {X.shape}; expected (T, batch, {input_size})")


def _layer_states(h: Tensor | None, num_layers: int, layer: str) -> list[Tensor | None]:
    """A (num_layers, B, H) state as one (B, H) state per layer; None as None for each."""
    if h is None:
        return [None] * num_layers
    if h.ndim != 3 or h.shape[0] != num_layers:
        raise UsageError(
            f"{layer}: initial state of shape {h.shape}; expected ({num_layers}, batch, hidden)"
        )
    return list(ops.split(h, 0).tuple())


class RNN(Module):
    """`num_layers` RNNCells (`rnn_cells`, layer 0 taking input_size, the others hidden_size),
    each layer running over the whole sequence its input is the output of the layer below.

    `forward(X (T, B, input_size), h0=None (num_layers, B, H))` → (the last layer's h_t for
    every t (T, B, H), every layer's final h (num_layers, B, H)).

    Each layer's window is one op, `ops.rnn_layer`, on the layer's `input_part`: the same
    numbers as its cell run step by step, in one node forward and one backward.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: Device | None = None,
        dtype: Dtype = "float32",
    ) -> None:
        super().__init__()
        self.rnn_cells = [
            RNNCell(n, hidden_size, bias, nonlinearity, device=device, dtype=dtype)
            for n in [input_size] + [hidden_size] * (num_layers - 1)
        ]

    def forward(self, X: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_sequence(X, self.rnn_cells[0].input_size, "RNN")
        finals = []
        starts = _layer_states(h0, len(self.rnn_cells), "RNN")
        for cell, h in zip(self.rnn_cells, starts, strict=True):
            z_input = cell.input_part(X)
            if h is None:
                h = _zero_state(z_input, cell.hidden_size)
            X, h = ops.rnn_layer(z_input, cell.W_hh, h, cell.nonlinearity).tuple()
            finals.append(h)
        return X, ops.stack(finals, 0)


class LSTM(Module):
    """`num_layers` LSTMCells (`lstm_cells`), stacked as `RNN` stacks its cells.

    `forward(X (T, B, input_size), h=None | (h0, c0), each (num_layers, B, H))` → (the last
    layer's h_t for every t (T, B, H), (h_n, c_n) each (num_layers, B, H)).

    Each layer's window is one op, `ops.lstm_layer`, on the layer's `input_part`: the same
    numbers as its cell run step by step, in one node forward and one backward.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        device: Device | None = None,
        dtype: Dtype = "float32",
    ) -> None:
        super().__init__()
        self.lstm_cells = [
            LSTMCell(n, hidden_size, bias, device=device, dtype=dtype)
            for n in [input_size] + [hidden_size] * (num_layers - 1)
        ]

    def forward(
        self, X: Tensor, h: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        _check_sequence(X, self.lstm_cells[0].input_size, "LSTM")
        layers = len(self.lstm_cells)
        h0, c0 = (None, None) if h is None else h
        starts = zip(
            _layer_states(h0, layers, "LSTM"), _layer_states(c0, layers, "LSTM"), strict=True
        )
        final_h, final_c = [], []
        for cell, (h_t, c_t) in zip(self.lstm_cells, starts, strict=True):
            z_input = cell.input_part(X)
            if h_t is None:
                h_t = c_t = _zero_state(z_input, cell.hidden_size)
            X, h_t, c_t = ops.lstm_layer(z_input, cell.W_hh, h_t, c_t).tuple()
            final_h.append(h_t)
            final_c.append(c_t)
        return X, (ops.stack(final_h, 0), ops.stack(final_c, 0))
