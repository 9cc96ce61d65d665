"""Training runs: a folder per run, checkpoints, resume, interruption, evaluation.

`train(config, out=...)` makes a new folder under `out` (never reusing one) holding

    config.yaml      the resolved config (`needle train --resume DIR` needs nothing else)
    metrics.csv      one row per epoch: losses, accuracies, seconds
    metrics.jsonl    the same rows as JSON lines
    checkpoint.npz   the latest state: parameters, optimizer state, RNG state, epoch, history,
                     data.normalize statistics
    summary.json     status and final numbers, rewritten as the run goes

and trains with `needle.train.run_batches`, the one training loop. Every file is written to a
temporary name and renamed into place (`needle.fileio`), so killing the process at any moment
leaves the previous checkpoint whole. The checkpoint format is `needle.checkpoint`; measuring a
finished run is `needle.evaluate`.

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
import os
import shlex
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from needle import nn, optim
from needle.build import LayerSummary, build_model, plan_model
from needle.checkpoint import Checkpoint, EpochMetrics, check_fits, load_checkpoint, save_checkpoint
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
from needle.datasets import Data, load_data, unscaled_warning
from needle.errors import NeedleError, NeedleWarning, UsageError
from needle.fileio import TEMP_PREFIX, write_text
from needle.normalize import Normalization
from needle.train import Totals, run_batches

CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "checkpoint.npz"
METRICS_CSV = "metrics.csv"
METRICS_JSONL = "metrics.jsonl"
SUMMARY_FILE = "summary.json"

METRIC_FIELDS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")


class TrainingDiverged(NeedleError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


# -- what a run reports ----------------------------------------------------------------------


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
    unfinished_seconds: float = 0.0  # time spent in an epoch the interruption cut short

    @property
    def last(self) -> EpochMetrics | None:
        return self.history[-1] if self.history else None

    @property
    def resume_command(self) -> str:
        return resume_command(self.run_dir)

    @property
    def seconds(self) -> float:
        """Training time: the epochs completed, and the part of one an interruption cut short."""
        return sum(m.seconds for m in self.history) + self.unfinished_seconds

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


# -- the pieces of a run ---------------------------------------------------------------------


OPTIMIZER_CLASSES = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW}


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
            normalization=self.data.normalization,
            **extra,
        )


def prepare(config: TrainConfig, *, normalization: Normalization | None = None) -> Session:
    """Load the data (scaled with a resumed run's `normalization`, if it has one) and build the
    model and optimizer, checking that everything fits, before anything is written. Seeds
    numpy's global RNG with `config.seed` first. Features that look unscaled get a
    NeedleWarning."""
    generated = config.data.dataset in GENERATED
    with _memory_for(config, ("data", "samples" if generated else "path"), "the data"):
        data = load_data(config, normalization=normalization)
    if message := unscaled_warning(config, data):
        warnings.warn(NeedleWarning(message), stacklevel=2)
    np.random.seed(config.seed)
    model, plan = build_checked_model(config, data.in_features, data.num_classes)
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


def build_checked_model(
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


def _absolute_data_path(config: TrainConfig) -> TrainConfig:
    """`config` with `data.path` absolute (`~` expanded), as resolved from this folder now."""
    if config.data.path is None:
        return config
    path = os.path.abspath(os.path.expanduser(config.data.path))
    return config.model_copy(update={"data": config.data.model_copy(update={"path": path})})


def check_data_found(config: TrainConfig, fix: str) -> None:
    """Raise a positioned UsageError ending with `fix` if `data.path` names nothing."""
    path = config.data.path
    if path is not None and not os.path.exists(os.path.expanduser(path)):
        kind = "folder" if config.data.dataset in ("mnist", "fashion_mnist") else "file"
        raise config.error(("data", "path"), f"{kind} '{path}' not found; {fix}")


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
    config = _absolute_data_path(config)  # what resume and evaluate read, from any folder
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

    `overrides` (`train.*` settings, such as `train.epochs=10` to train further or
    `train.optimizer.lr=0.001` after a divergence, and `data.path` for data that moved) are
    validated and saved into the run's config.yaml.
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
        if path != ("data", "path") and (path[:1] != ("train",) or len(path) < 2):
            raise UsageError(
                f"--set {override}: a resumed run can change train.* settings and data.path "
                "(where the data is now) only; start a new run to change the data or the model"
            )
    config = load_config(config_path, overrides)
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE)
    check_data_found(
        config, f"if the data moved: {resume_command(run_dir)} --set data.path=NEW_PATH"
    )
    session = prepare(config, normalization=checkpoint.normalization)
    check_fits(
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
    resolved = _absolute_data_path(config)
    if overrides or resolved.data.path != config.data.path:
        _write_config(run_dir, resolved)  # a run from before paths were stored absolute, too
    checkpoint.config = config_data(resolved)
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
                    "interrupted",
                    epoch - 1,
                    stopped_at=(epoch, step),
                    signum=stop.signum,
                    unfinished_seconds=partial["seconds"],
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
