"""How `needle train` shows a run going: a live bar in a terminal, a plain line per epoch in a
pipe or a log, nothing when quiet.

In a terminal each phase of an epoch, its training steps and then its validation pass, gets a
transient bar with the steps done, the running loss and accuracy, samples per second and the
time left; when the epoch ends the bar goes and one permanent line with the epoch's metrics
takes its place, so nothing stale is left on the screen. The numbers come from the library's
`needle.train.reports.Progress` ticks; this module only times and prints them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from needle_cli.render import number

if TYPE_CHECKING:
    from rich.console import Console

    from needle.train.checkpoint import EpochMetrics
    from needle.train.datasets import Data
    from needle.train.reports import Callbacks, Progress, RunResult, RunStart


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def describe_data(data: Data) -> str:
    if data.language_model:
        return (
            f"{len(data.train.y):,} train / {len(data.val.y):,} val tokens, vocabulary "
            f"{data.num_classes:,}, windows of {data.sample_shape[0]}"
        )
    shape = data.sample_shape
    each = f"{shape[0]} features" if len(shape) == 1 else "each " + "×".join(map(str, shape))
    return (
        f"{len(data.train.y)} train / {len(data.val.y)} val samples, "
        f"{each}, {data.num_classes} classes"
    )


def epoch_text(m: EpochMetrics, epochs: int, *, perplexity: bool = False) -> str:
    """The permanent line of one epoch, the same in a terminal and in a log; a language
    model's (`perplexity`) shows each split's perplexity after its loss."""
    train_ppl = f" ppl {number(m.train_perplexity)}" if perplexity else ""
    val_ppl = f" ppl {number(m.val_perplexity)}" if perplexity else ""
    lr = "" if m.lr is None else f"  lr {m.lr:.3g}"  # None: a run from before lr was kept
    return (
        f"epoch {m.epoch}/{epochs}  train loss {number(m.train_loss)}{train_ppl} "
        f"acc {percent(m.train_accuracy)}  val loss {number(m.val_loss)}{val_ppl} "
        f"acc {percent(m.val_accuracy)}{lr}  {m.seconds:.2f}s"
    )


def ending_lines(result: RunResult) -> list[str]:
    """What a finished run says below its table: why it stopped, if not at its last epoch,
    and its best epoch, if not the last one."""
    lines = []
    if result.status not in ("completed", "interrupted", "diverged"):
        lines.append(f"stopped after epoch {result.epochs}: {result.status}")
    if result.best_epoch is not None and result.best_epoch != result.epochs:
        lines.append(
            f"best: epoch {result.best_epoch}, {result.best_metric} "
            f"{number(result.best_value)}, kept in {result.best_checkpoint}"
        )
    return lines


def clock(seconds: float) -> str:
    """A duration as `m:ss`, or `h:mm:ss` from an hour up."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


class RunDisplay:
    """The progress of one `needle train` session on `out`; a context manager that takes any
    live bar off the screen when the run ends, however it ends."""

    def __init__(self, out: Console, *, quiet: bool) -> None:
        self.out = out
        self.quiet = quiet
        self.run_dir: Path | None = None  # known once the run starts, even when quiet
        self.epochs = 0
        self.perplexity = False  # a language model's run: perplexities shown
        self.progress = None  # rich's Progress, in a terminal
        self.task = None  # the bar of the phase under way, if any
        self.phase: tuple[int, str] | None = None  # (epoch, phase) of that bar
        self.first_step = 0  # that phase's first step in this session
        self.began = 0.0  # when that phase began
        self.samples = 0  # samples it has done in this session
        self.last = 0.0  # when the previous tick (or the start, or an epoch's end) came

    def __enter__(self) -> RunDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()  # transient: the bars leave the screen

    def callbacks(self) -> Callbacks:
        from needle.train.reports import Callbacks

        if self.quiet:
            return Callbacks(on_start=self._remember)
        if not self.out.is_terminal:
            return Callbacks(on_start=self._start_line, on_epoch=self._epoch_line)
        return Callbacks(
            on_start=self._start_bar,
            on_step=self._step,
            on_validate=self._step,
            on_epoch=self._epoch_bar,
        )

    def _remember(self, start: RunStart) -> None:
        self.run_dir, self.epochs = start.run_dir, start.epochs
        self.perplexity = start.data.language_model

    def _start_line(self, start: RunStart) -> None:
        self._remember(start)
        what = "resuming" if start.resumed else "training"
        line = f"{what} {start.run_dir}: {start.data.source}, {describe_data(start.data)}"
        self.out.print(line, soft_wrap=True)

    def _epoch_line(self, m: EpochMetrics) -> None:
        self.out.print(epoch_text(m, self.epochs, perplexity=self.perplexity), soft_wrap=True)

    def _start_bar(self, start: RunStart) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
        from rich.progress import Progress as Bars

        self._start_line(start)
        self.progress = Bars(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  acc {task.fields[acc]}"),
            TextColumn("{task.fields[rate]} samples/s"),
            TextColumn("eta {task.fields[eta]}"),
            console=self.out,
            transient=True,
        )
        self.progress.start()
        self.last = time.perf_counter()

    def _step(self, p: Progress) -> None:
        now = time.perf_counter()
        if self.phase != (p.epoch, p.phase):
            self.phase, self.first_step = (p.epoch, p.phase), p.step
            self.began, self.samples = self.last, 0  # the phase began when the last one ended
        self.last = now
        self.samples += p.samples
        elapsed = max(now - self.began, 1e-9)
        per_step = elapsed / (p.step - self.first_step + 1)
        shown = {
            "completed": p.step,
            "loss": number(p.loss),
            "acc": percent(p.accuracy),
            "rate": f"{self.samples / elapsed:,.0f}",
            "eta": clock((p.steps - p.step) * per_step),
        }
        if p.step > self.first_step:
            self.progress.update(self.task, **shown)
            return
        if self.task is not None:
            self.progress.remove_task(self.task)
        label = "validating" if p.phase == "validate" else f"epoch {p.epoch}/{p.epochs}"
        # add_task draws the new bar at once, not at the next tick of rich's timer: a phase
        # may end before that tick.
        self.task = self.progress.add_task(label, total=p.steps, **shown)

    def _epoch_bar(self, m: EpochMetrics) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.phase = None
        self.progress.refresh()  # the finished bar goes before the epoch's line is printed
        self.progress.console.print(epoch_text(m, self.epochs, perplexity=self.perplexity))
        self.last = time.perf_counter()
