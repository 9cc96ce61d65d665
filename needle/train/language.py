"""Language models in the one training loop: windows over a token stream, and a model that
carries its recurrent layers' hidden state from one window to the next.

The course trains a language model on `batchify`-ed text: the stream cut into `batch_size`
columns, read `bptt` rows at a time (`get_batch`), each window's hidden state started from the
previous window's final one, detached so that gradients stop at the window's edge. Here that
is two small objects that `loop.fit` takes as it takes a DataLoader and a model, so there is
still one loop (steps, hooks, checkpoints, resume):

    Windows          a loader: yields (Window, targets) per window, in stream order, and knows
                     its length; each pass's first Window says so (`first`)
    LanguageModel    the built Sequential, taking a Window: it forgets the carried state at a
                     pass's first window, and returns per-token logits (batch·bptt, vocabulary)
                     against the targets' batch·bptt next tokens
    Recurrent        the module an `rnn`/`lstm` layer builds: (B, T, F) in and out, nn.RNN or
                     nn.LSTM inside on (T, B, F); it carries its final state when asked

Why the data marks the pass's start rather than a hook resetting the state: the validation
pass, `needle evaluate` and a resumed epoch all iterate windows without the run's hooks, and
each must start from a zero state exactly where the data starts (and a resumed epoch not at
all: it continues from the state its checkpoint kept, `carried_state`/`restore_state`).

Loss is per token (SoftmaxLoss over the batch·bptt targets), so `Totals` weights each window
by its tokens, accuracy is next-token accuracy and perplexity is exp(loss).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from needle import nn, ops
from needle.autograd import Tensor
from needle.data import batchify, get_batch


@dataclass(frozen=True)
class Window:
    """Token ids (batch, length), as floats; `first` for a pass's first window."""

    ids: Tensor
    first: bool


class Windows:
    """The windows of one token stream: `batchify(stream, batch_size)` read `bptt` rows at a
    time with `get_batch`, transposed to batch-major. Each item is (Window (B, L) ids,
    targets (B·L,)), the targets row by row: column b's next tokens, for b = 0 … B−1. The last
    window is shorter when the rows do not divide (L = the rows left − 1)."""

    def __init__(self, stream: np.ndarray, batch_size: int, bptt: int) -> None:
        self.batches = batchify(np.asarray(stream, dtype=np.float32), batch_size)
        self.bptt = bptt

    def __len__(self) -> int:
        return math.ceil((len(self.batches) - 1) / self.bptt)

    def __iter__(self) -> Iterator[tuple[Window, Tensor]]:
        for n, i in enumerate(range(0, len(self.batches) - 1, self.bptt)):
            data, target = get_batch(self.batches, i, self.bptt)
            ids = data.numpy().T  # (L, B) -> (B, L)
            targets = target.numpy().reshape(data.shape).T.reshape(-1)
            yield (
                Window(Tensor(ids, requires_grad=False), first=n == 0),
                Tensor(targets, requires_grad=False),
            )


class Recurrent(nn.Module):
    """An nn.RNN or nn.LSTM (`cell`) on batch-major data: (B, T, F) → (B, T, H), or (B, H), the
    last step, with `last`. nn's recurrent layers are time-major, so the input is transposed
    in and the output out.

    With `carry` on (a LanguageModel sets it) the final state is kept, as numpy arrays (so it
    is detached, and no part of `state_dict`), and starts the next call; `carried = None`
    starts from zeros."""

    def __init__(self, cell: nn.RNN | nn.LSTM, *, last: bool) -> None:
        super().__init__()
        self.cell, self.last = cell, last
        self.carry = False
        self.carried: tuple[np.ndarray, ...] | None = None

    def forward(self, x: Tensor) -> Tensor:
        state = None
        if self.carry and self.carried is not None:
            held = tuple(Tensor(a, device=x.device, requires_grad=False) for a in self.carried)
            state = held if isinstance(self.cell, nn.LSTM) else held[0]
        out, final = self.cell(x.transpose((0, 1)), state)
        if self.carry:
            finals = final if isinstance(final, tuple) else (final,)
            self.carried = tuple(f.numpy().copy() for f in finals)
        if self.last:
            return ops.split(out, 0).tuple()[-1]
        return out.transpose((0, 1))


class TransformerStack(nn.Module):
    """nn.Transformer (batch_first) on (B, T, F), its output alone (no hidden state)."""

    def __init__(self, transformer: nn.Transformer) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, x: Tensor) -> Tensor:
        return self.transformer(x)[0]


class LanguageModel(nn.Sequential):
    """The Sequential a config builds, for windows of a token stream: the same modules (so
    the same `state_dict` names), its recurrent layers set to carry their state.

    `forward(window)` forgets the carried states at a pass's first window, runs the layers on
    its (B, T) ids and returns their (B, T, vocabulary) output as (B·T, vocabulary) logits;
    a plain Tensor of ids is run from a zero state."""

    def __init__(self, sequential: nn.Sequential) -> None:
        super().__init__(*sequential.modules)
        self.recurrent = [m for _, m in self.named_modules() if isinstance(m, Recurrent)]
        for layer in self.recurrent:
            layer.carry = True

    def forward(self, window: Window | Tensor) -> Tensor:
        if not isinstance(window, Window):
            window = Window(window, first=True)
        if window.first:
            self.restore_state({})
        out = super().forward(window.ids)
        return out.reshape((math.prod(out.shape[:-1]), out.shape[-1]))

    def carried_state(self) -> dict[str, np.ndarray]:
        """The carried hidden states, "<layer>/<part>" → array, for a mid-epoch checkpoint."""
        return {
            f"{i}/{j}": array
            for i, layer in enumerate(self.recurrent)
            for j, array in enumerate(layer.carried or ())
        }

    def restore_state(self, state: dict[str, np.ndarray]) -> None:
        """Set the carried states from `carried_state()`'s form; layers absent start at zero."""
        for i, layer in enumerate(self.recurrent):
            parts = sorted((k for k in state if k.split("/")[0] == str(i)), key=_part)
            layer.carried = tuple(np.asarray(state[k]) for k in parts) or None


def _part(key: str) -> int:
    return int(key.split("/")[1])
