"""The text datasets, for language models: `ptb` (the Penn Treebank folder `needle data
download ptb` saves), `text` (any UTF-8 file, or a folder with train.txt and valid.txt, cut
into words or characters) and `counting`, a generated token stream.

Each loads into two Splits holding a token stream: `y` the ids (N,) int64, `X` the same ids
as float32 (what an Embedding takes). Ids are handed out in order of first sight, through
one dictionary for both splits (needle.data.ptb's `Dictionary`), so the vocabulary
(`Data.num_classes`) is the number of distinct tokens in both. A sample is a window of `bptt`
tokens (`Data.sample_shape` (bptt,)), its label the `bptt` tokens after each
(`Data.label_shape`); `needle.train.language.Windows` cuts the windows. Each split is a
`TokenStream`, knowing the words its ids stand for (counting's token i is the word "i"), so a
run can save its vocabulary and `needle predict` read a prompt in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from needle.data.ptb import Corpus, Dictionary
from needle.errors import UsageError
from needle.train.datasets.registry import FILE, GENERATOR, REQUIRED, DatasetType, register
from needle.train.datasets.split import Split, TokenStream

if TYPE_CHECKING:
    from needle.train.config import TrainConfig

BPTT = 32  # tokens per window, the default
VAL_FRACTION = 0.2  # the share of a one-file text (or of counting's stream) held out, from its end
TOKENS = ("word", "char")


class _Text(Corpus):
    """Corpus's tokenizer (words split on whitespace, '<eos>' after each line) over any files,
    through one dictionary; `chars` cuts characters instead (newlines included)."""

    def __init__(self) -> None:
        self.dictionary = Dictionary()

    def chars(self, path: Path) -> list[int]:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise UsageError(
                f"'{path}' is not UTF-8 text ({err.reason} at byte {err.start})"
            ) from None
        return [self.dictionary.add_word(c) for c in text]

    def read(self, path: Path, tokens: str) -> list[int]:
        return self.chars(path) if tokens == "char" else self.tokenize(path)


def _streams(
    train: list[int] | np.ndarray, val: list[int] | np.ndarray, words: list[str]
) -> tuple[TokenStream, TokenStream]:
    """Both splits' ids as TokenStreams, knowing the `words` the ids stand for."""
    splits = []
    for ids in (train, val):
        ids = np.asarray(ids, dtype=np.int64)
        splits.append(TokenStream(ids.astype(np.float32), ids, tuple(words)))
    return splits[0], splits[1]


def _folder_files(
    folder: Path, config: TrainConfig, names: tuple[str, ...], hint: str = ""
) -> list[Path]:
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise config.error(
            ("data", "path"),
            f"'{folder}' has no {' or '.join(missing)}; it needs {', '.join(names)}{hint}",
        )
    return [folder / name for name in names]


def _load_ptb(config: TrainConfig, rng: np.random.Generator) -> tuple[Split, Split]:
    folder = Path(config.data.path).expanduser()
    hint = f"; get them with: needle data download ptb --to {folder}"
    if not folder.is_dir():
        raise config.error(("data", "path"), f"folder '{folder}' not found{hint}")
    train, valid = _folder_files(folder, config, ("train.txt", "valid.txt"), hint)
    corpus = _Text()
    train_ids, val_ids = corpus.tokenize(train), corpus.tokenize(valid)
    return _streams(train_ids, val_ids, corpus.dictionary.idx2word)


def _load_text(config: TrainConfig, rng: np.random.Generator) -> tuple[Split, Split]:
    spec = config.data
    path = Path(spec.path).expanduser()
    corpus = _Text()
    if path.is_dir():
        train, valid = _folder_files(path, config, ("train.txt", "valid.txt"))
        train_ids, val_ids = corpus.read(train, spec.tokens), corpus.read(valid, spec.tokens)
        return _streams(train_ids, val_ids, corpus.dictionary.idx2word)
    if not path.is_file():
        raise config.error(("data", "path"), f"file or folder '{path}' not found")
    ids = corpus.read(path, spec.tokens)
    n_val = round(len(ids) * spec.val_fraction)
    if n_val < 2 or len(ids) - n_val < 2:
        raise config.error(
            ("data", "path"),
            f"'{path}' holds {len(ids)} {spec.tokens} tokens; holding out "
            f"data.val_fraction={spec.val_fraction} leaves too few on one side",
        )
    return _streams(ids[: len(ids) - n_val], ids[len(ids) - n_val :], corpus.dictionary.idx2word)


def counting(samples: int, classes: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """`samples` tokens 0 … classes−1 counting up: each token is the one before plus 1 (mod
    `classes`), or, with probability `noise`, drawn uniformly (a jump). The first is uniform.

    The best possible model knows the rule and the jump rate, so its loss per token is the
    entropy H = −q ln q − (classes−1)·r ln r, with r = noise/classes and q = 1 − noise + r:
    perplexity falls from `classes` (knowing nothing) towards exp(H).
    """
    jumps = rng.random(samples) < noise
    drawn = rng.integers(0, classes, samples)
    ids = np.empty(samples, dtype=np.int64)
    ids[0] = drawn[0]
    for t in range(1, samples):
        ids[t] = drawn[t] if jumps[t] else (ids[t - 1] + 1) % classes
    return ids


def _load_counting(config: TrainConfig, rng: np.random.Generator) -> tuple[Split, Split]:
    spec = config.data
    ids = counting(spec.samples, spec.classes, spec.noise, rng)
    n_val = max(2, round(spec.samples * spec.val_fraction))
    words = [str(i) for i in range(spec.classes)]  # token i is written as the number i
    return _streams(ids[: spec.samples - n_val], ids[spec.samples - n_val :], words)


register(
    DatasetType(
        "counting",
        GENERATOR,
        "A token stream counting up 0, 1, 2, … mod `classes`, jumping to a uniform token with "
        "probability `noise`; `samples` tokens, the last `val_fraction` of them validating. "
        "A language model's perplexity falls from `classes` towards the stream's entropy.",
        settings={
            "samples": 20000,
            "classes": 10,
            "noise": 0.1,
            "val_fraction": VAL_FRACTION,
            "bptt": BPTT,
        },
        load=_load_counting,
        text=True,
    )
)
register(
    DatasetType(
        "ptb",
        FILE,
        "The Penn Treebank as `needle data download ptb` saves it: `path` is a folder with "
        "train.txt and valid.txt (words, '<eos>' after each line); valid.txt validates.",
        settings={"path": REQUIRED, "bptt": BPTT},
        load=_load_ptb,
        unused={"val_fraction": "'ptb' has its own validation split (valid.txt)"},
        text=True,
    )
)
register(
    DatasetType(
        "text",
        FILE,
        "Any UTF-8 text cut into `tokens` (word: split on whitespace, '<eos>' after each "
        "line; char: every character): `path` a file, its last `val_fraction` validating, or "
        "a folder with train.txt and valid.txt.",
        settings={"path": REQUIRED, "tokens": "word", "val_fraction": VAL_FRACTION, "bptt": BPTT},
        load=_load_text,
        text=True,
    )
)
