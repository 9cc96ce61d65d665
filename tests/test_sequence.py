"""Recurrent layers and the language model: forward passes against numpy written out gate by
gate, parameter gradients against float64 central differences, the weight draw order, and a
tiny language model that learns a repeating sequence."""

from __future__ import annotations

import math

import numpy as np
import pytest

import needle as ndl
from needle import nn
from needle.errors import UsageError
from needle.gradcheck import check_module
from needle.models import LanguageModel


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


ACT = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0)}


def _weights(cell):
    """A cell's parameters as float64 arrays; a missing bias as zeros."""
    width = cell.W_ih.shape[1]
    bias = [np.zeros(width) if b is None else b.numpy() for b in (cell.bias_ih, cell.bias_hh)]
    return cell.W_ih.numpy(), cell.W_hh.numpy(), *bias


def numpy_rnn(X, h0, cells, nonlinearity):
    act, out, finals = ACT[nonlinearity], X, []
    for layer, cell in enumerate(cells):
        w_ih, w_hh, b_ih, b_hh = _weights(cell)
        h = np.zeros((X.shape[1], w_hh.shape[0])) if h0 is None else h0[layer]
        steps = []
        for x in out:
            h = act(x @ w_ih + b_ih + h @ w_hh + b_hh)
            steps.append(h)
        out = np.stack(steps)
        finals.append(h)
    return out, np.stack(finals)


def numpy_lstm(X, state, cells):
    out, final_h, final_c = X, [], []
    for layer, cell in enumerate(cells):
        w_ih, w_hh, b_ih, b_hh = _weights(cell)
        n = w_hh.shape[0]
        if state is None:
            h, c = np.zeros((X.shape[1], n)), np.zeros((X.shape[1], n))
        else:
            h, c = state[0][layer], state[1][layer]
        steps = []
        for x in out:
            z = x @ w_ih + b_ih + h @ w_hh + b_hh
            i = _sigmoid(z[:, 0:n])
            f = _sigmoid(z[:, n : 2 * n])
            g = np.tanh(z[:, 2 * n : 3 * n])
            o = _sigmoid(z[:, 3 * n : 4 * n])
            c = f * c + i * g
            h = o * np.tanh(c)
            steps.append(h)
        out = np.stack(steps)
        final_h.append(h)
        final_c.append(c)
    return out, (np.stack(final_h), np.stack(final_c))


def _tensor(a, device=None):
    return ndl.Tensor(a, device=device, requires_grad=False)


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("given_h0", [False, True])
@pytest.mark.parametrize("bias, nonlinearity", [(True, "tanh"), (False, "relu"), (True, "relu")])
def test_rnn_matches_numpy(num_layers, given_h0, bias, nonlinearity, device):
    rng = np.random.default_rng(num_layers * 10 + given_h0)
    T, B, n_in, H = 4, 3, 2, 5
    np.random.seed(0)
    rnn = nn.RNN(
        n_in, H, num_layers, bias=bias, nonlinearity=nonlinearity, dtype="float64", device=device
    )
    X = rng.standard_normal((T, B, n_in))
    h0 = rng.standard_normal((num_layers, B, H)) if given_h0 else None
    out, h_n = rnn(_tensor(X, device), None if h0 is None else _tensor(h0, device))
    want_out, want_h = numpy_rnn(X, h0, rnn.rnn_cells, nonlinearity)
    assert out.shape == (T, B, H) and h_n.shape == (num_layers, B, H)
    np.testing.assert_allclose(out.numpy(), want_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n.numpy(), want_h, rtol=1e-12, atol=1e-12)
    # One cell step on its own.
    step = rnn.rnn_cells[0](_tensor(X[0], device))
    np.testing.assert_allclose(
        step.numpy(), numpy_rnn(X[:1], None, rnn.rnn_cells[:1], nonlinearity)[0][0]
    )


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("given_state", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_matches_numpy(num_layers, given_state, bias, device):
    rng = np.random.default_rng(num_layers * 10 + given_state)
    T, B, n_in, H = 4, 3, 2, 5
    np.random.seed(1)
    lstm = nn.LSTM(n_in, H, num_layers, bias=bias, dtype="float64", device=device)
    X = rng.standard_normal((T, B, n_in))
    state = None
    if given_state:
        state = tuple(rng.standard_normal((num_layers, B, H)) for _ in range(2))
    given = None if state is None else (_tensor(state[0], device), _tensor(state[1], device))
    out, (h_n, c_n) = lstm(_tensor(X, device), given)
    want_out, (want_h, want_c) = numpy_lstm(X, state, lstm.lstm_cells)
    assert out.shape == (T, B, H) and h_n.shape == c_n.shape == (num_layers, B, H)
    for got, want in [(out, want_out), (h_n, want_h), (c_n, want_c)]:
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    h1, c1 = lstm.lstm_cells[0](_tensor(X[0], device))
    want_step = numpy_lstm(X[:1], None, lstm.lstm_cells[:1])[1]
    np.testing.assert_allclose(h1.numpy(), want_step[0][0])
    np.testing.assert_allclose(c1.numpy(), want_step[1][0])


def test_cells_read_their_weights_at_call_time():
    """Course code swaps W_ih and friends for plain Tensors; forward must use the new ones."""
    cell = nn.RNNCell(2, 3, dtype="float64")
    rng = np.random.default_rng(0)
    cell.W_ih = _tensor(rng.standard_normal((2, 3)))
    cell.bias_hh = _tensor(rng.standard_normal(3))
    X = rng.standard_normal((4, 2))
    w_ih, w_hh, b_ih, b_hh = _weights(cell)
    np.testing.assert_allclose(
        cell(_tensor(X)).numpy(), np.tanh(X @ w_ih + b_ih + b_hh), rtol=1e-12
    )


def _count_nodes(out, op_class):
    """The nodes of `op_class` in the graph that computes `out`, each node once."""
    seen, todo, count = set(), [out], 0
    while todo:
        node = todo.pop()
        if id(node) not in seen:
            seen.add(id(node))
            count += isinstance(node.op, op_class)
            todo.extend(node.inputs)
    return count


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
@pytest.mark.parametrize("given_state", [False, True])
def test_each_layer_multiplies_its_input_once_per_window(kind, given_state):
    # X·W_ih for all T steps in one product per layer; the recurrence, its h·W_hh products
    # included, one node per layer.
    T, B, n_in, H, L = 5, 2, 3, 4, 2
    rng = np.random.default_rng(0)
    X = ndl.Tensor(rng.standard_normal((T, B, n_in)))
    h = ndl.Tensor(rng.standard_normal((L, B, H))) if given_state else None
    if kind == "rnn":
        out, _ = nn.RNN(n_in, H, L)(X, h)
    else:
        out, _ = nn.LSTM(n_in, H, L)(X, None if h is None else (h, h))
    assert _count_nodes(out, ndl.ops.MatMul) == L
    assert _count_nodes(out, ndl.ops.Recurrence) == L


class _Readout(nn.Module):
    """A recurrent layer with its initial state as parameters, its outputs as (T·B, H) logits."""

    def __init__(self, layer, state_shape, lstm, device=None):
        super().__init__()
        rng = np.random.default_rng(2)
        self.layer, self.lstm = layer, lstm
        self.h0 = nn.Parameter(rng.standard_normal(state_shape), device=device)
        c0 = rng.standard_normal(state_shape)
        self.c0 = nn.Parameter(c0, device=device) if lstm else None

    def forward(self, X):
        out, _ = self.layer(X, (self.h0, self.c0) if self.lstm else self.h0)
        return out.reshape((out.shape[0] * out.shape[1], out.shape[2]))


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_parameter_gradients_match_central_differences(kind, device):
    T, B, n_in, H, L = 3, 2, 2, 3, 2
    np.random.seed(3)
    if kind == "rnn":
        model = _Readout(
            nn.RNN(n_in, H, L, dtype="float64", device=device), (L, B, H), False, device
        )
    else:
        model = _Readout(
            nn.LSTM(n_in, H, L, dtype="float64", device=device), (L, B, H), True, device
        )
    rng = np.random.default_rng(4)
    X = rng.standard_normal((T, B, n_in))
    y = rng.integers(0, H, T * B)
    report = check_module(model, X, y, seed=5)
    assert report.passed, report.inputs
    assert all(p.device == device for p in model.parameters())
    assert len(report.inputs) == len(model.parameters())


def _uniform_draw(shape, hidden):
    bound = 1 / math.sqrt(hidden)
    return np.random.rand(*shape) * (2 * bound) - bound


def _expected_cells(n_in, hidden, num_layers, gates, bias):
    """Each cell's draws as the course makes them: W_ih, W_hh, then bias_ih, bias_hh."""
    cells = []
    for layer in range(num_layers):
        fan = n_in if layer == 0 else hidden
        shapes = [(fan, gates * hidden), (hidden, gates * hidden)]
        shapes += [(gates * hidden,)] * (2 if bias else 0)
        cells.append([_uniform_draw(s, hidden) for s in shapes])
    return cells


def _cell_arrays(cell):
    return [p.numpy() for p in (cell.W_ih, cell.W_hh, cell.bias_ih, cell.bias_hh) if p is not None]


@pytest.mark.parametrize("kind, gates", [("rnn", 1), ("lstm", 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_draw_order(kind, gates, bias):
    n_in, hidden, layers = 3, 4, 2
    np.random.seed(11)
    if kind == "rnn":
        cells = nn.RNN(n_in, hidden, layers, bias=bias).rnn_cells
    else:
        cells = nn.LSTM(n_in, hidden, layers, bias=bias).lstm_cells
    after = np.random.rand()
    np.random.seed(11)
    expected = _expected_cells(n_in, hidden, layers, gates, bias)
    assert np.random.rand() == after  # nothing else was drawn
    for cell, want in zip(cells, expected, strict=True):
        got = _cell_arrays(cell)
        assert [a.dtype for a in got] == [np.float32] * len(want)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("kind, gates", [("rnn", 1), ("lstm", 4)])
def test_language_model_draw_order_and_shapes(kind, gates):
    emb, vocab, hidden, layers = 3, 7, 4, 2
    np.random.seed(5)
    model = LanguageModel(emb, vocab, hidden, layers, seq_model=kind)
    after = np.random.rand()
    np.random.seed(5)
    embedding = np.random.randn(vocab, emb)
    cells = _expected_cells(emb, hidden, layers, gates, bias=True)
    # Linear: kaiming_uniform(hidden, vocab), then the bias as kaiming_uniform(vocab, 1).
    weight_bound, bias_bound = math.sqrt(6 / hidden), math.sqrt(6 / vocab)
    weight = np.random.rand(hidden, vocab) * (2 * weight_bound) - weight_bound
    bias = np.random.rand(vocab, 1) * (2 * bias_bound) - bias_bound
    assert np.random.rand() == after
    np.testing.assert_allclose(model.embedding.weight.numpy(), embedding, rtol=1e-6)
    recurrent = model.seq_model.rnn_cells if kind == "rnn" else model.seq_model.lstm_cells
    for cell, want in zip(recurrent, cells, strict=True):
        for a, b in zip(_cell_arrays(cell), want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(model.linear.weight.numpy(), weight, rtol=1e-6)
    np.testing.assert_allclose(model.linear.bias.numpy(), bias.reshape(1, vocab), rtol=1e-6)

    T, B = 5, 2
    x = _tensor(np.random.default_rng(0).integers(0, vocab, (T, B)).astype(np.float32))
    logits, h = model(x)
    assert logits.shape == (T * B, vocab)
    states = [h] if kind == "rnn" else list(h)
    assert [s.shape for s in states] == [(layers, B, hidden)] * len(states)
    # Logits are the Linear of the sequence model's output, row t·B + b for step t, batch b.
    out, _ = model.seq_model(model.embedding(x))
    np.testing.assert_allclose(
        logits.numpy(), model.linear(out).numpy().reshape(T * B, vocab), rtol=1e-6
    )


def test_lstm_language_model_learns_a_repeating_sequence():
    vocab, T, B = 5, 6, 4
    np.random.seed(0)
    model = LanguageModel(8, vocab, 16, seq_model="lstm")
    stream = np.arange(T + 1 + B) % vocab
    # Column b starts b tokens into the stream; the target is always the next token.
    ids = np.stack([stream[b : b + T + 1] for b in range(B)], axis=1).astype(np.float32)
    x, y = _tensor(ids[:-1]), _tensor(ids[1:].reshape(-1))
    optimizer = ndl.optim.Adam(model.parameters(), lr=0.05)
    loss_fn = nn.SoftmaxLoss()
    losses = []
    for _ in range(30):
        logits, _ = model(x)
        loss = loss_fn(logits, y)
        optimizer.reset_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.numpy()))
    assert losses[0] > 1.0  # about log(5) ≈ 1.6 before training
    assert losses[-1] < 0.1 * losses[0], losses


def test_transformer_language_model_needs_nn_transformer(monkeypatch):
    monkeypatch.delattr(nn, "Transformer", raising=False)
    with pytest.raises(UsageError, match="nn.Transformer"):
        LanguageModel(4, 5, 6, seq_model="transformer")


def test_transformer_language_model_is_wired_as_the_spec_says(monkeypatch):
    made = {}

    class FakeTransformer(nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()
            made.update(args=args, kwargs=kwargs)

        def forward(self, x, h=None):
            return x, ndl.init.zeros_like(x)

    monkeypatch.setattr(nn, "Transformer", FakeTransformer, raising=False)
    model = LanguageModel(4, 5, 6, num_layers=2, seq_model="transformer", seq_len=9)
    assert made["args"] == (4, 6, 2) and made["kwargs"]["sequence_len"] == 9
    assert model.linear.weight.shape == (4, 5)  # the Linear takes embedding_size features
    logits, _ = model(_tensor(np.zeros((3, 2), dtype=np.float32)))
    assert logits.shape == (6, 5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: nn.RNNCell(2, 3, nonlinearity="sigmoid"), "unknown nonlinearity 'sigmoid'"),
        (lambda: LanguageModel(2, 3, 4, seq_model="lstn"), "did you mean 'lstm'"),
        (lambda: nn.RNN(2, 3)(_tensor(np.ones((4, 2, 5)))), r"expected \(T, batch, 2\)"),
        (lambda: nn.LSTM(2, 3)(_tensor(np.ones((4, 2)))), r"expected \(T, batch, 2\)"),
        (
            lambda: nn.RNN(2, 3, 2)(_tensor(np.ones((4, 1, 2))), _tensor(np.ones((1, 1, 3)))),
            r"expected \(2, batch, hidden\)",
        ),
        (lambda: nn.LSTMCell(2, 3)(_tensor(np.ones((4, 3)))), r"expected \(batch, 2\)"),
        (lambda: LanguageModel(2, 3, 4)(_tensor(np.ones(4))), r"expected \(T, batch\)"),
    ],
)
def test_mistakes_are_usage_errors(call, message):
    with pytest.raises(UsageError, match=message):
        call()
