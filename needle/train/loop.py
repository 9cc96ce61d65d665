"""The one training loop: `run_batches` steps through a DataLoader, `epoch` summarizes a pass.

The training runner and `epoch` both consume `run_batches`, so training and evaluation are
computed in exactly one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from needle import nn
from needle.autograd import Tensor, no_grad
from needle.errors import UsageError
from needle.optim import Optimizer


@dataclass(frozen=True)
class BatchResult:
    """What one batch produced."""

    loss: float  # mean loss over the batch
    correct: int  # number of correct predictions (argmax of the logits equals the label)
    size: int  # batch size
    # The predicted classes (argmax of the logits), for confusion matrices; an array, so
    # results compare by the numbers above.
    predictions: np.ndarray = field(compare=False, repr=False)


def run_batches(
    dataloader: Iterable[tuple[Tensor, ...]],
    model: nn.Module,
    opt: Optimizer | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> Iterator[BatchResult]:
    """One pass over `dataloader`'s `(X, y)` batches, yielding a `BatchResult` per batch.

    With `opt`: training mode, and per batch `opt.reset_grad()`, forward, loss, backward,
    `opt.step()`. Without: evaluation mode, forward and loss only, with no graph built.
    `loss_fn(logits, y)` returns the batch's mean loss; it defaults to `nn.SoftmaxLoss()`.
    """
    loss_fn = loss_fn if loss_fn is not None else nn.SoftmaxLoss()
    training = opt is not None
    model.train() if training else model.eval()
    for X, y in dataloader:
        if training:
            opt.reset_grad()
            logits = model(X)
            loss = loss_fn(logits, y)
            loss.backward()
            opt.step()
        else:
            # Only around the forward pass: never left switched off across a yield.
            with no_grad():
                logits = model(X)
                loss = loss_fn(logits, y)
        labels = y.numpy()
        predictions = logits.numpy().argmax(axis=-1)
        yield BatchResult(
            loss=float(loss.numpy()),
            correct=int(np.count_nonzero(predictions == labels)),
            size=len(labels),
            predictions=predictions,
        )


@dataclass
class Totals:
    """Running sums over batches: loss weighted by batch size, correct predictions, samples.
    `loss` and `accuracy` are averages over samples."""

    loss_sum: float = 0.0
    correct: int = 0
    size: int = 0

    def add(self, result: BatchResult) -> None:
        self.loss_sum += result.loss * result.size
        self.correct += result.correct
        self.size += result.size

    @property
    def loss(self) -> float:
        return self.loss_sum / self.size

    @property
    def accuracy(self) -> float:
        return self.correct / self.size


def epoch(
    dataloader: Iterable[tuple[Tensor, ...]], model: nn.Module, opt: Optimizer | None = None
) -> tuple[float, float]:
    """One pass: train with `opt`, evaluate without. Returns `(error_rate, mean_loss)`, the
    fraction of samples misclassified and the loss averaged over samples (each batch's mean
    loss weighted by its size)."""
    totals = Totals()
    for result in run_batches(dataloader, model, opt):
        totals.add(result)
    if totals.size == 0:
        raise UsageError("epoch: the data loader produced no batches")
    return 1 - totals.accuracy, totals.loss
