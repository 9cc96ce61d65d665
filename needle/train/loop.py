"""The one training loop: `run_batches` steps through a DataLoader, `epoch` summarizes a pass,
`fit` runs epochs of training and validation with `Hooks` at every step, epoch, evaluation
and stop.

`epoch` (the course's API), `fit` and evaluation all consume `run_batches`, so a step is
computed in exactly one place. What a run does besides stepping (checkpoints, the loss check,
progress, the learning-rate schedule, gradient clipping, early stopping, the best checkpoint)
joins `fit` through its hooks, rather than wrapping a loop of its own around it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from needle import nn
from needle.allocator import retain_freed_memory
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
    *,
    before_step: Callable[[], None] | None = None,
) -> Iterator[BatchResult]:
    """One pass over `dataloader`'s `(X, y)` batches, yielding a `BatchResult` per batch.

    With `opt`: training mode, and per batch `opt.reset_grad()`, forward, loss, backward,
    `opt.step()`, with `before_step()` called between backward and step (where gradients are
    clipped). Without: evaluation mode, forward and loss only, with no graph built.
    `loss_fn(logits, y)` returns the batch's mean loss; it defaults to `nn.SoftmaxLoss()`.
    """
    loss_fn = loss_fn if loss_fn is not None else nn.SoftmaxLoss()
    training = opt is not None
    if training:  # a step's freed graph is kept for the next step, not faulted in again
        retain_freed_memory()
    model.train() if training else model.eval()
    for X, y in dataloader:
        if training:
            opt.reset_grad()
            logits = model(X)
            loss = loss_fn(logits, y)
            loss.backward()
            if before_step is not None:
                before_step()
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


# -- epochs with hooks -----------------------------------------------------------------------


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch's numbers: mean loss per sample and accuracy, on both splits."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float
    lr: float | None = None  # the learning rate of the epoch's last step (None: not recorded)

    # A language model's loss is per token; its perplexity, exp(loss), is the number of
    # tokens it is as unsure between as a uniform guess would be.
    @property
    def train_perplexity(self) -> float:
        return perplexity(self.train_loss)

    @property
    def val_perplexity(self) -> float:
        return perplexity(self.val_loss)


def perplexity(loss: float) -> float:
    """exp(mean loss per token); inf where that overflows a float."""
    return math.exp(loss) if loss < 700 else math.inf


@dataclass
class LoopState:
    """Where `fit` is: what hooks read, and where they ask it to stop.

    To start a run: `LoopState(model, opt, epochs=N, steps=len(train_loader))`. To continue
    one: `epoch` the next epoch, or for a stop inside an epoch that epoch with `step`,
    `totals` and `seconds_before` as they were.
    """

    model: nn.Module
    opt: Optimizer
    epochs: int  # the run ends after this epoch
    steps: int  # training batches per epoch
    epoch: int = 1  # the epoch under way (1-based)
    step: int = 0  # its training batches done
    totals: Totals = field(default_factory=Totals)  # their running sums
    val: Totals = field(default_factory=Totals)  # the validation pass's, once it begins
    history: list[EpochMetrics] = field(default_factory=list)  # the epochs finished
    seconds_before: float = 0.0  # time the epoch under way spent before a resume
    stop_reason: str | None = None  # set by `request_stop`
    began: float = 0.0  # perf_counter() when the epoch under way began (or resumed)

    @property
    def seconds(self) -> float:
        """Time spent on the epoch under way, its validation included."""
        return self.seconds_before + time.perf_counter() - self.began

    def request_stop(self, reason: str) -> None:
        """Ask `fit` to stop, for `reason` (the first request's reason is kept). Asked
        during an epoch's training steps, it stops after the current step; asked on the
        last step, during validation or at an epoch's end, after that epoch. After the
        last epoch there is nothing left to stop: the run ends "completed"."""
        if self.stop_reason is None:
            self.stop_reason = reason


class Hooks:
    """The points of `fit` where other code joins in; each method does nothing here, and a
    hook overrides the ones it needs. Hooks run in the order given to `fit`; any may call
    `state.request_stop(reason)`. An exception from a hook ends the run at once, with no
    `on_stop` (the loss check raises this way)."""

    def on_epoch_start(self, state: LoopState) -> None:
        """Before the epoch's first step (or, resumed inside it, its next step)."""

    def on_backward(self, state: LoopState) -> None:
        """Between a training step's backward pass and its update: each parameter's `.grad`
        holds the batch's gradient, which a hook may replace (gradient clipping does)."""

    def on_step(self, state: LoopState, batch: BatchResult) -> None:
        """After each training step; `state.step` and `state.totals` include it."""

    def on_validate_step(self, state: LoopState, batch: BatchResult) -> None:
        """After each batch of the validation pass; `state.val` includes it."""

    def on_evaluate(self, state: LoopState, val: Totals) -> None:
        """After the validation pass that ends each epoch, with its sums."""

    def on_epoch_end(self, state: LoopState, metrics: EpochMetrics) -> None:
        """After each epoch; `metrics` is its row, now last in `state.history`."""

    def on_stop(self, state: LoopState, reason: str) -> None:
        """Once, as the run ends: `reason` is "completed" or what `request_stop` was given.
        A stop inside an epoch leaves `state.step < state.steps`."""


def fit(
    train_loader: Iterable[tuple[Tensor, ...]],
    val_loader: Iterable[tuple[Tensor, ...]],
    state: LoopState,
    hooks: Sequence[Hooks] = (),
    *,
    rest: Iterable[tuple[Tensor, ...]] | None = None,
) -> LoopState:
    """Train from `state` to the end of epoch `state.epochs`, or until a hook asks to stop:
    each epoch is a pass over `train_loader` with `state.opt`, then one over `val_loader`
    without it. `rest` is the remaining batches of `state.epoch` when `state` stops inside
    it (`state.step > 0`). Returns `state`, as the run ended."""
    model, opt = state.model, state.opt

    def backward_done() -> None:
        for hook in hooks:
            hook.on_backward(state)

    for epoch in range(state.epoch, state.epochs + 1):
        if epoch > state.epoch or not state.step:
            state.epoch, state.step, state.totals, state.seconds_before = epoch, 0, Totals(), 0.0
            batches = train_loader
        else:
            batches = rest if rest is not None else train_loader
        state.val = Totals()
        state.began = time.perf_counter()
        for hook in hooks:
            hook.on_epoch_start(state)
        lr = None
        for batch in run_batches(batches, model, opt, before_step=backward_done):
            lr = getattr(opt, "lr", None)  # the rate this step used, before a hook changes it
            state.step += 1
            state.totals.add(batch)
            for hook in hooks:
                hook.on_step(state, batch)
            if state.stop_reason is not None and state.step < state.steps:
                return _stop(state, hooks, state.stop_reason)
        for batch in run_batches(val_loader, model):
            state.val.add(batch)
            for hook in hooks:
                hook.on_validate_step(state, batch)
        for hook in hooks:
            hook.on_evaluate(state, state.val)
        t, v = state.totals, state.val
        metrics = EpochMetrics(epoch, t.loss, t.accuracy, v.loss, v.accuracy, state.seconds, lr)
        state.history.append(metrics)
        for hook in hooks:
            hook.on_epoch_end(state, metrics)
        if state.stop_reason is not None and epoch < state.epochs:
            return _stop(state, hooks, state.stop_reason)
    return _stop(state, hooks, "completed")


def _stop(state: LoopState, hooks: Sequence[Hooks], reason: str) -> LoopState:
    for hook in hooks:
        hook.on_stop(state, reason)
    return state
