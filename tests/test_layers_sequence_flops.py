"""`--dry-run` FLOPs of the sequence layers, per sample, forward, a multiply-add as 2: each
count derived from the products of the module the layer builds (its weights' shapes), and
one small case computed by hand per layer."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from needle import nn
from needle.train.build import build_model, plan_model
from needle.train.config import TrainConfig


def config(layers: list) -> TrainConfig:
    return TrainConfig.model_validate({"model": {"layers": layers}})


def planned_and_built(layer: object, sample: tuple[int, ...], vocabulary: int = 5):
    layers = [layer, {"linear": vocabulary}]
    labels = sample[:1]  # a class per position
    rows = plan_model(config(layers), sample, vocabulary, label_shape=labels)
    np.random.seed(0)
    return rows, build_model(config(layers), sample, vocabulary, label_shape=labels).modules[0]


def size(tensor) -> int:
    return 0 if tensor is None else tensor.numpy().size


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["rnn", "lstm"]),
    seq_len=st.integers(1, 4),
    features=st.integers(1, 4),
    hidden=st.integers(1, 4),
    layers=st.integers(1, 3),
    bias=st.booleans(),
)
def test_recurrent_flops_are_each_cells_products_at_every_step(
    kind, seq_len, features, hidden, layers, bias
):
    written = {kind: {"hidden_size": hidden, "num_layers": layers, "bias": bias}}
    rows, module = planned_and_built(written, (seq_len, features))
    cells = module.cell.rnn_cells if kind == "rnn" else module.cell.lstm_cells
    per_step = 0
    for cell in cells:
        # x·W_ih + h·W_hh: a multiply-add per weight; each bias one addition per number
        per_step += 2 * (size(cell.W_ih) + size(cell.W_hh)) + size(cell.bias_ih)
        per_step += size(cell.bias_hh)
        if kind == "lstm":  # σ(f)·c, σ(i)·tanh(g), their sum, σ(o)·tanh(c′)
            per_step += 4 * cell.hidden_size
    assert rows[0].flops == seq_len * per_step


def test_recurrent_flops_by_hand():
    # rnn, 3 features → 2 hidden, 4 steps: 2·(3·2 + 2·2) + 2 + 2 = 24 per step
    rows, _ = planned_and_built({"rnn": 2}, (4, 3))
    assert rows[0].flops == 4 * 24
    # two layers, 3 steps: the second takes 2 features: 24 + (2·(2·2 + 2·2) + 4) = 44 per step
    rows, _ = planned_and_built({"rnn": {"hidden_size": 2, "num_layers": 2}}, (3, 3))
    assert rows[0].flops == 3 * 44
    # lstm, 3 → 2, 4 steps: gates 8 wide: 2·(3·8 + 2·8) + 8 + 8 = 96, gate math 4·2 = 8
    rows, _ = planned_and_built({"lstm": 2}, (4, 3))
    assert rows[0].flops == 4 * 104


def test_an_embedding_counts_no_flops():
    # a lookup reads a row; needle's one-hot product is how it is computed, not what it is
    rows, _ = planned_and_built({"embedding": 4}, (6,))
    assert rows[0].flops == 0


def transformer_flops(stack: nn.Transformer, seq_len: int, causal: bool) -> int:
    """The count from the built module: its Linears' products, its LayerNorms at 4 per
    number, the two attention products and the work on each score, the additions."""
    t, features = seq_len, stack.embedding_size
    total = t * features  # + the positional embedding
    for block in stack.layers.modules:
        attention = block.attention
        heads, dim = attention.num_head, attention.dim_head
        linears = [
            attention.q_projection,
            attention.k_projection,
            attention.v_projection,
            attention.out_projection,
            block.linear1,
            block.linear2,
        ]
        total += sum(t * (2 * size(lin.weight) + size(lin.bias)) for lin in linears)
        total += 4 * 4 * t * features  # prenorm q, k, v and the feed-forward's
        total += heads * 2 * (2 * t * t * dim)  # q·kᵀ and probs·v, per head
        total += heads * t * t * (1 + causal + 3)  # ÷√D, the mask, softmax's shift/sum/divide
        total += 2 * t * features  # the two residual additions
    return total


@settings(max_examples=20, deadline=None)
@given(
    seq_len=st.integers(1, 4),
    features=st.integers(1, 4),
    layers=st.integers(1, 2),
    heads=st.integers(1, 3),
    dim=st.integers(1, 3),
    hidden=st.integers(1, 4),
    causal=st.booleans(),
)
def test_transformer_flops_are_its_modules_products(
    seq_len, features, layers, heads, dim, hidden, causal
):
    written = {
        "transformer": {
            "num_layers": layers,
            "num_head": heads,
            "dim_head": dim,
            "hidden_size": hidden,
            "causal": causal,
        }
    }
    rows, module = planned_and_built(written, (seq_len, features))
    assert rows[0].flops == transformer_flops(module.transformer, seq_len, causal)


def test_transformer_flops_by_hand():
    # T = 2, F = 2, one head of D = 1, feed-forward width 1, causal:
    #   positions 4; prenorms 3·4·4 = 48; q, k, v 3·2·2·2 = 24; q·kᵀ 8 and probs·v 8;
    #   per score (÷√D, mask, softmax 3) 5·4 = 20; out 8; residuals 8; feed-forward norm 16;
    #   linear1 2·(2·2 + 1) = 10; linear2 2·(2·1 + 1)·2 = 12
    written = {"transformer": {"num_head": 1, "dim_head": 1, "hidden_size": 1}}
    rows, _ = planned_and_built(written, (2, 2))
    assert rows[0].flops == 4 + 48 + 24 + 8 + 8 + 20 + 8 + 8 + 16 + 10 + 12


def test_a_linear_on_a_sequence_counts_every_position():
    rows, _ = planned_and_built({"rnn": 3}, (5, 2), vocabulary=7)
    assert rows[1].out_shape == (5, 7) and rows[1].flops == 5 * (2 * 3 + 1) * 7
