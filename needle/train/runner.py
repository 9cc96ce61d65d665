"""Training runs: a folder per run, checkpoints, resume, interruption, evaluation.

`train(config, out=...)` makes a new folder under `out` (never reusing one) holding

    config.yaml      the resolved config (`needle train --resume DIR` needs nothing else)
    metrics.csv      one row per epoch: losses, accuracies, seconds, learning rate
    metrics.jsonl    the same rows as JSON lines
    checkpoint.npz   the latest state: parameters, optimizer state, RNG state, epoch, history,
                     data.normalize statistics, the best epoch so far
    best.npz         the checkpoint of the best epoch (val_loss, or train.early_stopping's)
    summary.json     status and final numbers, rewritten as the run goes

and trains with `needle.train.loop.fit`, the one training loop; the folder is kept up to date
by its hooks (`_RunFolder`), beside the learning-rate schedule, gradient clipping, the best
epoch's `Monitor` and early stopping, the front end's callbacks (`reports.Reporter`), the
caller's own `hooks` and the signal flag (`_SignalStop`). Every file is written to a
temporary name and renamed into place (`needle.fileio`), so killing the process at any moment
leaves the previous checkpoint whole. The checkpoint format is `needle.train.checkpoint`;
measuring a finished run is `needle.train.evaluate`.

Determinism: the config's seed seeds numpy's global RNG, which then draws the initial weights,
each epoch's shuffle and every dropout mask, in that order. A checkpoint keeps the RNG state
with the parameters, so `resume` continues the same stream: 2 epochs and a resume to 4 give
bit-identical parameters to 4 epochs straight. A stop in the middle of an epoch (Ctrl-C,
SIGTERM) also keeps the RNG state from the epoch's start, so the resumed epoch redraws the same
shuffle, skips the finished batches and goes on exactly as it would have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from needle.devices import using_device
from needle.errors import ConfigError, NeedleError, UsageError
from needle.fileio import TEMP_PREFIX
from needle.train.checkpoint import (
    Checkpoint,
    check_fits,
    load_checkpoint,
    save_checkpoint,
)
from needle.train.clipping import ClipGradNorm
from needle.train.config import TrainConfig, config_data, load_config, validate_config
from needle.train.early_stopping import EarlyStopping, Monitor
from needle.train.language import LanguageModel
from needle.train.layer_stats import LayerStats, read_stats
from needle.train.loop import BatchResult, EpochMetrics, Hooks, LoopState, Totals, fit
from needle.train.overrides import parse_key_path
from needle.train.reports import (
    INTERRUPTED,
    Callbacks,
    Reporter,
    RunResult,
    RunStart,
    resume_command,
)
from needle.train.rundir import (
    BEST_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_JSONL,
    absolute_data_path,
    check_data_found,
    new_run_dir,
    process_record,
    write_config,
    write_metrics,
    write_summary,
)
from needle.train.schedules import LearningRate, build_schedule
from needle.train.session import Session, prepare, skip_batches
from needle.train.signals import StopFlag
from needle.train.source import SourceMap


class TrainingDiverged(NeedleError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


# -- training --------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    *,
    out: str | Path = "runs",
    name: str = "run",
    callbacks: Callbacks | None = None,
    stop: StopFlag | None = None,
    hooks: Sequence[Hooks] = (),
) -> RunResult:
    """Train `config` in a new folder `out/name-N`; see the module docstring for its files.

    Returns when the run completes or a stop is requested (`stop.request()`, as Ctrl-C does):
    then a checkpoint of the state after the current step is written first. Raises
    TrainingDiverged if the loss becomes NaN or infinite.
    """
    session = prepare(config)
    config = absolute_data_path(config)  # what resume and evaluate read, from any folder
    run_dir = new_run_dir(Path(out), name)
    write_config(run_dir, config)
    start = session.checkpoint(0, [], config_data(config))
    save_checkpoint(run_dir / CHECKPOINT_FILE, start)
    return _run(session, run_dir, start, callbacks or Callbacks(), stop or StopFlag(), False, hooks)


def resume(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    *,
    callbacks: Callbacks | None = None,
    stop: StopFlag | None = None,
    hooks: Sequence[Hooks] = (),
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
            raise ConfigError(
                f"--set {override}",
                "a resumed run can change train.* settings and data.path (where the data is "
                "now) only; start a new run to change the data or the model",
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
    if isinstance(session.model, LanguageModel):  # a mid-epoch stop's hidden state, or none
        session.model.restore_state(checkpoint.carried)
    try:
        session.optimizer.load_state_dict(checkpoint.optimizer)
    except UsageError as err:
        raise UsageError(
            f"checkpoint '{run_dir / CHECKPOINT_FILE}' is corrupt or incomplete ({err})"
        ) from None
    for leftover in run_dir.glob(f"{TEMP_PREFIX}*"):
        leftover.unlink(missing_ok=True)  # half-written files of a killed process
    resolved = absolute_data_path(config)
    if overrides or resolved.data.path != config.data.path:
        write_config(run_dir, resolved)  # a run from before paths were stored absolute, too
    checkpoint.config = config_data(resolved)
    return _run(
        session, run_dir, checkpoint, callbacks or Callbacks(), stop or StopFlag(), True, hooks
    )


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
    hooks: Sequence[Hooks],
) -> RunResult:
    """The run shared by `train` and `resume`: `fit` from `state`, with the run folder kept
    up to date, the front end's callbacks, the caller's hooks and the stop flag, in that
    order (a stop asked by a callback or hook is seen at the same step)."""
    total, steps = session.config.train.epochs, len(session.train_loader)
    np.random.set_state(state.rng)
    if callbacks.on_start:
        callbacks.on_start(
            RunStart(
                run_dir,
                session.config,
                session.data,
                state.epoch + 1,
                state.step,
                total,
                steps,
                resumed,
            )
        )
    loop = LoopState(
        session.model,
        session.optimizer,
        epochs=total,
        steps=steps,
        epoch=state.epoch + 1,
        history=list(state.history),
    )
    rest = None
    if state.step:  # stopped inside an epoch: redraw its shuffle, skip the batches done
        np.random.set_state(state.epoch_rng)
        rest = skip_batches(session.train_loader, state.step, state.rng)
        partial = state.partial
        loop.step = state.step
        loop.totals = Totals(partial["loss_sum"], int(partial["correct"]), int(partial["size"]))
        loop.seconds_before = float(partial.get("seconds", 0.0))
    settings = session.config.train
    # The monitor first: the run folder's checkpoint at an epoch's end holds its new state.
    monitor = Monitor.for_config(settings.early_stopping)
    monitor.load(state.monitor)
    optimization: list[Hooks] = [LearningRate(build_schedule(settings, steps))]
    if settings.clip_grad_norm is not None:
        optimization.append(ClipGradNorm(settings.clip_grad_norm))
    stopping = settings.early_stopping
    early = [EarlyStopping(monitor, stopping.patience)] if stopping is not None else []
    # First, so that it sees the gradients before clipping and its numbers reach the folder.
    stats = []
    if settings.log_stats:
        logged = read_stats(run_dir / METRICS_JSONL, through=state.epoch)
        stats.append(LayerStats(session.model, logged))
    process = process_record(run_dir, resumed=resumed)
    folder = _RunFolder(session, run_dir, state.config, stop, monitor, process, *stats)
    write_summary(folder._result(loop, "running", state.epoch), process)
    reporter = Reporter(callbacks, len(session.val_loader))
    everything = [
        *stats,
        *optimization,
        monitor,
        folder,
        reporter,
        *hooks,
        *early,
        _SignalStop(stop),
    ]
    with using_device(session.device):
        fit(session.train_loader, session.val_loader, loop, everything, rest=rest)
    assert folder.result is not None  # fit always ends with on_stop
    return folder.result


class _RunFolder(Hooks):
    """The run folder kept up to date: the checkpoint and metrics after every epoch (and
    best.npz after each that improved on `monitor`'s best), a checkpoint at a stop inside
    one, summary.json as the run goes; and the loss checked after every step, before
    anything reports it."""

    def __init__(
        self,
        session: Session,
        run_dir: Path,
        config: dict[str, Any],
        stop: StopFlag,
        monitor: Monitor,
        process: dict[str, Any],
        stats: LayerStats | None = None,
    ) -> None:
        self.session, self.run_dir, self.config, self.stop = session, run_dir, config, stop
        self.monitor = monitor
        self.process = process  # pid, host and start time, in every summary
        self.stats = stats
        self.epoch_rng: tuple | None = None  # the RNG as the epoch under way began
        self.result: RunResult | None = None  # how the run ended

    def on_epoch_start(self, state: LoopState) -> None:
        self.epoch_rng = np.random.get_state()

    def on_step(self, state: LoopState, batch: BatchResult) -> None:
        if not math.isfinite(batch.loss):
            _diverged(
                self.run_dir,
                self.session.config,
                self._result(state, "diverged", state.epoch - 1),
                batch.loss,
                state.epoch,
                state.step,
                state.steps,
                self.process,
            )

    def on_epoch_end(self, state: LoopState, metrics: EpochMetrics) -> None:
        # The checkpoint first: a kill between the two writes leaves metrics one epoch behind
        # (the next epoch rewrites them), never claiming an epoch the checkpoint lacks.
        checkpoint = self.session.checkpoint(
            state.epoch, state.history, self.config, monitor=self.monitor.state()
        )
        if self.monitor.improved:  # best first: a kill between leaves it no older than latest
            save_checkpoint(self.run_dir / BEST_FILE, checkpoint)
        save_checkpoint(self.run_dir / CHECKPOINT_FILE, checkpoint)
        stats = self.stats.by_epoch if self.stats else None
        lm = self.session.data.language_model
        write_metrics(self.run_dir, state.history, perplexity=lm, stats=stats)
        if state.epoch < state.epochs:
            write_summary(self._result(state, "running", state.epoch), self.process)

    def on_stop(self, state: LoopState, reason: str) -> None:
        if reason == "completed":
            result = self._result(state, reason, state.epochs)
        elif state.step < state.steps:  # inside an epoch: keep what resuming it needs
            partial = {
                "loss_sum": state.totals.loss_sum,
                "correct": state.totals.correct,
                "size": state.totals.size,
                "seconds": state.seconds,
            }
            checkpoint = self.session.checkpoint(
                state.epoch - 1,
                state.history,
                self.config,
                step=state.step,
                epoch_rng=self.epoch_rng,
                partial=partial,
                monitor=self.monitor.state(),
            )
            save_checkpoint(self.run_dir / CHECKPOINT_FILE, checkpoint)
            result = self._result(
                state,
                reason,
                state.epoch - 1,
                stopped_at=(state.epoch, state.step),
                unfinished_seconds=partial["seconds"],
            )
        else:
            result = self._result(state, reason, state.epoch, stopped_at=(state.epoch, state.steps))
        write_summary(result, self.process)
        self.result = result

    def _result(self, state: LoopState, status: str, epochs: int, **extra: Any) -> RunResult:
        signum = self.stop.signum if status == INTERRUPTED else None
        monitor = self.monitor
        if monitor.best is not None:
            extra.update(
                best_epoch=monitor.best_epoch, best_metric=monitor.metric, best_value=monitor.best
            )
        return RunResult(
            self.run_dir,
            status,
            epochs,
            state.epochs,
            list(state.history),
            self.run_dir / CHECKPOINT_FILE,
            signum=signum,
            language_model=self.session.data.language_model,
            **extra,
        )


class _SignalStop(Hooks):
    """A signal's stop request (`StopFlag`, set by Ctrl-C, SIGTERM, SIGHUP) passed on to the
    loop, as the run's status "interrupted"."""

    def __init__(self, stop: StopFlag) -> None:
        self.stop = stop

    def on_step(self, state: LoopState, batch: BatchResult) -> None:
        if self.stop.requested:
            state.request_stop(INTERRUPTED)

    def on_epoch_end(self, state: LoopState, metrics: EpochMetrics) -> None:
        if self.stop.requested:
            state.request_stop(INTERRUPTED)


def _diverged(
    run_dir: Path,
    config: TrainConfig,
    so_far: RunResult,
    loss: float,
    epoch: int,
    step: int,
    steps: int,
    process: dict[str, Any],
) -> NoReturn:
    lr = config.train.optimizer.lr
    write_summary(so_far, {**process, "diverged_at": [epoch, step]})
    raise TrainingDiverged(
        f"the loss became {loss} at epoch {epoch}, step {step} of {steps}, so the run stopped. "
        f"The learning rate may be too high (train.optimizer.lr is {lr:g}); the last good "
        f"checkpoint (epoch {so_far.epochs}) is kept in {run_dir / CHECKPOINT_FILE}. Continue "
        f"from it with a lower rate: {resume_command(run_dir)} --set "
        f"train.optimizer.lr={lr / 10:g}"
    )
