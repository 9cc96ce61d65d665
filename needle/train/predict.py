"""Predictions: a trained model used on new data.

`predict` gives a classifier's class and class probabilities for every sample of a data file
(.csv, .npz, an idx file of images or an MNIST/CIFAR folder; labels are not needed), with the
preprocessing the run trained with: the checkpoint's `data.normalize` statistics, then the
sample shape the model takes (images flattened for a model written for flat features, as
`session.model_input` decides). `continue_text` gives a language model's next tokens after a
prompt, read in the run's vocabulary: greedy (the most probable token each step) by default,
or drawn from softmax(logits / temperature) with a seeded generator.

Probabilities are softmax(logits) in float64: p_k = exp(z_k − max z) / Σ_j exp(z_j − max z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from needle import nn
from needle.autograd import Tensor, no_grad
from needle.data import DataLoader, NDArrayDataset
from needle.errors import UsageError, did_you_mean
from needle.fileio import write_text
from needle.train.datasets import DATASET_TYPES, load_data, load_samples
from needle.train.language import LanguageModel
from needle.train.restore import OpenedRun, fits, mismatch, open_run, restored_model
from needle.train.rundir import check_data_found
from needle.train.session import as_input, model_input


@dataclass(frozen=True)
class Predictions:
    """A classifier's prediction for each sample of a data file."""

    classes: np.ndarray  # (N,) int64: the most probable class of each sample
    probabilities: np.ndarray  # (N, classes) float64: softmax of the model's logits
    epoch: int  # epochs the checkpoint had trained
    checkpoint: Path
    data: str  # the file predicted on

    def __len__(self) -> int:
        return len(self.classes)

    def csv_text(self) -> str:
        """A header `index,predicted,p_0,…,p_{k−1}`, then a row per sample; probabilities
        written in full (repr), so they read back as the same float64."""
        k = self.probabilities.shape[1]
        lines = [",".join(["index", "predicted", *(f"p_{c}" for c in range(k))])]
        for i, (c, row) in enumerate(zip(self.classes, self.probabilities, strict=True)):
            lines.append(",".join([str(i), str(int(c)), *(repr(float(p)) for p in row)]))
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "epoch": self.epoch,
            "data": self.data,
            "samples": len(self),
            "classes": int(self.probabilities.shape[1]),
            "predictions": [
                {"index": i, "predicted": int(c), "probabilities": row.tolist()}
                for i, (c, row) in enumerate(zip(self.classes, self.probabilities, strict=True))
            ],
        }


def predict(
    target: str | Path,
    *,
    data: str | Path,
    label_column: str | None = None,
    checkpoint: str = "last",
) -> Predictions:
    """The class and class probabilities of every sample in `data`, by a run folder's
    checkpoint ("last" or "best") or a checkpoint file. A .csv's `label_column` (default: the
    run's `data.label_column`, else "label") is left out of the features when present; a
    file's labels are never needed."""
    run = open_run(target, checkpoint=checkpoint)
    config, saved = run.config, run.saved
    if DATASET_TYPES[config.data.dataset].text:
        raise UsageError(
            f"'{target}' is a language model on '{config.data.dataset}': continue a prompt "
            "with --prompt TEXT instead of --data"
        )
    label_column = label_column or config.data.label_column or "label"
    X, _ = load_samples(data, label_column=label_column)
    input_shape = model_input(config, saved.sample_shape, saved.num_classes)
    found = tuple(X.shape[1:])
    if not fits(found, saved.sample_shape, input_shape):
        hint = ""
        if Path(data).suffix.lower() == ".csv" and len(found) == 1:
            hint = f" (columns other than '{label_column}' are features; --label-column names it)"
        raise UsageError(f"'{data}' has {mismatch(found, saved.sample_shape)}{hint}")
    if saved.normalization is not None:  # the statistics training used, not this file's
        X = saved.normalization.apply(X)
    model = restored_model(run, input_shape)
    probabilities = softmax(_logits(model, as_input(X, input_shape), config.train.batch_size))
    return Predictions(
        probabilities.argmax(axis=1).astype(np.int64),
        probabilities,
        saved.epoch,
        run.checkpoint_path,
        str(data),
    )


def _logits(model: nn.Module, X: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's logits for samples `X`, in evaluation mode, a batch at a time."""
    model.eval()
    out = []
    with no_grad():
        for (batch,) in DataLoader(NDArrayDataset(X), batch_size=batch_size):
            out.append(model(batch).numpy())
    return np.concatenate(out)


def softmax(logits: np.ndarray) -> np.ndarray:
    """softmax over the last axis, in float64, shifted by the maximum so exp cannot overflow."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def check_out(path: str | Path, *, force: bool = False) -> None:
    """Refuse an --out that is a folder, is in no folder, or exists (unless `force`): checked
    before predicting, so a mistake costs no work."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--out '{path}' is a folder; give a file name such as preds.csv")
    if path.exists() and not force:
        raise UsageError(f"'{path}' exists; give --force to replace it, or another --out")
    if not path.parent.is_dir():
        raise UsageError(f"--out '{path}': folder '{path.parent}' not found")


def save_predictions(predictions: Predictions, path: str | Path, *, force: bool = False) -> None:
    """Write `predictions.csv_text()` to `path` atomically (a reader sees the old file or the
    whole new one); an existing file is replaced only with `force`."""
    check_out(path, force=force)
    write_text(path, predictions.csv_text())


# -- language models -------------------------------------------------------------------------


@dataclass(frozen=True)
class Continuation:
    """A language model's next tokens after a prompt."""

    prompt: tuple[str, ...]  # the prompt's tokens
    tokens: tuple[str, ...]  # the tokens generated, in order
    ids: tuple[int, ...]  # their ids in the vocabulary
    probabilities: tuple[float, ...]  # the probability the model gave each generated token
    separator: str  # what joins tokens into text: " " for words, "" for characters
    temperature: float  # 0: greedy
    seed: int | None  # the seed the tokens were drawn with (None when greedy)
    epoch: int
    checkpoint: Path

    @property
    def text(self) -> str:
        """The generated tokens as text."""
        return self.separator.join(self.tokens)

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "epoch": self.epoch,
            "prompt": self.separator.join(self.prompt),
            "text": self.text,
            "tokens": list(self.tokens),
            "ids": list(self.ids),
            "probabilities": list(self.probabilities),
            "temperature": self.temperature,
            "seed": self.seed,
        }


def continue_text(
    target: str | Path,
    *,
    prompt: str,
    tokens: int = 10,
    temperature: float = 0.0,
    seed: int | None = None,
    checkpoint: str = "last",
) -> Continuation:
    """The `tokens` tokens a language model run writes after `prompt` (words split on
    whitespace, or characters for a `tokens: char` text), one at a time: each from the
    model's output at the last position, run on the last bptt tokens so far from a zero
    state (as a window starting a pass). Greedy when `temperature` is 0; else drawn from
    softmax(logits / temperature) by np.random.default_rng(`seed`, default the run's)."""
    run = open_run(target, checkpoint=checkpoint)
    config = run.config
    if not DATASET_TYPES[config.data.dataset].text:
        raise UsageError(
            f"--prompt continues a language model's text; '{target}' is a classifier on "
            f"'{config.data.dataset}': predict on a file with --data FILE"
        )
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise UsageError(f"--tokens is how many tokens to write, 1 or more (got {tokens!r})")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise UsageError(
            f"--temperature must be 0 (greedy) or a positive number (got {temperature!r})"
        )
    chars = config.data.dataset == "text" and config.data.tokens == "char"
    words = tuple(prompt) if chars else tuple(prompt.split())
    if not words:
        raise UsageError("--prompt is empty; give at least one token to continue")
    vocabulary = run.saved.vocabulary or _rebuilt_vocabulary(run)
    index = {word: i for i, word in enumerate(vocabulary)}
    for word in words:
        if word not in index:
            kind = "character" if chars else "word"
            hint = did_you_mean(word, vocabulary) if len(vocabulary) <= 100_000 else ""
            if not hint:
                few = len(vocabulary) <= 20
                hint = (
                    f" valid: {', '.join(map(repr, vocabulary))}"
                    if few
                    else " use words it trained on"
                )
            raise UsageError(
                f"the prompt's {kind} {word!r} is not in the run's vocabulary of "
                f"{len(vocabulary):,} tokens;{hint}"
            )
    bptt = run.saved.sample_shape[0]
    model = LanguageModel(restored_model(run, (bptt,), label_shape=(bptt,)))
    model.eval()
    drawn_with = None if temperature == 0 else (config.seed if seed is None else seed)
    rng = np.random.default_rng(drawn_with)
    ids = [index[word] for word in words]
    chosen: list[int] = []
    chances: list[float] = []
    for _ in range(tokens):
        window = Tensor(np.array([ids[-bptt:]], dtype=np.float32), requires_grad=False)
        with no_grad():
            logits = model(window).numpy()[-1].astype(np.float64)
        if temperature == 0:
            token = int(np.argmax(logits))
        else:
            token = int(rng.choice(len(logits), p=softmax(logits / temperature)))
        chosen.append(token)
        chances.append(float(softmax(logits)[token]))
        ids.append(token)
    return Continuation(
        words,
        tuple(vocabulary[i] for i in chosen),
        tuple(chosen),
        tuple(chances),
        "" if chars else " ",
        float(temperature),
        drawn_with,
        run.saved.epoch,
        run.checkpoint_path,
    )


def _rebuilt_vocabulary(run: OpenedRun) -> tuple[str, ...]:
    """The vocabulary of a run whose checkpoint predates keeping it: its data read again
    (the same files, or the same seed, give the same ids)."""
    config = run.config
    check_data_found(
        config,
        f"the checkpoint keeps no vocabulary (it is older than that), so it is read from the "
        f"run's data; if the data moved, set data.path in {run.label} to where it is now",
    )
    vocabulary = load_data(config).vocabulary
    if len(vocabulary) != run.saved.num_classes:
        raise UsageError(
            f"the run's data now has {len(vocabulary):,} distinct tokens but the model in "
            f"'{run.checkpoint_path}' knows {run.saved.num_classes:,}: the data changed"
        )
    return vocabulary
