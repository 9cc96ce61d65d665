"""Learning-rate schedules: the rate as a function of how far training has gone.

A schedule is made from the optimizer's base rate `lr`, the run's length (`epochs` of `steps`
batches each) and its own keyword settings; `lr_at(epoch, step)` is the rate for the step that
comes after `epoch` whole epochs and `step` batches of the next one (both counted from 0).
Nothing else is kept, so a schedule needs no state to resume: the same position gives the same
rate. Per-epoch schedules (`StepLR`, `MultiStepLR`) ignore `step`; per-step ones (`CosineLR`,
`OneCycleLR`) count `t = epoch · steps + step` steps done out of `T = epochs · steps`.

    >>> schedule = StepLR(0.1, epochs=9, steps=100, step_size=3, gamma=0.5)
    >>> [schedule.lr_at(e) for e in (0, 2, 3, 8)]
    [0.1, 0.1, 0.05, 0.025]
    >>> opt.lr = schedule.lr_at(epoch, step)  # before each step  # doctest: +SKIP

The names and settings follow PyTorch's `torch.optim.lr_scheduler`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from needle.errors import UsageError


class Schedule:
    """The constant rate `lr`; subclasses vary it. `epochs` and `steps` (batches per epoch)
    are the run's length."""

    per_step = False  # whether the rate changes inside an epoch

    def __init__(self, lr: float, epochs: int, steps: int) -> None:
        if lr <= 0 or epochs < 1 or steps < 1:
            raise UsageError(
                f"a schedule needs lr > 0, epochs ≥ 1 and steps ≥ 1 (got {lr}, {epochs}, {steps})"
            )
        self.lr, self.epochs, self.steps = lr, epochs, steps

    def lr_at(self, epoch: int, step: int = 0) -> float:
        """The rate of the step after `epoch` epochs and `step` batches of the next one."""
        return self.lr

    def _t(self, epoch: int, step: int) -> int:
        return epoch * self.steps + step


class Constant(Schedule):
    """lr, throughout."""


class StepLR(Schedule):
    """Multiplied by `gamma` after every `step_size` epochs, per epoch:

    lr_e = lr · gamma^⌊e / step_size⌋        (e: epochs done)
    """

    def __init__(
        self, lr: float, epochs: int, steps: int, step_size: int = 10, gamma: float = 0.1
    ) -> None:
        super().__init__(lr, epochs, steps)
        self.step_size, self.gamma = step_size, gamma

    def lr_at(self, epoch: int, step: int = 0) -> float:
        return self.lr * self.gamma ** (epoch // self.step_size)


class MultiStepLR(Schedule):
    """Multiplied by `gamma` once at each milestone, per epoch:

        lr_e = lr · gamma^|{m ∈ milestones : m ≤ e}|        (e: epochs done)

    so `milestones=(30, 60)` trains epochs 1–30 at lr, 31–60 at lr·gamma, then lr·gamma².
    """

    def __init__(
        self,
        lr: float,
        epochs: int,
        steps: int,
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
    ) -> None:
        super().__init__(lr, epochs, steps)
        self.milestones, self.gamma = tuple(milestones), gamma

    def lr_at(self, epoch: int, step: int = 0) -> float:
        return self.lr * self.gamma ** sum(m <= epoch for m in self.milestones)


class CosineLR(Schedule):
    """A linear warm-up over W steps, then half a cosine from lr down to `min_lr`, per step
    (Loshchilov & Hutter, 2017, "SGDR", without restarts; the warm-up as in Goyal et al., 2017):

        W = warmup_steps + warmup_epochs · steps
        t < W:  lr_t = lr · (t + 1) / W
        t ≥ W:  lr_t = min_lr + (lr − min_lr) · (1 + cos(π · (t − W) / (T − W))) / 2

    The warm-up's first step already moves (at lr/W); the last step of the run is just above
    min_lr. With no warm-up (the default) it is PyTorch's CosineAnnealingLR over T steps.
    """

    per_step = True

    def __init__(
        self,
        lr: float,
        epochs: int,
        steps: int,
        warmup_epochs: int = 0,
        warmup_steps: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        super().__init__(lr, epochs, steps)
        self.warmup = warmup_steps + warmup_epochs * steps
        self.min_lr = min_lr

    def lr_at(self, epoch: int, step: int = 0) -> float:
        t, total, warmup = self._t(epoch, step), self.epochs * self.steps, self.warmup
        if t < warmup:
            return self.lr * ((t + 1) / warmup)  # exactly lr as the warm-up ends
        progress = min(1.0, (t - warmup) / max(1, total - warmup))
        return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2


class OneCycleLR(Schedule):
    """The 1cycle policy (Smith & Topin, 2018, "Super-Convergence"), per step, as PyTorch's
    OneCycleLR with cosine annealing: up from max_lr/div_factor to max_lr over the first
    `pct_start` of the T steps, then down to max_lr/(div_factor · final_div_factor):

        start = max_lr / div_factor,   end = start / final_div_factor
        P = pct_start · T − 1                        (the step at the peak)
        t ≤ P:  lr_t = cos_anneal(start, max_lr, t / P)
        t > P:  lr_t = cos_anneal(max_lr, end, (t − P) / (T − 1 − P))
        cos_anneal(a, b, x) = b + (a − b) · (1 + cos(π · x)) / 2

    `max_lr` defaults to the optimizer's lr.
    """

    per_step = True

    def __init__(
        self,
        lr: float,
        epochs: int,
        steps: int,
        max_lr: float | None = None,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ) -> None:
        super().__init__(lr, epochs, steps)
        self.max_lr = max_lr if max_lr is not None else lr
        self.pct_start, self.div_factor = pct_start, div_factor
        self.final_div_factor = final_div_factor

    def lr_at(self, epoch: int, step: int = 0) -> float:
        t, total = self._t(epoch, step), self.epochs * self.steps
        start = self.max_lr / self.div_factor
        end = start / self.final_div_factor
        peak = self.pct_start * total - 1
        if peak > 0 and t <= peak:
            return _cos_anneal(start, self.max_lr, t / peak)
        rest = total - 1 - peak
        return _cos_anneal(self.max_lr, end, min(1.0, (t - peak) / rest) if rest > 0 else 1.0)


def _cos_anneal(a: float, b: float, x: float) -> float:
    """From a (x = 0) to b (x = 1) along half a cosine."""
    return b + (a - b) * (1 + math.cos(math.pi * x)) / 2
