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
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from needle.errors import NeedleError, UsageError
from needle.fileio import TEMP_PREFIX
from needle.train.checkpoint import (
    Checkpoint,
    EpochMetrics,
    check_fits,
    load_checkpoint,
    save_checkpoint,
)
from needle.train.config import TrainConfig, config_data, load_config, validate_config
from needle.train.loop import Totals, run_batches
from needle.train.overrides import parse_key_path
from needle.train.reports import Callbacks, Progress, RunResult, RunStart, resume_command
from needle.train.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    absolute_data_path,
    check_data_found,
    new_run_dir,
    write_config,
    write_metrics,
    write_summary,
)
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
    resolved = absolute_data_path(config)
    if overrides or resolved.data.path != config.data.path:
        write_config(run_dir, resolved)  # a run from before paths were stored absolute, too
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
            batches: Iterable = skip_batches(session.train_loader, state.step, state.rng)
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
                write_summary(stopped)
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
        write_metrics(run_dir, history)
        if callbacks.on_epoch:
            callbacks.on_epoch(metrics)
        if stop.requested and epoch < total:
            stopped = result("interrupted", epoch, stopped_at=(epoch, steps), signum=stop.signum)
            write_summary(stopped)
            return stopped
        write_summary(result("running" if epoch < total else "completed", epoch))
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
    write_summary(so_far, {"diverged_at": [epoch, step]})
    raise TrainingDiverged(
        f"the loss became {loss} at epoch {epoch}, step {step} of {steps}, so the run stopped. "
        f"The learning rate may be too high (train.optimizer.lr is {lr:g}); the last good "
        f"checkpoint (epoch {so_far.epochs}) is kept in {run_dir / CHECKPOINT_FILE}. Continue "
        f"from it with a lower rate: {resume_command(run_dir)} --set "
        f"train.optimizer.lr={lr / 10:g}"
    )
