"""Text datasets (counting, ptb, text) and the windows a language model trains on: tokens
against a direct definition, windows against the stream they come from, every refusal."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from needle.data import batchify, get_batch
from needle.errors import UsageError
from needle.train.config import parse_config
from needle.train.datasets import load_data
from needle.train.datasets.text import counting
from needle.train.language import Windows
from needle.train.session import prepare

LM = "model: {layers: [{embedding: 4}, {linear: 2}]}\n"


def data_of(data: str, *overrides: str):
    return load_data(parse_config(f"data: {data}\n{LM}", "c.yaml", list(overrides)))


def refused(text: str, *overrides: str) -> str:
    with pytest.raises(UsageError) as caught:
        prepare(parse_config(text, "c.yaml", list(overrides)))
    return str(caught.value)


# -- counting --------------------------------------------------------------------------------


def test_counting_counts_up_except_where_it_jumps():
    classes, noise = 7, 0.3
    ids = counting(50_000, classes, noise, np.random.default_rng(0))
    assert ids.min() >= 0 and ids.max() == classes - 1
    counted = np.mean(ids[1:] == (ids[:-1] + 1) % classes)
    # a jump lands on the counted-up token 1 time in `classes`
    expected = 1 - noise + noise / classes
    assert abs(counted - expected) < 4 * math.sqrt(expected * (1 - expected) / len(ids))


def test_counting_data_is_a_seeded_stream_split_at_its_end():
    a = data_of("{dataset: counting, samples: 1000, bptt: 8}")
    b = data_of("{dataset: counting, samples: 1000, bptt: 8}")
    c = data_of("{dataset: counting, samples: 1000, bptt: 8}", "seed=1")
    np.testing.assert_array_equal(a.train.y, b.train.y)
    assert not np.array_equal(a.train.y, c.train.y)
    assert (len(a.train), len(a.val)) == (800, 200)
    assert a.sample_shape == a.label_shape == (8,) and a.language_model
    assert a.num_classes == 10
    np.testing.assert_array_equal(a.train.X, a.train.y.astype(np.float32))
    whole = counting(1000, 10, 0.1, np.random.default_rng(0))
    np.testing.assert_array_equal(np.concatenate([a.train.y, a.val.y]), whole)


# -- text and ptb ----------------------------------------------------------------------------


def words(lines: list[str]) -> list[str]:
    """Tokens as the course's Corpus cuts them: whitespace, '<eos>' after each line."""
    return [w for line in lines for w in [*line.split(), "<eos>"]]


def ids_of(tokens: list[str]) -> tuple[list[int], dict[str, int]]:
    """Ids in order of first sight."""
    table: dict[str, int] = {}
    return [table.setdefault(t, len(table)) for t in tokens], table


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.text(alphabet="ab cé\t", min_size=0, max_size=12), min_size=6, max_size=20),
    st.sampled_from(["word", "char"]),
)
def test_a_text_file_is_cut_into_tokens_and_split_at_its_end(tmp_path_factory, lines, tokens):
    path = tmp_path_factory.mktemp("t") / "book.txt"
    content = "".join(line + "\n" for line in lines)
    path.write_text(content, encoding="utf-8")
    expected, table = ids_of(words(lines) if tokens == "word" else list(content))
    n_val = round(len(expected) * 0.25)
    if n_val < 2 or len(expected) - n_val < 2:
        with pytest.raises(UsageError, match="leaves too few on one side"):
            data_of(f"{{dataset: text, path: '{path}', tokens: {tokens}, val_fraction: 0.25}}")
        return
    data = data_of(f"{{dataset: text, path: '{path}', tokens: {tokens}, val_fraction: 0.25}}")
    np.testing.assert_array_equal(np.concatenate([data.train.y, data.val.y]), expected)
    assert len(data.val) == n_val
    assert data.num_classes == len(table)


def test_a_text_folder_and_ptb_read_train_then_valid_through_one_dictionary(tmp_path):
    train, valid = ["the cat sat", "a dog"], ["the bird", "sat down"]
    (tmp_path / "train.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "valid.txt").write_text("\n".join(valid) + "\n")
    expected, table = ids_of(words(train) + words(valid))
    for dataset in ("text", "ptb"):
        data = data_of(f"{{dataset: {dataset}, path: '{tmp_path}', bptt: 4}}")
        np.testing.assert_array_equal(data.train.y, expected[: len(words(train))])
        np.testing.assert_array_equal(data.val.y, expected[len(words(train)) :])
        assert data.num_classes == len(table) and data.sample_shape == (4,)


def test_text_refusals_are_positioned_lines(tmp_path):
    model = "model: {layers: [{embedding: 4}, {linear: 2}]}\n"
    assert refused(f"data: {{dataset: ptb, path: '{tmp_path / 'none'}'}}\n" + model) == (
        f"c.yaml:1:28: data.path: folder '{tmp_path / 'none'}' not found; get them with: "
        f"needle data download ptb --to {tmp_path / 'none'}"
    )
    (tmp_path / "train.txt").write_text("a b\n")
    assert refused(f"data: {{dataset: text, path: '{tmp_path}'}}\n" + model) == (
        f"c.yaml:1:29: data.path: '{tmp_path}' has no valid.txt; it needs train.txt, valid.txt"
    )
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(UsageError, match="is not UTF-8 text"):
        data_of(f"{{dataset: text, path: '{bad}', tokens: char}}")
    assert refused("data: {dataset: counting, normalize: minmax}\n" + model) == (
        "c.yaml:1:27: data.normalize: not used with dataset 'counting': token ids are not "
        "features to rescale"
    )
    assert refused("data: {dataset: text, path: x, tokens: chars}\n" + model).endswith(
        "data.tokens: unknown tokens 'chars'; did you mean 'char'?"
    )
    assert refused("data: {dataset: spirals, bptt: 8}\n" + model).endswith(
        "data.bptt: not used with dataset 'spirals': it applies to datasets counting, ptb, "
        "text only"
    )
    ten = "model: {layers: [{embedding: 4}, {linear: 10}]}\n"
    assert refused(
        "data: {dataset: counting, samples: 100}\n" + ten + "train: {batch_size: 16}\n"
    ) == (
        "c.yaml:3:21: train.batch_size: the validation text has 20 tokens, too few for 16 "
        "streams of at least 2; lower train.batch_size to at most 10"
    )


# -- windows ---------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(length=st.integers(4, 60), batch=st.integers(1, 4), bptt=st.integers(1, 9))
def test_windows_cover_the_batchified_stream_with_next_token_targets(length, batch, bptt):
    """Window n holds column b's tokens i … i+L−1 (i = n·bptt) and, as targets, the token
    after each; a pass covers every row but the last, and only its first window says so."""
    if length // batch < 2:
        return  # too short for two rows: refused before windows are made
    stream = np.random.default_rng(length).integers(0, 50, length)
    rows = length // batch
    column = stream[: rows * batch].reshape(batch, rows)  # column b's contiguous stream
    windows = list(Windows(stream, batch, bptt))
    assert len(windows) == len(Windows(stream, batch, bptt)) == math.ceil((rows - 1) / bptt)
    covered = 0
    for n, (window, targets) in enumerate(windows):
        i = n * bptt
        L = window.ids.shape[1]
        assert window.first == (n == 0)
        np.testing.assert_array_equal(window.ids.numpy(), column[:, i : i + L])
        np.testing.assert_array_equal(targets.numpy(), column[:, i + 1 : i + 1 + L].reshape(-1))
        data, _ = get_batch(batchify(stream, batch), i, bptt)
        np.testing.assert_array_equal(window.ids.numpy(), data.numpy().T)
        covered += L
    assert covered == rows - 1


def test_a_generated_token_stream_is_described_in_tokens():
    from needle.train.config import parse_config
    from needle.train.datasets import load_data

    text = "data: {dataset: counting, samples: 400, bptt: 4}\nmodel: {layers: [{embedding: 4}]}\n"
    data = load_data(parse_config(text, "c.yaml"))
    assert data.source == "counting (400 tokens, seed 0)"
