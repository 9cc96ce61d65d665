"""Checkpoints: everything needed to continue a run exactly, as an .npz of plain arrays.

A checkpoint holds the parameters (and batch-norm statistics), the optimizer's state, numpy's
RNG state, the epochs done and their metrics, the run's resolved config, the statistics that
scaled its features (`data.normalize`) and, for a stop in the middle of an epoch, that epoch's
RNG state and running sums, the best epoch so far (`early_stopping.Monitor`'s state) and, for
a language model, its vocabulary (the words of its token ids).
It is written atomically
(`needle.fileio.atomic_writer`) and read with pickles refused; every part is checked when it is
loaded, so a damaged or tampered file fails there and not half-way into training.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from needle import nn
from needle.errors import UsageError
from needle.fileio import atomic_writer, read_npz
from needle.train.loop import EpochMetrics  # what the loop measures, stored with the state
from needle.train.normalize import NORMALIZATIONS, Normalization

CHECKPOINT_FORMAT = "needle-checkpoint/1"


@dataclass
class Checkpoint:
    """Everything needed to continue a run exactly."""

    model: dict[str, np.ndarray]
    optimizer: dict[str, Any]  # Optimizer.state_dict()
    optimizer_name: str
    rng: tuple  # np.random.get_state()
    epoch: int  # epochs completed
    step: int = 0  # batches done in epoch + 1 (a mid-epoch stop), else 0
    epoch_rng: tuple | None = None  # RNG state when epoch + 1 started (mid-epoch only)
    partial: dict[str, float] = field(default_factory=dict)  # running sums of epoch + 1
    history: list[EpochMetrics] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # config_data() of the run
    in_features: int = 0  # the values in one sample (sample_shape's product)
    num_classes: int = 0
    normalization: Normalization | None = None  # statistics of data.normalize, if any
    # The data's shape of one sample, (1, 28, 28) for MNIST; a checkpoint from before images
    # kept their shape has none stored and reads as (in_features,).
    sample_shape: tuple[int, ...] = ()
    monitor: dict[str, Any] = field(default_factory=dict)  # early_stopping.Monitor.state()
    # a language model's carried hidden states at a mid-epoch stop (LanguageModel.carried_state)
    carried: dict[str, np.ndarray] = field(default_factory=dict)
    # a language model's words by token id (Data.vocabulary), for `needle predict --prompt`;
    # () for a classifier, and for a language model's checkpoint from before it was kept
    vocabulary: tuple[str, ...] = ()


def _rng_arrays(prefix: str, state: tuple, arrays: dict, meta: dict) -> None:
    kind, keys, pos, has_gauss, cached = state
    arrays[f"{prefix}/keys"] = np.asarray(keys, dtype=np.uint32)
    meta[prefix] = {
        "kind": kind,
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _rng_state(prefix: str, arrays: Any, meta: dict) -> tuple:
    info = meta[prefix]
    keys = np.asarray(arrays[f"{prefix}/keys"], dtype=np.uint32)
    state = (info["kind"], keys, info["pos"], info["has_gauss"], info["cached_gaussian"])
    try:
        np.random.RandomState().set_state(state)  # the check numpy makes when resuming
    except (LookupError, TypeError, ValueError) as err:
        raise ValueError(f"'{prefix}' is not a numpy RNG state: {err}") from None
    return state


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` as an .npz of plain arrays (no pickles), atomically."""
    arrays: dict[str, np.ndarray] = {"format": np.array(CHECKPOINT_FORMAT)}
    meta: dict[str, Any] = {
        "epoch": checkpoint.epoch,
        "step": checkpoint.step,
        "partial": checkpoint.partial,
        "optimizer_name": checkpoint.optimizer_name,
        "optimizer_scalars": {},
        "history": [asdict(m) for m in checkpoint.history],
        "config": checkpoint.config,
        "in_features": checkpoint.in_features,
        "sample_shape": list(checkpoint.sample_shape or (checkpoint.in_features,)),
        "num_classes": checkpoint.num_classes,
        "monitor": checkpoint.monitor,
    }
    if checkpoint.vocabulary:
        meta["vocabulary"] = list(checkpoint.vocabulary)
    for name, array in checkpoint.model.items():
        arrays[f"model/{name}"] = array
    for name, array in checkpoint.carried.items():
        arrays[f"carried/{name}"] = array
    for name, value in checkpoint.optimizer.items():
        if isinstance(value, dict):
            for index, array in value.items():
                arrays[f"optim/{name}/{index}"] = array
        else:
            meta["optimizer_scalars"][name] = value
    _rng_arrays("rng", checkpoint.rng, arrays, meta)
    if checkpoint.epoch_rng is not None:
        _rng_arrays("epoch_rng", checkpoint.epoch_rng, arrays, meta)
    if checkpoint.normalization is not None:
        meta["normalize"] = checkpoint.normalization.kind
        arrays["normalize/shift"] = checkpoint.normalization.shift
        arrays["normalize/scale"] = checkpoint.normalization.scale
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_writer(path) as f:
        np.savez(f, **arrays)


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`; pickles are refused. A missing, damaged,
    foreign or tampered file raises UsageError saying which."""
    path = Path(path)
    arrays = read_npz(path, what="checkpoint")
    if "format" not in arrays or str(arrays["format"]) != CHECKPOINT_FORMAT:
        raise UsageError(f"'{path}' is not a needle checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    try:
        return _parse_checkpoint(arrays)
    except (KeyError, TypeError, ValueError, RecursionError) as err:
        reason = f"no entry {err}" if isinstance(err, KeyError) else str(err)
        raise UsageError(f"checkpoint '{path}' is corrupt or incomplete ({reason})") from None


def _parse_checkpoint(arrays: dict[str, np.ndarray]) -> Checkpoint:
    """The Checkpoint in `arrays`, every part checked, so that a tampered file fails here and
    not half-way into training. Raises KeyError, TypeError or ValueError."""
    meta = json.loads(str(arrays["meta"]))
    if not isinstance(meta, dict):
        raise ValueError("its metadata is not a JSON object")
    model: dict[str, np.ndarray] = {}
    optimizer: dict[str, Any] = {}
    carried: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        kind, _, rest = name.partition("/")
        if kind not in ("model", "optim", "carried"):
            continue
        if array.dtype.kind not in "biuf" or not np.isfinite(array).all():
            raise ValueError(f"array '{name}' must hold finite numbers")
        if kind == "model":
            model[rest] = array
        elif kind == "carried":
            carried[rest] = array
        else:
            buffer, _, index = rest.rpartition("/")
            optimizer.setdefault(buffer, {})[int(index)] = array
    optimizer.update(_numbers(meta["optimizer_scalars"], "optimizer_scalars"))
    step = _count(meta, "step")
    epoch_rng = _rng_state("epoch_rng", arrays, meta) if "epoch_rng" in meta else None
    partial = _numbers(meta["partial"], "partial")
    if step and (epoch_rng is None or not {"loss_sum", "correct", "size"} <= partial.keys()):
        raise ValueError("it stopped inside an epoch but lacks that epoch's state")
    history = meta["history"]
    if not isinstance(history, list):
        raise ValueError("its history is not a list of epochs")
    if not isinstance(meta["config"], dict):
        raise ValueError("its stored config is not a mapping")
    return Checkpoint(
        model=model,
        optimizer=optimizer,
        optimizer_name=str(meta["optimizer_name"]),
        rng=_rng_state("rng", arrays, meta),
        epoch=_count(meta, "epoch"),
        step=step,
        epoch_rng=epoch_rng,
        partial=partial,
        history=[EpochMetrics(**_numbers(row, f"history[{i}]")) for i, row in enumerate(history)],
        config=meta["config"],
        in_features=_count(meta, "in_features", least=1),
        num_classes=_count(meta, "num_classes", least=1),
        normalization=_normalization(arrays, meta),
        sample_shape=_sample_shape(meta),
        monitor=_monitor(meta.get("monitor", {})),  # absent from checkpoints before it
        carried=carried,
        vocabulary=_vocabulary(meta),
    )


def _vocabulary(meta: dict) -> tuple[str, ...]:
    """The stored words, distinct strings as many as num_classes; () when none is stored."""
    words = meta.get("vocabulary", [])
    if words == []:
        return ()
    if not (isinstance(words, list) and all(isinstance(w, str) for w in words)):
        raise ValueError("its vocabulary must be a list of words")
    if len(words) != meta["num_classes"] or len(set(words)) != len(words):
        raise ValueError(
            f"its vocabulary must hold num_classes={meta['num_classes']} distinct words "
            f"(got {len(words)}, {len(set(words))} distinct)"
        )
    return tuple(words)


def _sample_shape(meta: dict) -> tuple[int, ...]:
    """The stored sample shape, its values as many as `in_features`; (in_features,) for a
    checkpoint written before the field existed."""
    shape = meta.get("sample_shape", [meta["in_features"]])
    if not (
        isinstance(shape, list)
        and shape
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
        and math.prod(shape) == meta["in_features"]
    ):
        raise ValueError(
            f"sample_shape must be sizes ≥ 1 whose product is in_features={meta['in_features']} "
            f"(got {shape!r})"
        )
    return tuple(shape)


def _monitor(state: Any) -> dict[str, Any]:
    """The best epoch's record, checked: empty, or a metric, a mode and three numbers."""
    if state == {}:
        return state
    if not isinstance(state, dict) or set(state) != {
        "metric",
        "mode",
        "best",
        "best_epoch",
        "since",
    }:
        raise ValueError("its monitor must hold metric, mode, best, best_epoch and since")
    if not (isinstance(state["metric"], str) and isinstance(state["mode"], str)):
        raise ValueError("its monitor's metric and mode must be names")
    _numbers({"best": state["best"]}, "monitor")
    _count(state, "best_epoch", least=1)
    _count(state, "since")
    return state


def _normalization(arrays: dict[str, np.ndarray], meta: dict) -> Normalization | None:
    """The saved statistics of data.normalize, checked against the stored config."""
    data = meta["config"].get("data")
    wanted = data.get("normalize", "none") if isinstance(data, dict) else "none"
    kind = meta.get("normalize", "none")
    if kind != wanted:
        raise ValueError(
            f"its config asks for data.normalize: {wanted} but it holds statistics for {kind}"
        )
    if kind == "none":
        return None
    if kind not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {kind!r}")
    shift, scale = arrays["normalize/shift"], arrays["normalize/scale"]
    for name, array in (("shift", shift), ("scale", scale)):
        if array.dtype.kind != "f" or array.shape != (meta["in_features"],):
            raise ValueError(
                f"normalize/{name} must hold {meta['in_features']} numbers, one per feature"
            )
    if not (np.isfinite(shift).all() and np.isfinite(scale).all() and (scale > 0).all()):
        raise ValueError("the normalization statistics must be finite, every scale > 0")
    return Normalization(kind, shift, scale)


def _count(meta: dict, key: str, *, least: int = 0) -> int:
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{key} must be a whole number ≥ {least} (got {value!r})")
    return value


def _numbers(table: Any, what: str) -> dict[str, float]:
    if not isinstance(table, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in table.values()
    ):
        raise ValueError(f"{what} must map names to finite numbers")
    return table


def check_fits(
    checkpoint: Checkpoint, model: nn.Module, optimizer_name: str, where: str, config_label: str
) -> None:
    """Refuse a checkpoint whose tensors do not match the model the config builds."""
    expected = {name: str(array.shape) for name, array in model.state_dict().items()}
    found = {name: str(array.shape) for name, array in checkpoint.model.items()}
    for name in sorted(expected.keys() | found.keys()):
        there, here = found.get(name, "missing"), expected.get(name, "missing")
        if there != here:
            raise UsageError(
                f"checkpoint '{where}' belongs to a different model: tensor '{name}' is "
                f"{there} there but {here} in the model {config_label} describes"
            )
    if checkpoint.optimizer_name != optimizer_name:
        raise UsageError(
            f"checkpoint '{where}' holds {checkpoint.optimizer_name} state but {config_label} "
            f"asks for {optimizer_name}; keep train.optimizer.name: {checkpoint.optimizer_name}"
        )
