"""The sequence layers (embedding, rnn, lstm, transformer): each shape rule and parameter
count against the module it builds, mismatches naming both shapes, and the weights a config
draws against needle's own modules under the same seed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle import models, nn
from needle.errors import UsageError
from needle.train.build import build_model, plan_model
from needle.train.config import TrainConfig
from needle.train.language import LanguageModel, Window
from needle.train.layers import LAYER_TYPES
from needle.train.layers import sequence as family

SEQUENCE = [name for name, cls in LAYER_TYPES.items() if cls.__module__ == family.__name__]


def config(layers: list) -> TrainConfig:
    return TrainConfig.model_validate({"model": {"layers": layers}})


def refusal(caught: pytest.ExceptionInfo) -> str:
    return str(caught.value).split(": ", 1)[1]


def test_the_family_is_the_four_sequence_layers():
    assert SEQUENCE == ["embedding", "rnn", "lstm", "transformer"]


def written(name: str, hidden: int, layers: int, last: bool) -> object:
    output = "last" if last else "sequence"
    return {
        "embedding": {"embedding": hidden},
        "rnn": {"rnn": {"hidden_size": hidden, "num_layers": layers, "output": output}},
        "lstm": {"lstm": {"hidden_size": hidden, "num_layers": layers, "output": output}},
        "transformer": {
            "transformer": {"num_layers": layers, "num_head": 2, "dim_head": 3, "hidden_size": 5}
        },
    }[name]


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(SEQUENCE),
    seq_len=st.integers(1, 4),
    features=st.integers(1, 4),
    hidden=st.integers(1, 4),
    layers=st.integers(1, 2),
    last=st.booleans(),
    batch=st.integers(1, 3),
)
def test_shape_rule_and_parameter_count_are_the_built_modules(
    name, seq_len, features, hidden, layers, last, batch
):
    """Planned on (seq_len, features) (token ids (seq_len,) for an embedding, whose
    vocabulary is the data's classes), each layer's module puts out (batch, *out_shape) and
    holds `params` numbers."""
    vocabulary = features + 1
    sample = (seq_len,) if name == "embedding" else (seq_len, features)
    layer = written(name, hidden, layers, last)
    rows = plan_model(config([layer, "flatten", {"linear": vocabulary}]), sample, vocabulary)
    np.random.seed(0)
    model = build_model(config([layer, "flatten", {"linear": vocabulary}]), sample, vocabulary)
    if name == "embedding":
        x = np.random.randint(0, vocabulary, (batch, *sample)).astype(np.float32)
    else:
        x = np.random.randn(batch, *sample).astype(np.float32)
    module = model.modules[0]
    assert module(ndl.Tensor(x)).shape == (batch, *rows[0].out_shape)
    assert rows[0].params == sum(p.numpy().size for p in module.parameters())


@pytest.mark.parametrize("name", ["rnn", "lstm", "transformer"])
def test_a_sequence_layer_after_an_image_names_both_shapes(name):
    with pytest.raises(UsageError) as caught:
        plan_model(config([name if name == "transformer" else {name: 8}]), (1, 28, 28), 10)
    assert refusal(caught) == (
        f"model.layers[0].{name}: {name} takes (batch, seq_len, features) but is given "
        "(batch, 1, 28, 28); it reads a sequence, not an image"
    )


def test_an_lstm_on_token_ids_asks_for_an_embedding():
    with pytest.raises(UsageError) as caught:
        plan_model(config([{"lstm": 8}, {"linear": 5}]), (32,), 5, label_shape=(32,))
    assert refusal(caught) == (
        "model.layers[0].lstm: lstm takes (batch, seq_len, features) but is given (batch, 32); "
        "an embedding before it makes (batch, 32, dim)"
    )


def test_an_embedding_takes_token_ids_only():
    with pytest.raises(UsageError) as caught:
        plan_model(config([{"embedding": 4}, {"embedding": 4}]), (8,), 5, label_shape=(8,))
    assert refusal(caught) == (
        "model.layers[1].embedding: embedding takes (batch, seq_len) token ids but is given "
        "(batch, 8, 4); it must come first, on text data"
    )


def test_a_language_model_must_end_with_the_vocabulary_at_every_position():
    with pytest.raises(UsageError) as caught:
        plan_model(config([{"embedding": 4}, {"linear": 6}]), (8,), 5, label_shape=(8,))
    assert refusal(caught) == (
        "model.layers[1].linear.out_features: the model puts out (batch, 8, 6) but the data's "
        "vocabulary is 5 tokens, a next token at each of 8 positions; the last layer must put "
        "out (batch, 8, 5)"
    )


@pytest.mark.parametrize("seq_model", ["rnn", "lstm", "transformer"])
def test_a_config_draws_the_course_language_model_and_computes_the_same(seq_model):
    """embedding → seq_model → linear, seeded alike, holds needle.models.LanguageModel's
    weights in the same order, and gives its logits (time-major there, batch-major here)."""
    vocabulary, steps, batch = 7, 5, 3
    seq = {"rnn": {"rnn": 6}, "lstm": {"lstm": {"hidden_size": 6, "num_layers": 2}}}.get(
        seq_model,
        {"transformer": {"num_layers": 2, "num_head": 8, "dim_head": 32, "hidden_size": 6}},
    )
    layers = 2 if seq_model == "lstm" else (2 if seq_model == "transformer" else 1)
    np.random.seed(4)
    ours = LanguageModel(
        build_model(
            config([{"embedding": 4}, seq, {"linear": vocabulary}]),
            (steps,),
            vocabulary,
            label_shape=(steps,),
        )
    )
    np.random.seed(4)
    course = models.LanguageModel(4, vocabulary, 6, layers, seq_model, seq_len=steps)
    mine = [p.numpy() for p in ours.parameters()]
    theirs = [p.numpy() for p in course.parameters()]
    assert [a.shape for a in mine] == [b.shape for b in theirs]
    for a, b in zip(mine, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
    ids = np.random.randint(0, vocabulary, (batch, steps)).astype(np.float32)
    got = ours(Window(ndl.Tensor(ids), first=True)).numpy()
    expected, _ = course(ndl.Tensor(ids.T))  # (T·B, V), row t·B + b
    expected = expected.numpy().reshape(steps, batch, vocabulary).transpose(1, 0, 2)
    np.testing.assert_allclose(
        got, expected.reshape(batch * steps, vocabulary), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_output_last_is_the_last_step_of_the_sequence(kind):
    x = ndl.Tensor(np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32))
    np.random.seed(0)
    every = build_model(config([{kind: 5}, "flatten", {"linear": 2}]), (4, 3), 2).modules[0]
    np.random.seed(0)
    last = build_model(
        config([{kind: {"hidden_size": 5, "output": "last"}}, {"linear": 2}]), (4, 3), 2
    ).modules[0]
    np.testing.assert_array_equal(last(x).numpy(), every(x).numpy()[:, -1])


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_carried_state_continues_the_sequence_and_resets_at_a_pass_start(kind):
    """Two windows in a row give what one pass over both gives; a first window starts
    from zeros again."""
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 6, (2, 8)).astype(np.float32)
    np.random.seed(2)
    layers = [{"embedding": 3}, {kind: {"hidden_size": 4, "num_layers": 2}}, {"linear": 6}]
    long = LanguageModel(build_model(config(layers), (8,), 6, label_shape=(8,)))
    whole = long(Window(ndl.Tensor(ids), first=True)).numpy().reshape(2, 8, 6)
    first = long(Window(ndl.Tensor(ids[:, :4]), first=True)).numpy().reshape(2, 4, 6)
    second = long(Window(ndl.Tensor(ids[:, 4:]), first=False)).numpy().reshape(2, 4, 6)
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, rtol=1e-5, atol=1e-6)
    again = long(Window(ndl.Tensor(ids[:, :4]), first=True)).numpy().reshape(2, 4, 6)
    np.testing.assert_array_equal(again, first)
    state = long.carried_state()
    assert sorted(state) == (["0/0", "0/1"] if kind == "lstm" else ["0/0"])
    assert state["0/0"].shape == (2, 2, 4)  # (num_layers, batch, hidden)


def test_a_carried_state_is_not_part_of_the_parameters_or_the_state_dict():
    np.random.seed(0)
    model = LanguageModel(
        build_model(
            config([{"embedding": 3}, {"lstm": 4}, {"linear": 5}]), (4,), 5, label_shape=(4,)
        )
    )
    names = set(model.state_dict())
    model(Window(ndl.Tensor(np.zeros((2, 4), np.float32)), first=True))
    assert set(model.state_dict()) == names
    assert isinstance(model.modules[1].cell, nn.LSTM)
