"""Gradient clipping by global norm (`train.clip_grad_norm`), as a hook of the one loop."""

from __future__ import annotations

from needle.optim import clip_grad_norm
from needle.train.loop import Hooks, LoopState


class ClipGradNorm(Hooks):
    """Scales each step's gradients to a global norm of at most `max_norm`, between the
    backward pass and the update (`needle.optim.clip_grad_norm`)."""

    def __init__(self, max_norm: float) -> None:
        self.max_norm = max_norm

    def on_backward(self, state: LoopState) -> None:
        clip_grad_norm(state.opt.params, self.max_norm)
