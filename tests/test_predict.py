"""`needle predict`: a classifier's probabilities are the softmax of its checkpoint's own
weights applied to the data as training preprocessed it (computed here in numpy), for every
input format with or without labels; a language model continues a prompt with its own argmax
chain, in the vocabulary its checkpoint keeps; every mistake is one line."""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from needle.autograd import Tensor, no_grad
from needle.data import write_idx
from needle.errors import UsageError
from needle.train.checkpoint import load_checkpoint, save_checkpoint
from needle.train.config import parse_config
from needle.train.datasets import IDX_FILES
from needle.train.language import LanguageModel
from needle.train.predict import continue_text, predict
from needle.train.rundir import CHECKPOINT_FILE
from needle.train.runner import train
from needle.train.session import build_checked_model
from needle_cli.app import app

runner = CliRunner()
FEATURES, CLASSES = 4, 3


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _mlp_probabilities(run_dir: Path, X: np.ndarray, *, normalize: bool = True) -> np.ndarray:
    """linear → relu → linear from the checkpoint's arrays, after its normalization."""
    saved = load_checkpoint(run_dir / CHECKPOINT_FILE)
    w = {name: array.astype(np.float64) for name, array in saved.model.items()}
    x = X.reshape(len(X), -1).astype(np.float64)
    if normalize and saved.normalization is not None:
        x = (x - saved.normalization.shift) / saved.normalization.scale
    h = np.maximum(x @ w["modules.0.weight"] + w["modules.0.bias"], 0)
    return _softmax(h @ w["modules.2.weight"] + w["modules.2.bias"])


MLP = """\
seed: 1
data: {{dataset: {dataset}, path: {path}, normalize: {normalize}}}
model:
  layers: [{{linear: 8}}, relu, {{linear: 3}}]
train: {{epochs: 2, batch_size: 16, optimizer: {{name: adam, lr: 0.05}}}}
"""


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A run on an .npz of 4 features far from 0 (mean 50, spread 10), `standard`-scaled."""
    folder = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)
    y = rng.integers(0, CLASSES, 120)
    X = (50 + 10 * rng.standard_normal((120, FEATURES)) + 8 * y[:, None]).astype(np.float32)
    np.savez(folder / "train.npz", X=X, y=y)
    text = MLP.format(dataset="npz", path=folder / "train.npz", normalize="standard")
    result = train(parse_config(text, "mlp.yaml"), out=folder)
    new = (50 + 10 * rng.standard_normal((9, FEATURES))).astype(np.float32)
    return result.run_dir, new, rng.integers(0, CLASSES, 9)


def test_probabilities_are_the_softmax_of_the_checkpoints_weights_on_scaled_features(
    table_run, tmp_path
):
    run_dir, X, _ = table_run
    np.savez(tmp_path / "new.npz", X=X)
    result = predict(run_dir, data=tmp_path / "new.npz")
    expected = _mlp_probabilities(run_dir, X)
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-4, atol=1e-6)
    assert (result.classes == expected.argmax(axis=1)).all()
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0)
    # the preprocessing mattered: the raw features would give other numbers
    raw = _mlp_probabilities(run_dir, X, normalize=False)
    assert np.abs(raw - expected).max() > 1e-2


def test_every_table_format_with_or_without_labels_gives_the_same_predictions(table_run, tmp_path):
    run_dir, X, y = table_run
    np.savez(tmp_path / "labelled.npz", X=X, y=y)
    np.savez(tmp_path / "bare.npz", X=X)
    names = [f"f{i}" for i in range(FEATURES)]
    for path, header, extra in (
        (tmp_path / "labelled.csv", ["label", *names], [[v] for v in y]),
        (tmp_path / "bare.csv", names, [[] for _ in y]),
    ):
        rows = [[*e, *map(repr, map(float, x))] for e, x in zip(extra, X, strict=True)]
        path.write_text("\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n")
    results = [
        predict(run_dir, data=tmp_path / name)
        for name in ("labelled.npz", "bare.npz", "labelled.csv", "bare.csv")
    ]
    for result in results:
        np.testing.assert_array_equal(result.probabilities, results[0].probabilities)
    # a label column under another name is named with label_column
    text = (tmp_path / "labelled.csv").read_text().replace("label,", "kind,", 1)
    (tmp_path / "kind.csv").write_text(text)
    named = predict(run_dir, data=tmp_path / "kind.csv", label_column="kind")
    np.testing.assert_array_equal(named.probabilities, results[0].probabilities)
    with pytest.raises(UsageError, match=r"5 features per sample but the model takes 4.*--label"):
        predict(run_dir, data=tmp_path / "kind.csv")


def test_an_image_run_predicts_on_an_idx_file_plain_or_gzipped_a_folder_and_an_npz(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "digits"
    folder.mkdir()
    for split, n in (("train", 90), ("val", 30)):
        labels = rng.integers(0, CLASSES, n).astype(np.uint8)
        images = rng.integers(0, 120, (n, 6, 5)) + 60 * labels[:, None, None]
        write_idx(folder / IDX_FILES[f"{split}_images"], images.astype(np.uint8))
        write_idx(folder / IDX_FILES[f"{split}_labels"], labels)
    text = MLP.format(dataset="mnist", path=folder, normalize="none")
    run_dir = train(parse_config(text, "img.yaml"), out=tmp_path).run_dir
    images_file = folder / IDX_FILES["val_images"]
    gz = tmp_path / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(images_file.read_bytes()))
    pixels = np.frombuffer(images_file.read_bytes()[16:], dtype=np.uint8).reshape(30, 6, 5)
    np.savez(tmp_path / "grey.npz", X=pixels.astype(np.float32) / 255)  # (N, H, W) grey
    expected = _mlp_probabilities(run_dir, pixels.astype(np.float32) / 255)
    for data in (images_file, gz, folder, tmp_path / "grey.npz"):
        result = predict(run_dir, data=data)
        np.testing.assert_allclose(result.probabilities, expected, rtol=1e-4, atol=1e-6)
    wrong = tmp_path / "wide.npz"
    np.savez(wrong, X=np.zeros((2, 1, 6, 6), dtype=np.float32))
    with pytest.raises(UsageError, match=r"shape \(1, 6, 6\) but the model takes .*\(1, 6, 5\)"):
        predict(run_dir, data=wrong)


def test_the_cli_writes_the_csv_once_and_prints_json_and_a_table(table_run, tmp_path):
    run_dir, X, _ = table_run
    np.savez(tmp_path / "new.npz", X=X)
    out = tmp_path / "preds.csv"
    args = ["predict", str(run_dir), "--data", str(tmp_path / "new.npz"), "--out", str(out)]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert f"wrote 9 predictions (3 classes) to {out}" in done.output.replace("\n", "")
    with out.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["index", "predicted", "p_0", "p_1", "p_2"]
    expected = predict(run_dir, data=tmp_path / "new.npz")
    assert [int(r[0]) for r in rows[1:]] == list(range(9))
    assert [int(r[1]) for r in rows[1:]] == expected.classes.tolist()
    np.testing.assert_array_equal(np.array(rows[1:], dtype=float)[:, 2:], expected.probabilities)
    before = out.read_bytes()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "exists; give --force" in again.output
    assert (
        out.read_bytes() == before and [p.name for p in tmp_path.iterdir()].count("preds.csv") == 1
    )
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    as_json = runner.invoke(app, args[:4] + ["--json"])
    line = json.loads(as_json.output.splitlines()[-1])
    assert [p["predicted"] for p in line["predictions"]] == expected.classes.tolist()
    assert line["samples"] == 9 and line["classes"] == 3
    shown = runner.invoke(app, args[:4])
    assert shown.exit_code == 0 and "p_2" in shown.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "missing.csv"], "data file 'missing.csv' not found"),
        ([], "give --data FILE"),
        (["--data", "x.npz", "--prompt", "a"], "give --data FILE"),
        (["--prompt", "0 1"], "--prompt continues a language model's text"),
        (["--data", "x.npz", "--checkpoint", "first"], "--checkpoint is last or best"),
    ],
)
def test_mistakes_are_one_line(table_run, tmp_path, monkeypatch, args, message):
    run_dir, X, _ = table_run
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "x.npz", X=X)
    done = runner.invoke(app, ["predict", str(run_dir), *args])
    assert done.exit_code == 2, done.output
    assert message in done.output and len(done.output.strip().splitlines()) == 1


def test_a_wrong_feature_count_names_both_counts(table_run, tmp_path):
    run_dir, X, _ = table_run
    np.savez(tmp_path / "three.npz", X=X[:, :3])
    with pytest.raises(UsageError, match="3 features per sample but the model takes 4"):
        predict(run_dir, data=tmp_path / "three.npz")


# -- language models -------------------------------------------------------------------------

LSTM = """\
seed: 2
data: {dataset: counting, samples: 2000, classes: 6, noise: 0.1, bptt: 8}
model:
  layers:
    - embedding: 8
    - lstm: {hidden_size: 12, num_layers: 2}
    - dropout: 0.1
    - linear: 6
train: {epochs: 3, batch_size: 8, optimizer: {name: adam, lr: 0.02}}
"""


@pytest.fixture(scope="module")
def counting_run(tmp_path_factory):
    return train(parse_config(LSTM, "lm.yaml"), out=tmp_path_factory.mktemp("lm")).run_dir


def _argmax_chain(run_dir: Path, ids: list[int], steps: int) -> list[int]:
    """The model's own greedy chain: built from the config, the checkpoint loaded, each next
    token the argmax at the last of the last 8 tokens."""
    config = parse_config(LSTM, "lm.yaml")
    model, _ = build_checked_model(config, (8,), 6, label_shape=(8,))
    model.load_state_dict(load_checkpoint(run_dir / CHECKPOINT_FILE).model)
    model = LanguageModel(model)
    model.eval()
    ids = list(ids)
    for _ in range(steps):
        with no_grad():
            logits = model(Tensor(np.array([ids[-8:]], dtype=np.float32))).numpy()
        ids.append(int(logits[-1].argmax()))
    return ids[-steps:]


def test_greedy_continuation_is_the_models_argmax_chain_and_counts_on(counting_run):
    result = continue_text(counting_run, prompt="3 4 5 0", tokens=10)
    assert list(result.ids) == _argmax_chain(counting_run, [3, 4, 5, 0], 10)
    assert result.tokens == tuple(str(i) for i in result.ids)
    assert result.text == " ".join(result.tokens) and result.seed is None
    # the stream counts up mod 6 nine times in ten: a trained model mostly follows it
    previous = (0, *result.ids[:-1])
    follows = sum(t == (p + 1) % 6 for p, t in zip(previous, result.ids, strict=True))
    assert follows >= 8, result.text
    assert all(0 < p <= 1 for p in result.probabilities)


def test_sampling_is_seeded_by_the_run_or_the_seed_given(counting_run):
    default = continue_text(counting_run, prompt="1", tokens=20, temperature=3.0)
    assert default.seed == 2  # the run's seed
    assert continue_text(counting_run, prompt="1", tokens=20, temperature=3.0, seed=2) == default
    other = continue_text(counting_run, prompt="1", tokens=20, temperature=3.0, seed=7)
    assert other.ids != default.ids and set(other.ids) <= set(range(6))


def test_the_vocabulary_is_kept_and_an_older_checkpoint_reads_it_from_the_data(
    counting_run, tmp_path
):
    saved = load_checkpoint(counting_run / CHECKPOINT_FILE)
    assert saved.vocabulary == tuple(str(i) for i in range(6))
    old = tmp_path / "old.npz"
    save_checkpoint(old, replace(saved, vocabulary=()))
    assert load_checkpoint(old).vocabulary == ()
    assert (
        continue_text(old, prompt="2 3", tokens=5).ids
        == continue_text(counting_run, prompt="2 3", tokens=5).ids
    )


def test_a_word_text_run_keeps_its_words_and_names_an_unknown_one(tmp_path):
    text = tmp_path / "story.txt"
    text.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 30)
    config = """\
seed: 0
data: {dataset: text, bptt: 4}
model: {layers: [{embedding: 6}, {lstm: 8}, {linear: 8}]}
train: {epochs: 1, batch_size: 4}
"""
    run_dir = train(parse_config(config, "words.yaml", [f"data.path={text}"]), out=tmp_path).run_dir
    words = ("the", "cat", "sat", "on", "mat", "<eos>", "dog", "log")  # order of first sight
    assert load_checkpoint(run_dir / CHECKPOINT_FILE).vocabulary == words
    assert set(continue_text(run_dir, prompt="the dog", tokens=4).tokens) <= set(words)
    with pytest.raises(UsageError, match=r"the prompt's word 'cats' .* did you mean 'cat'\?"):
        continue_text(run_dir, prompt="the cats", tokens=2)
    done = runner.invoke(app, ["predict", str(run_dir), "--prompt", "a bird"])
    assert done.exit_code == 2 and "'a' is not in the run's vocabulary of 8" in done.output


@pytest.mark.parametrize(
    "options, message",
    [
        ({"tokens": 0}, "--tokens is how many tokens"),
        ({"temperature": -1.0}, "--temperature must be 0"),
        ({"prompt": "   "}, "--prompt is empty"),
        ({"prompt": "0 6"}, "word '6' is not in the run's vocabulary of 6 tokens; valid: '0'"),
    ],
)
def test_language_model_mistakes(counting_run, options, message):
    with pytest.raises(UsageError, match=message):
        continue_text(counting_run, **{"prompt": "0", **options})


def test_a_language_model_refuses_data_and_the_cli_prints_the_continuation(counting_run):
    with pytest.raises(UsageError, match="is a language model on 'counting'"):
        predict(counting_run, data="x.csv")
    done = runner.invoke(app, ["predict", str(counting_run), "--prompt", "0 1", "--json"])
    line = json.loads(done.output.splitlines()[-1])
    assert line["ids"] == list(continue_text(counting_run, prompt="0 1").ids)
    shown = runner.invoke(app, ["predict", str(counting_run), "--prompt", "0 1", "--tokens", "3"])
    assert shown.exit_code == 0 and "3 tokens, greedy" in shown.output
