"""Training runs: a folder per run, checkpoints, resume, interruption, evaluation.

`train(config, out=...)` makes a new folder under `out` (never reusing one) holding

    config.yaml      the resolved config (`needle train --resume DIR` needs nothing else)
    metrics.csv      one row per epoch: losses, accuracies, seconds
    metrics.jsonl    the same rows as JSON lines
    checkpoint.npz   the latest state: parameters, optimizer state, RNG state, epoch, history
    summary.json     status and final numbers, rewritten as the run goes

and trains with `needle.train.run_batches`, the one training loop. Every file is written to a
temporary name and renamed into place (`needle.fileio`), so killing the process at any moment
leaves the previous checkpoint whole.

Determinism: the config's seed seeds numpy's global RNG, which then draws the initial weights,
each epoch's shuffle and every dropout mask, in that order. A checkpoint keeps the RNG state
with the parameters, so `resume` continues the same stream: 2 epochs and a resume to 4 give
bit-identical parameters to 4 epochs straight. A stop in the middle of an epoch (Ctrl-C,
SIGTERM) also keeps the RNG state from the epoch's start, so the resumed epoch redraws the same
shuffle, skips the finished batches and goes on exactly as it would have.
"""

from __future__ import annotations

import contextlib
import json
import math
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from needle import nn, optim
from needle.build import LayerSummary, build_model, plan_model
from needle.config import (
    GENERATED,
    KeyPath,
    SourceMap,
    TrainConfig,
    config_data,
    config_to_yaml,
    load_config,
    parse_key_path,
    validate_config,
)
from needle.data import DataLoader, NDArrayDataset
from needle.datasets import Data, Split, load_data, load_path
from needle.errors import NeedleError, UsageError
from needle.fileio import TEMP_PREFIX, atomic_writer, read_npz, write_text
from needle.train import Totals, run_batches

CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "checkpoint.npz"
METRICS_CSV = "metrics.csv"
METRICS_JSONL = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FORMAT = "needle-checkpoint/1"

METRIC_FIELDS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")


class TrainingDiverged(NeedleError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


# -- what a run reports ----------------------------------------------------------------------


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch's numbers: mean loss per sample and accuracy, on both splits."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclass(frozen=True)
class RunStart:
    """Sent once before the first step."""

    run_dir: Path
    config: TrainConfig
    data: Data
    epoch: int  # the first epoch this session trains (1-based)
    step: int  # batches of that epoch already done (a mid-epoch resume)
    epochs: int
    steps: int  # batches per epoch
    resumed: bool


@dataclass(frozen=True)
class Progress:
    """Sent after every batch of `phase`: "train", a training step of `epoch`, or "validate",
    a batch of the validation pass that ends it. `step` of `steps` counts that phase's
    batches, `samples` is this batch's size, loss and accuracy are running means over the
    phase so far."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    accuracy: float
    samples: int
    phase: str


@dataclass
class Callbacks:
    """Hooks a front end sets to show progress; each is optional. `on_step` gets each
    training step, `on_validate` each batch of the validation pass that ends an epoch."""

    on_start: Callable[[RunStart], None] | None = None
    on_step: Callable[[Progress], None] | None = None
    on_validate: Callable[[Progress], None] | None = None
    on_epoch: Callable[[EpochMetrics], None] | None = None


@dataclass(frozen=True)
class RunResult:
    """How a run (or a session of it) ended."""

    run_dir: Path
    status: str  # "completed" or "interrupted"
    epochs: int  # epochs completed
    total_epochs: int  # epochs the config asks for
    history: list[EpochMetrics]
    checkpoint: Path
    stopped_at: tuple[int, int] | None = None  # (epoch, step) of an interruption
    signum: int | None = None  # the signal that interrupted it

    @property
    def last(self) -> EpochMetrics | None:
        return self.history[-1] if self.history else None

    @property
    def resume_command(self) -> str:
        return resume_command(self.run_dir)

    @property
    def seconds(self) -> float:
        """Training time over the epochs completed."""
        return sum(m.seconds for m in self.history)

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON-ready data (also written to summary.json)."""
        last = self.last
        return {
            "run_dir": str(self.run_dir),
            "status": self.status,
            "epochs": self.epochs,
            "total_epochs": self.total_epochs,
            "train_loss": last.train_loss if last else None,
            "train_accuracy": last.train_accuracy if last else None,
            "val_loss": last.val_loss if last else None,
            "val_accuracy": last.val_accuracy if last else None,
            "seconds": self.seconds,
            "checkpoint": str(self.checkpoint),
            "stopped_at": list(self.stopped_at) if self.stopped_at else None,
        }


def resume_command(run_dir: Path) -> str:
    """The shell command that continues the run in `run_dir`."""
    return f"needle train --resume {shlex.quote(str(run_dir))}"


# -- stopping on Ctrl-C, SIGTERM and SIGHUP -------------------------------------------------

# SIGHUP (the terminal closed) stops a run like SIGTERM, where the platform has it.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@dataclass
class StopFlag:
    """Set by a signal handler (or a test); the run checks it after every step. `forced` is
    a second signal's number: it stopped the run at once (KeyboardInterrupt)."""

    signum: int | None = None
    forced: int | None = None

    def request(self, signum: int = signal.SIGINT) -> None:
        if self.signum is None:
            self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def stop_on_signals(
    flag: StopFlag, *, on_signal: Callable[[int], None] | None = None
) -> Iterator[StopFlag]:
    """While active, each of STOP_SIGNALS asks the run to stop after the current step (it
    then writes a checkpoint); a second signal stops at once with KeyboardInterrupt, which
    still leaves the previous checkpoint whole. `on_signal(signum)` is called on every signal,
    after the flag is set and before that KeyboardInterrupt, so a front end can say what will
    happen. Outside the main thread, signals cannot be caught: the flag is returned untouched."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        first = not flag.requested
        if first:
            flag.request(signum)
        else:
            flag.forced = signum
        if on_signal is not None:
            on_signal(signum)
        if not first:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# -- checkpoints -----------------------------------------------------------------------------


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
    in_features: int = 0
    num_classes: int = 0


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
        "num_classes": checkpoint.num_classes,
    }
    for name, array in checkpoint.model.items():
        arrays[f"model/{name}"] = array
    for name, value in checkpoint.optimizer.items():
        if isinstance(value, dict):
            for index, array in value.items():
                arrays[f"optim/{name}/{index}"] = array
        else:
            meta["optimizer_scalars"][name] = value
    _rng_arrays("rng", checkpoint.rng, arrays, meta)
    if checkpoint.epoch_rng is not None:
        _rng_arrays("epoch_rng", checkpoint.epoch_rng, arrays, meta)
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
    for name, array in arrays.items():
        kind, _, rest = name.partition("/")
        if kind not in ("model", "optim"):
            continue
        if array.dtype.kind not in "biuf" or not np.isfinite(array).all():
            raise ValueError(f"array '{name}' must hold finite numbers")
        if kind == "model":
            model[rest] = array
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
    )


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


def _check_fits(
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


# -- the pieces of a run ---------------------------------------------------------------------


OPTIMIZER_CLASSES = {"sgd": optim.SGD, "adam": optim.Adam}


@dataclass
class Session:
    """A config made real: data, model, optimizer and loaders."""

    config: TrainConfig
    data: Data
    model: nn.Sequential
    plan: list[LayerSummary]  # the model, a row per layer (`build.plan_model`)
    optimizer: optim.Optimizer
    train_loader: DataLoader
    val_loader: DataLoader

    @property
    def parameter_count(self) -> int:
        return sum(row.params for row in self.plan if row.depth == 0)

    def checkpoint(
        self, epoch: int, history: Sequence[EpochMetrics], config: dict[str, Any], **extra: Any
    ) -> Checkpoint:
        """The session's state now (parameters, optimizer, RNG) after `epoch` epochs;
        `config` is `config_data(self.config)`, made once by the caller."""
        return Checkpoint(
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            optimizer_name=self.config.train.optimizer.name,
            rng=np.random.get_state(),
            epoch=epoch,
            history=list(history),
            config=config,
            in_features=self.data.in_features,
            num_classes=self.data.num_classes,
            **extra,
        )


def prepare(config: TrainConfig) -> Session:
    """Load the data and build the model and optimizer, checking that everything fits, before
    anything is written. Seeds numpy's global RNG with `config.seed` first."""
    generated = config.data.dataset in GENERATED
    with _memory_for(config, ("data", "samples" if generated else "path"), "the data"):
        data = load_data(config)
    np.random.seed(config.seed)
    model, plan = _build_model(config, data.in_features, data.num_classes)
    spec = config.train.optimizer
    optimizer = OPTIMIZER_CLASSES[spec.name](model.parameters(), **spec.arguments())
    batch = config.train.batch_size
    train_loader = DataLoader(
        NDArrayDataset(data.train.X, data.train.y),
        batch_size=batch,
        shuffle=config.train.shuffle,
    )
    val_loader = DataLoader(NDArrayDataset(data.val.X, data.val.y), batch_size=batch)
    return Session(config, data, model, plan, optimizer, train_loader, val_loader)


@contextlib.contextmanager
def _memory_for(config: TrainConfig, at: KeyPath, what: str) -> Iterator[None]:
    """Report running out of memory while making `what` at the config key that asked for it;
    a run-time failure (exit 1), since the same config may fit a bigger machine."""
    try:
        yield
    except MemoryError as err:
        detail = f" ({err})" if str(err) else ""
        raise NeedleError(str(config.error(at, f"not enough memory for {what}{detail}"))) from None


def _build_model(
    config: TrainConfig, in_features: int, num_classes: int
) -> tuple[nn.Sequential, list[LayerSummary]]:
    """`build_model` and its plan, with running out of memory reported at the largest layer."""
    rows = plan_model(config, in_features, num_classes)
    total = sum(row.params for row in rows if row.depth == 0)
    largest = max((row for row in rows if row.layer != "residual"), key=lambda row: row.params)
    at: KeyPath = ("model", "layers")
    for depth, index in enumerate(largest.index.split(".")):  # "3.1": layer 1 of block 3
        at += (("residual", "layers") if depth else ()) + (int(index),)
    if largest.layer == "linear":
        at += ("linear", "out_features")
    what = f"a model of {total:,} parameters, {largest.params:,} of them in this layer"
    with _memory_for(config, at, what):
        return build_model(config, in_features, num_classes), rows


def _skip_batches(loader: DataLoader, done: int, rng: tuple) -> Iterator:
    """The rest of an epoch stopped after `done` batches: the caller has restored the RNG to
    the epoch's start, so iterating redraws the same shuffle; the finished batches are
    skipped, then the RNG is set to where the stop left it."""
    batches = iter(loader)
    for _ in range(done):
        next(batches)
    np.random.set_state(rng)
    yield from batches


def new_run_dir(out: Path, name: str) -> Path:
    """A fresh folder `out/name-N`, N one past the highest in use; never an existing one."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NeedleError(f"cannot create the runs folder '{out}': {err.strerror}") from None
    taken = [p.name[len(name) + 1 :] for p in out.glob(f"{name}-*")]
    n = max((int(t) for t in taken if t.isdigit()), default=0) + 1
    while True:
        candidate = out / f"{name}-{n}"
        try:
            candidate.mkdir()  # atomic: two runs started at once get different folders
            return candidate
        except FileExistsError:
            n += 1
        except OSError as err:
            raise NeedleError(f"cannot create run folder '{candidate}': {err.strerror}") from None


def _write_metrics(run_dir: Path, history: Sequence[EpochMetrics]) -> None:
    lines = [",".join(METRIC_FIELDS)]
    lines += [",".join(repr(getattr(m, f)) for f in METRIC_FIELDS) for m in history]
    write_text(run_dir / METRICS_CSV, "\n".join(lines) + "\n")
    write_text(run_dir / METRICS_JSONL, "".join(json.dumps(asdict(m)) + "\n" for m in history))


def _write_summary(result: RunResult, extra: dict[str, Any] | None = None) -> None:
    summary = {**result.to_json(), **(extra or {})}
    write_text(result.run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")


def _write_config(run_dir: Path, config: TrainConfig) -> None:
    header = (
        "# The resolved config of this run, written by `needle train`.\n"
        f"# Continue it with: {resume_command(run_dir)}\n"
    )
    write_text(run_dir / CONFIG_FILE, header + config_to_yaml(config))


# -- training --------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    *,
    out: str | Path = "runs",
    name: str = "run",
    callbacks: Callbacks | None = None,
    stop: StopFlag | None = None,
) -> RunResult:
    """Train `config` in a new folder `out/name-N`; see the module docstring for its files.

    Returns when the run completes or a stop is requested (`stop.request()`, as Ctrl-C does):
    then a checkpoint of the state after the current step is written first. Raises
    TrainingDiverged if the loss becomes NaN or infinite.
    """
    session = prepare(config)
    run_dir = new_run_dir(Path(out), name)
    _write_config(run_dir, config)
    start = session.checkpoint(0, [], config_data(config))
    save_checkpoint(run_dir / CHECKPOINT_FILE, start)
    return _run(session, run_dir, start, callbacks or Callbacks(), stop or StopFlag(), False)


def resume(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    *,
    callbacks: Callbacks | None = None,
    stop: StopFlag | None = None,
) -> RunResult:
    """Continue the run in `run_dir` from its checkpoint, up to its config's epochs.

    `overrides` (`train.*` settings only, such as `train.epochs=10` to train further or
    `train.optimizer.lr=0.001` after a divergence) are validated and saved into the run's
    config.yaml.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if run_dir.is_file():
        raise UsageError(
            f"'{run_dir}' is a file; --resume takes a run folder, such as runs/quickstart-1 "
            "(to start a run from a config: needle train CONFIG)"
        )
    if not run_dir.is_dir():
        raise UsageError(f"run folder '{run_dir}' not found")
    if not config_path.is_file():
        raise UsageError(f"'{run_dir}' is not a run folder: it has no {CONFIG_FILE}")
    for override in overrides:
        path = parse_key_path(override.partition("=")[0].strip(), label=f"--set {override}")
        if path[:1] != ("train",) or len(path) < 2:
            raise UsageError(
                f"--set {override}: a resumed run can change train.* settings only; "
                "start a new run to change the data or the model"
            )
    config = load_config(config_path, overrides)
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE)
    session = prepare(config)
    _check_fits(
        checkpoint,
        session.model,
        config.train.optimizer.name,
        str(run_dir / CHECKPOINT_FILE),
        str(config_path),
    )
    total = config.train.epochs
    if checkpoint.step == 0 and checkpoint.epoch >= total:
        raise UsageError(
            f"run '{run_dir}' has already trained {checkpoint.epoch} of train.epochs={total} "
            f"epochs; to train further: {resume_command(run_dir)} --set "
            f"train.epochs={checkpoint.epoch + 10}"
        )
    if checkpoint.step and checkpoint.epoch >= total:
        raise UsageError(
            f"run '{run_dir}' stopped inside epoch {checkpoint.epoch + 1}; "
            f"train.epochs must be at least {checkpoint.epoch + 1} (got {total})"
        )
    if checkpoint.step and checkpoint.config:
        stored = SourceMap(f"the config stored in '{run_dir / CHECKPOINT_FILE}'")
        before = validate_config(checkpoint.config, stored).train
        if (before.batch_size, before.shuffle) != (config.train.batch_size, config.train.shuffle):
            raise UsageError(
                f"run '{run_dir}' stopped inside an epoch; its train.batch_size and "
                "train.shuffle cannot change until that epoch ends"
            )
    session.model.load_state_dict(checkpoint.model)
    try:
        session.optimizer.load_state_dict(checkpoint.optimizer)
    except UsageError as err:
        raise UsageError(
            f"checkpoint '{run_dir / CHECKPOINT_FILE}' is corrupt or incomplete ({err})"
        ) from None
    for leftover in run_dir.glob(f"{TEMP_PREFIX}*"):
        leftover.unlink(missing_ok=True)  # half-written files of a killed process
    if overrides:
        _write_config(run_dir, config)
    checkpoint.config = config_data(config)
    return _run(session, run_dir, checkpoint, callbacks or Callbacks(), stop or StopFlag(), True)


# A diverging run overflows float32 before its loss turns NaN; the loss check reports that
# in one clear message, so numpy's warnings would only be noise.
@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def _run(
    session: Session,
    run_dir: Path,
    state: Checkpoint,
    callbacks: Callbacks,
    stop: StopFlag,
    resumed: bool,
) -> RunResult:
    """The epoch loop shared by `train` and `resume`: continue from `state`."""
    config, model, optimizer = session.config, session.model, session.optimizer
    total, steps = config.train.epochs, len(session.train_loader)
    val_steps = len(session.val_loader)
    checkpoint_path = run_dir / CHECKPOINT_FILE
    history = list(state.history)
    np.random.set_state(state.rng)
    if callbacks.on_start:
        callbacks.on_start(
            RunStart(
                run_dir, config, session.data, state.epoch + 1, state.step, total, steps, resumed
            )
        )

    def result(status: str, epochs: int, **extra: Any) -> RunResult:
        return RunResult(run_dir, status, epochs, total, list(history), checkpoint_path, **extra)

    def tick(epoch: int, step: int, of: int, sums: Totals, samples: int, phase: str) -> None:
        hook = callbacks.on_step if phase == "train" else callbacks.on_validate
        if hook:
            hook(Progress(epoch, total, step, of, sums.loss, sums.accuracy, samples, phase))

    for epoch in range(state.epoch + 1, total + 1):
        totals, step, elapsed = Totals(), 0, 0.0
        if epoch == state.epoch + 1 and state.step:
            np.random.set_state(state.epoch_rng)
            epoch_rng = state.epoch_rng
            batches: Iterable = _skip_batches(session.train_loader, state.step, state.rng)
            totals = Totals(
                state.partial["loss_sum"], int(state.partial["correct"]), int(state.partial["size"])
            )
            step, elapsed = state.step, float(state.partial.get("seconds", 0.0))
        else:
            epoch_rng = np.random.get_state()
            batches = session.train_loader
        began = time.perf_counter()
        for batch in run_batches(batches, model, optimizer):
            step += 1
            if not math.isfinite(batch.loss):
                _diverged(
                    run_dir, config, result("diverged", epoch - 1), batch.loss, epoch, step, steps
                )
            totals.add(batch)
            tick(epoch, step, steps, totals, batch.size, "train")
            if stop.requested and step < steps:
                partial = {
                    "loss_sum": totals.loss_sum,
                    "correct": totals.correct,
                    "size": totals.size,
                    "seconds": elapsed + time.perf_counter() - began,
                }
                stop_state = session.checkpoint(
                    epoch - 1,
                    history,
                    state.config,
                    step=step,
                    epoch_rng=epoch_rng,
                    partial=partial,
                )
                save_checkpoint(checkpoint_path, stop_state)
                stopped = result(
                    "interrupted", epoch - 1, stopped_at=(epoch, step), signum=stop.signum
                )
                _write_summary(stopped)
                return stopped
        val = Totals()
        for val_step, batch in enumerate(run_batches(session.val_loader, model), 1):
            val.add(batch)
            tick(epoch, val_step, val_steps, val, batch.size, "validate")
        metrics = EpochMetrics(
            epoch,
            totals.loss,
            totals.accuracy,
            val.loss,
            val.accuracy,
            elapsed + time.perf_counter() - began,
        )
        history.append(metrics)
        # The checkpoint first: a kill between the two writes leaves metrics one epoch behind
        # (the next epoch rewrites them), never claiming an epoch the checkpoint lacks.
        save_checkpoint(checkpoint_path, session.checkpoint(epoch, history, state.config))
        _write_metrics(run_dir, history)
        if callbacks.on_epoch:
            callbacks.on_epoch(metrics)
        if stop.requested and epoch < total:
            stopped = result("interrupted", epoch, stopped_at=(epoch, steps), signum=stop.signum)
            _write_summary(stopped)
            return stopped
        _write_summary(result("running" if epoch < total else "completed", epoch))
    return result("completed", total)


def _diverged(
    run_dir: Path,
    config: TrainConfig,
    so_far: RunResult,
    loss: float,
    epoch: int,
    step: int,
    steps: int,
) -> NoReturn:
    lr = config.train.optimizer.lr
    _write_summary(so_far, {"diverged_at": [epoch, step]})
    raise TrainingDiverged(
        f"the loss became {loss} at epoch {epoch}, step {step} of {steps}, so the run stopped. "
        f"The learning rate may be too high (train.optimizer.lr is {lr:g}); the last good "
        f"checkpoint (epoch {so_far.epochs}) is kept in {run_dir / CHECKPOINT_FILE}. Continue "
        f"from it with a lower rate: {resume_command(run_dir)} --set "
        f"train.optimizer.lr={lr / 10:g}"
    )


# -- evaluation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """Loss, accuracy and confusion matrix of a checkpoint on some data."""

    loss: float
    accuracy: float
    samples: int
    confusion: np.ndarray  # [true class, predicted class] counts
    epoch: int  # epochs the checkpoint had trained
    checkpoint: Path
    data: str  # what was evaluated: "validation split of spirals (...)" or a path

    def to_json(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "samples": self.samples,
            "epoch": self.epoch,
            "checkpoint": str(self.checkpoint),
            "data": self.data,
            "confusion_matrix": self.confusion.tolist(),
        }


def evaluate(target: str | Path, *, data: str | Path | None = None) -> Evaluation:
    """Evaluate a run folder's checkpoint (with its config.yaml) or a checkpoint file (with
    the config stored inside it) on the run's validation split, or on `data` (an .npz, .csv
    or MNIST folder)."""
    target = Path(target)
    if target.is_dir():
        config_path = target / CONFIG_FILE
        if not config_path.is_file():
            raise UsageError(f"'{target}' is not a run folder: it has no {CONFIG_FILE}")
        config, label = load_config(config_path), str(config_path)
        checkpoint_path = target / CHECKPOINT_FILE
    elif target.exists():
        checkpoint_path, label = target, f"the config stored in '{target}'"
    else:
        raise UsageError(f"'{target}' not found: give a run folder or a checkpoint .npz")
    checkpoint = load_checkpoint(checkpoint_path)
    if not target.is_dir():
        config = validate_config(checkpoint.config, SourceMap(label))
    in_features, num_classes = checkpoint.in_features, checkpoint.num_classes
    if data is None:
        split, described = load_data(config).val, "validation split"
    else:
        split = load_path(data, label_column=config.data.label_column or "label")
        described = str(data)
        if split.X.shape[1] != in_features:
            raise UsageError(
                f"'{data}' has {split.X.shape[1]} features per sample but the model takes "
                f"{in_features}"
            )
        if split.y.max() >= num_classes:  # load_path refuses a file without samples
            raise UsageError(
                f"'{data}' has labels up to {split.y.max()} but the model knows "
                f"{num_classes} classes (0 to {num_classes - 1})"
            )
    np.random.seed(config.seed)
    model, _ = _build_model(config, in_features, num_classes)
    _check_fits(checkpoint, model, config.train.optimizer.name, str(checkpoint_path), label)
    model.load_state_dict(checkpoint.model)
    totals, confusion = measure_split(model, split, config.train.batch_size, num_classes)
    return Evaluation(
        totals.loss,
        totals.accuracy,
        totals.size,
        confusion,
        checkpoint.epoch,
        checkpoint_path,
        described,
    )


def measure_split(
    model: nn.Module, split: Split, batch_size: int, num_classes: int
) -> tuple[Totals, np.ndarray]:
    """Loss and accuracy totals of `model` on `split` (evaluation mode), and the confusion
    matrix, counts indexed [true class, predicted class]."""
    loader = DataLoader(NDArrayDataset(split.X, split.y), batch_size=batch_size)
    totals, predicted = Totals(), []
    for result in run_batches(loader, model):  # in order: no shuffle
        totals.add(result)
        predicted.append(result.predictions)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (split.y, np.concatenate(predicted)), 1)
    return totals, confusion
