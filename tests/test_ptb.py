"""Penn Treebank pipeline on small text files this test writes: Dictionary, tokenize and Corpus
against a direct word-by-word definition, batchify and get_batch against the streams they
cut (shapes and contents drawn by hypothesis), and the errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle.data import Corpus, Dictionary, batchify, get_batch
from needle.errors import UsageError

WORDS = st.text(alphabet="abcxyz<>", min_size=1, max_size=3)
LINES = st.lists(st.lists(WORDS, max_size=5), max_size=8)


def first_sight_ids(words: list[str]) -> list[int]:
    """Each word's id when ids go to new words in order: its rank among first occurrences."""
    order: list[str] = []
    for word in words:
        if word not in order:
            order.append(word)
    return [order.index(word) for word in words]


def expected_words(text: str, max_lines: int | None) -> list[str]:
    lines = text.splitlines()[:max_lines]
    return [word for line in lines for word in [*line.split(), "<eos>"]]


@given(words=st.lists(WORDS, max_size=30))
def test_dictionary_gives_ids_in_order_of_first_sight(words):
    d = Dictionary()
    ids = [d.add_word(w) for w in words]
    assert ids == first_sight_ids(words)
    assert len(d) == len(set(words))
    assert [d.idx2word[i] for i in ids] == words
    assert all(d.word2idx[w] == i for w, i in zip(words, ids, strict=True))


@settings(max_examples=40, deadline=None)
@given(lines=LINES, separators=st.sampled_from([" ", "  ", "\t", " \t "]), data=st.data())
def test_tokenize_is_split_lines_plus_eos(tmp_path_factory, lines, separators, data):
    text = "".join(f" {separators.join(line)}{separators}\n" for line in lines)
    folder = tmp_path_factory.mktemp("ptb")
    (folder / "train.txt").write_text(text, encoding="utf-8")
    (folder / "test.txt").write_text("")
    max_lines = data.draw(st.none() | st.integers(0, len(lines) + 2))
    corpus = Corpus(folder, max_lines)
    words = expected_words(text, max_lines)
    assert corpus.train == first_sight_ids(words) and corpus.test == []
    assert [corpus.dictionary.idx2word[i] for i in corpus.train] == words
    assert corpus.tokenize(folder / "train.txt", max_lines) == corpus.train  # nothing new


def test_corpus_reads_train_then_test_through_one_dictionary(tmp_path):
    train = "the cat sat\n\non the mat\nthe end\n"
    test = "a cat on a hat\nthe dog\n"
    (tmp_path / "train.txt").write_text(train)
    (tmp_path / "test.txt").write_text(test)
    # No valid.txt: the course's Corpus reads only train and test.
    for max_lines in (None, 0, 1, 2, 5):
        corpus = Corpus(tmp_path, max_lines=max_lines)
        train_words = expected_words(train, max_lines)
        test_words = expected_words(test, max_lines)
        ids = first_sight_ids(train_words + test_words)
        assert corpus.train == ids[: len(train_words)]
        assert corpus.test == ids[len(train_words) :]
        assert len(corpus.dictionary) == len(set(train_words + test_words))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), data=st.data())
def test_batchify_columns_are_contiguous_streams(n, data):
    batch_size = data.draw(st.integers(1, n))
    dtype = data.draw(st.sampled_from([None, "float32", "int64"]))
    ids = list(np.random.default_rng(n).integers(0, 1000, n))
    out = batchify(ids, batch_size, ndl.cpu_numpy(), dtype)
    nbatch = n // batch_size
    assert isinstance(out, np.ndarray) and out.shape == (nbatch, batch_size)
    assert out.dtype == (np.asarray(ids).dtype if dtype is None else np.dtype(dtype))
    for j in range(batch_size):
        np.testing.assert_array_equal(out[:, j], ids[j * nbatch : (j + 1) * nbatch])


@settings(max_examples=80, deadline=None)
@given(
    nbatch=st.integers(2, 12),
    batch_size=st.integers(1, 4),
    bptt=st.integers(1, 15),
    dtype=st.sampled_from([None, "float32"]),
    data=st.data(),
)
def test_get_batch_pairs_each_id_with_the_next_in_its_stream(nbatch, batch_size, bptt, dtype, data):
    ids = np.arange(nbatch * batch_size) * 7 % 101  # distinct ids, in stream order
    batches = batchify(ids, batch_size)
    i = data.draw(st.integers(0, nbatch - 2))
    x, y = get_batch(batches, i, bptt, device=ndl.cpu_numpy(), dtype=dtype)
    length = min(bptt, nbatch - 1 - i)
    assert isinstance(x, ndl.Tensor) and isinstance(y, ndl.Tensor)
    assert x.shape == (length, batch_size) and y.shape == (length * batch_size,)
    assert x.device == ndl.cpu_numpy() and not x.requires_grad and not y.requires_grad
    assert x.dtype == y.dtype == (batches.dtype if dtype is None else np.dtype(dtype))
    targets = y.numpy().reshape(length, batch_size)
    for t in range(length):
        for j in range(batch_size):
            stream = ids[j * nbatch : (j + 1) * nbatch]
            assert x.numpy()[t, j] == stream[i + t]
            assert targets[t, j] == stream[i + t + 1]


def test_errors_name_the_bad_value(tmp_path):
    with pytest.raises(UsageError) as caught:
        Corpus(tmp_path)
    assert str(caught.value) == (
        f"'{tmp_path / 'train.txt'}' not found; get the Penn Treebank with: needle data "
        f"download ptb --to {tmp_path}"
    )
    (tmp_path / "train.txt").write_bytes(b"ok\n\xff\n")
    with pytest.raises(UsageError, match="is not UTF-8 text"):
        Corpus(tmp_path)
    with pytest.raises(UsageError, match=r"max_lines must be None or an integer >= 0 \(got -1\)"):
        Corpus(tmp_path, max_lines=-1)
    with pytest.raises(UsageError, match="batch_size 5 is more than the 4 ids to batch"):
        batchify([1, 2, 3, 4], 5)
    with pytest.raises(UsageError, match=r"batch_size must be a positive integer \(got 0\)"):
        batchify([1, 2, 3, 4], 0)
    batches = batchify(list(range(12)), 3)  # 4 rows
    with pytest.raises(UsageError, match=r"i=3 is out of range for 4 rows \(valid: 0\.\.2\)"):
        get_batch(batches, 3, 2)
    with pytest.raises(UsageError, match=r"i=-1 is out of range"):
        get_batch(batches, -1, 2)
    with pytest.raises(UsageError, match=r"bptt must be a positive integer \(got 0\)"):
        get_batch(batches, 0, 0)
