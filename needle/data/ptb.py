"""Penn Treebank for language models: words to ids, and ids to (bptt, batch) windows.

The course's pipeline: `Corpus` turns train.txt, then test.txt, into id lists through one
`Dictionary`; `batchify` cuts a list into `batch_size` contiguous streams, one per column;
`get_batch` takes `bptt` consecutive rows as input and the same rows shifted by one as
targets. `needle data download ptb` saves the published ptb.{train,valid,test}.txt under
these names (train.txt, valid.txt, test.txt).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from needle.autograd import Device, Tensor
from needle.errors import UsageError

EOS = "<eos>"


class Dictionary:
    """Word <-> id, ids handed out 0, 1, 2, ... in order of first sight."""

    def __init__(self) -> None:
        self.word2idx: dict[str, int] = {}
        self.idx2word: list[str] = []

    def add_word(self, word: str) -> int:
        """The id of `word`, giving it the next id if it is new."""
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self) -> int:
        return len(self.idx2word)


class Corpus:
    """`train` = `tokenize(base_dir/train.txt, max_lines)`, then `test` = the same of test.txt,
    both through the one `dictionary` (so test words unseen in training get new ids)."""

    def __init__(self, base_dir: str | PathLike[str], max_lines: int | None = None) -> None:
        self.dictionary = Dictionary()
        base = Path(base_dir)
        self.train = self.tokenize(base / "train.txt", max_lines)
        self.test = self.tokenize(base / "test.txt", max_lines)

    def tokenize(self, path: str | PathLike[str], max_lines: int | None = None) -> list[int]:
        """The ids of the first `max_lines` lines of `path` (all lines when None), each line
        split on whitespace and followed by '<eos>'; new words are added to the dictionary."""
        if max_lines is not None and (
            not isinstance(max_lines, int) or isinstance(max_lines, bool) or max_lines < 0
        ):
            raise UsageError(f"max_lines must be None or an integer >= 0 (got {max_lines!r})")
        path = Path(path)
        ids: list[int] = []
        try:
            with path.open(encoding="utf-8") as f:
                for count, line in enumerate(f):
                    if count == max_lines:
                        break
                    ids.extend(self.dictionary.add_word(word) for word in line.split())
                    ids.append(self.dictionary.add_word(EOS))
        except FileNotFoundError:
            raise UsageError(
                f"'{path}' not found; get the Penn Treebank with: needle data download ptb "
                f"--to {path.parent}"
            ) from None
        except UnicodeDecodeError as err:
            raise UsageError(
                f"'{path}' is not UTF-8 text ({err.reason} at byte {err.start})"
            ) from None
        except OSError as err:
            raise UsageError(f"cannot read '{path}': {err.strerror or err}") from None
        return ids


def batchify(
    data: Any, batch_size: int, device: Device | None = None, dtype: Any = None
) -> np.ndarray:
    """`data` cut into `batch_size` streams: a numpy array (nbatch, batch_size) whose column j
    is data[j·nbatch : (j+1)·nbatch], nbatch = len(data) // batch_size (the rest is dropped).

    `device` is accepted for the course's signature (the result is numpy, as there);
    `dtype=None` keeps the ids' dtype.
    """
    _check_positive("batch_size", batch_size)
    data = np.asarray(data)
    nbatch = len(data) // batch_size
    if nbatch == 0:
        raise UsageError(f"batch_size {batch_size} is more than the {len(data)} ids to batch")
    streams = data[: nbatch * batch_size].reshape(batch_size, nbatch)
    return np.ascontiguousarray(streams.T, dtype=dtype)


def get_batch(
    batches: np.ndarray,
    i: int,
    bptt: int,
    device: Device | None = None,
    dtype: Any = None,
) -> tuple[Tensor, Tensor]:
    """Rows i … i+L−1 of `batches` as input (L, B) and rows i+1 … i+L flattened as targets
    (L·B,), L = min(bptt, len(batches) − 1 − i): each input id's target is the id after it in
    its column's stream. Both are Tensors on `device`, of `dtype` (None keeps the ids')."""
    _check_positive("bptt", bptt)
    last = len(batches) - 2  # the last row with a row after it
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i <= last:
        valid = f"0..{last}" if last >= 0 else "none: it needs at least 2 rows"
        raise UsageError(
            f"get_batch: i={i!r} is out of range for {len(batches)} rows (valid: {valid})"
        )
    length = min(bptt, len(batches) - 1 - i)
    data = batches[i : i + length]
    target = batches[i + 1 : i + 1 + length].reshape(-1)
    return (
        Tensor(data, device=device, dtype=dtype, requires_grad=False),
        Tensor(target, device=device, dtype=dtype, requires_grad=False),
    )


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UsageError(f"{name} must be a positive integer (got {value!r})")
