"""Per-layer statistics of a run (`train.log_stats: true`), measured once per epoch.

For every layer with parameters of its own (a linear, conv or norm layer; the parameters of
the layers inside a residual block belong to those layers), at the epoch's last training step:

    weight_norm    √(Σ w²) over the layer's parameters (weight and bias together), after the
                   step's update: the weights the epoch ends with
    grad_norm      √(Σ g²) over the same parameters' gradients of that step, as the backward
                   pass left them (before `train.clip_grad_norm` scales them)
    update_ratio   ‖w_after − w_before‖ / ‖w_before‖ for that step's update: how far one step
                   moves the layer relative to its size (around 1e-3 is the usual sign of a
                   healthy learning rate; much larger, too high; much smaller, too low)

and for every ReLU layer

    dead_relu      the fraction of its units that put out 0 for every sample of the epoch's
                   last training batch; a unit is one value of the output per sample (a
                   feature of a dense layer, a channel at one position of a conv's)

All four come from the epoch's last step alone, so that a run stopped inside an epoch and
resumed measures that step exactly as a run never stopped would, with nothing to keep in the
checkpoint. A number that cannot be formed (the ratio of an all-zero layer) is None.

The hook only reads: it draws no random numbers and changes no value, so a run logs the same
losses and weights with it as without. Off (the default), it is not in the loop at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from needle import nn
from needle.train.loop import BatchResult, EpochMetrics, Hooks, LoopState

Stats = dict[str, dict[str, float | None]]  # layer name → statistic → value


def own_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Module path → the parameters it holds itself, not through a module inside it, for
    every module that holds any (in `named_modules` order)."""
    layers: dict[str, list[nn.Parameter]] = {}
    for name, module in model.named_modules():
        inside = {id(p) for child in module.children() for p in child.parameters()}
        own = [p for p in module.parameters() if id(p) not in inside]
        if own:
            layers[name or "model"] = own
    return layers


def norm(arrays: list[np.ndarray]) -> float:
    """√(Σ x²) over every element of `arrays`, in float64."""
    return math.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in arrays))


def dead_fraction(output: np.ndarray) -> float:
    """The fraction of units (values per sample; axis 0 is the batch) that are 0 in every
    sample of `output`."""
    alive = np.any(output.reshape(len(output), -1) != 0, axis=0)
    return np.count_nonzero(~alive) / alive.size


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class LayerStats(Hooks):
    """The hook that measures `Stats` at each epoch's last step (see the module docstring)
    and keeps them by epoch in `by_epoch`, which the run folder writes into metrics.jsonl."""

    def __init__(self, model: nn.Module, by_epoch: dict[int, Stats] | None = None) -> None:
        self.layers = own_parameters(model)
        self.relus = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
        self.by_epoch: dict[int, Stats] = dict(by_epoch or {})
        self.capturing = False  # the next training step is the epoch's last
        self.grads: dict[str, float] = {}
        self.before: dict[str, list[np.ndarray]] = {}
        self.dead: dict[str, float] = {}
        for name, relu in self.relus:
            relu.forward = self._watch(name, relu)  # an instance attribute; removed on_stop

    def _watch(self, name: str, relu: nn.ReLU) -> Callable[[Any], Any]:
        forward = type(relu).forward.__get__(relu)

        def watched(x: Any) -> Any:
            out = forward(x)
            if self.capturing and relu.training:
                self.dead[name] = dead_fraction(out.numpy())
            return out

        return watched

    def on_epoch_start(self, state: LoopState) -> None:
        self.capturing = state.step == state.steps - 1
        self.dead = {}

    def on_backward(self, state: LoopState) -> None:
        if state.step != state.steps - 1:  # counted after the update: this is the last step
            return
        for name, params in self.layers.items():
            grads = [p.grad.numpy() for p in params if p.grad is not None]
            self.grads[name] = norm(grads)
            self.before[name] = [p.numpy().copy() for p in params]

    def on_step(self, state: LoopState, batch: BatchResult) -> None:
        self.capturing = state.step == state.steps - 1

    def on_epoch_end(self, state: LoopState, metrics: EpochMetrics) -> None:
        stats: Stats = {}
        for name, params in self.layers.items():
            after = [p.numpy() for p in params]
            before = self.before.get(name)
            moved = norm([a - b for a, b in zip(after, before, strict=True)]) if before else None
            size = norm(before) if before else 0.0
            stats[name] = {
                "weight_norm": norm(after),
                "grad_norm": self.grads.get(name),
                "update_ratio": _finite(moved / size) if moved is not None and size else None,
            }
        for name, _ in self.relus:
            stats[name or "model"] = {"dead_relu": self.dead.get(name)}
        self.by_epoch[metrics.epoch] = stats
        self.grads, self.before = {}, {}

    def on_stop(self, state: LoopState, reason: str) -> None:
        for _, relu in self.relus:
            vars(relu).pop("forward", None)


def read_stats(metrics_jsonl: Path, *, through: int) -> dict[int, Stats]:
    """The `stats` of epochs 1..`through` in a run's metrics.jsonl, by epoch: what a resumed
    run carries on (epochs after `through` are ones the checkpoint does not have). A missing
    or damaged file gives what could be read: statistics are a diagnosis, never the run."""
    found: dict[int, Stats] = {}
    try:
        lines = metrics_jsonl.read_text(encoding="utf-8").splitlines()
    except OSError:
        return found
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("stats"), dict):
            epoch = row.get("epoch")
            if isinstance(epoch, int) and 1 <= epoch <= through:
                found[epoch] = row["stats"]
    return found
