"""The learning-rate schedules a config names (`train.schedule`), read from `needle.schedule`'s
constructors, and the hook that applies one.

Written like `train.optimizer`: a name (`schedule: cosine`) or a mapping with `name` and its
settings (`{name: step, step_size: 5, gamma: 0.5}`); each schedule's settings and defaults are
its constructor's keyword arguments after the three the run supplies (the optimizer's `lr`,
`train.epochs` and the batches per epoch). Adding a schedule is its class in
`needle.schedule` and one line in `SCHEDULES` (plus a `SETTINGS` row for a new keyword).

`LearningRate` sets `opt.lr` before every step from the position alone (epochs done, batches
done), so a resumed run, even one stopped inside an epoch, gets the rates it would have had.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from needle import schedule
from needle.train.constructors import Choice, Constructors, Setting, choice_model
from needle.train.fields import Fraction, NonNegative, Positive, PositiveFloat, field_error
from needle.train.loop import BatchResult, Hooks, LoopState


def _increasing(milestones: list[int]) -> list[int]:
    if any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
        raise field_error(f"must be increasing epoch counts (got {milestones})")
    return milestones


Count = Annotated[int, Field(ge=0)]  # a number of epochs or steps, 0 allowed

SETTINGS = {
    "step_size": Setting(Positive, "epochs between two multiplications by gamma"),
    "milestones": Setting(
        Annotated[list[Positive], AfterValidator(_increasing)],
        "epochs done after which lr is multiplied by gamma, increasing",
    ),
    "gamma": Setting(PositiveFloat, "the factor lr is multiplied by"),
    "warmup_epochs": Setting(Count, "epochs of linear warm-up"),
    "warmup_steps": Setting(Count, "steps of linear warm-up, added to warmup_epochs'"),
    "min_lr": Setting(NonNegative, "the rate at the end of the cosine"),
    "max_lr": Setting(PositiveFloat, "the peak rate (default: the optimizer's lr)"),
    "pct_start": Setting(Fraction, "share of the steps spent rising to max_lr"),
    "div_factor": Setting(PositiveFloat, "the first rate is max_lr / div_factor"),
    "final_div_factor": Setting(PositiveFloat, "the last rate is the first / final_div_factor"),
}

SCHEDULES = Constructors(
    "schedule",
    {
        "constant": schedule.Constant,
        "step": schedule.StepLR,
        "multistep": schedule.MultiStepLR,
        "cosine": schedule.CosineLR,
        "onecycle": schedule.OneCycleLR,
    },
    SETTINGS,
    positional=3,
)


class _ScheduleChoice(Choice):
    @model_validator(mode="after")
    def _needs_milestones(self) -> _ScheduleChoice:
        if self.name == "multistep" and not self.milestones:
            raise field_error(
                "multistep needs milestones, the epochs after which lr is multiplied by "
                "gamma (such as [30, 60])",
                at=("milestones",),
                show=False,
            )
        return self


ScheduleConfig = choice_model(
    "ScheduleConfig",
    SCHEDULES,
    default="constant",
    doc="`train.schedule:` `cosine`, or `{name: step, step_size: 5, gamma: 0.5}` and so on.",
    base=_ScheduleChoice,
)


def check_schedule(settings: Any) -> None:
    """What a schedule's settings cannot be given the rest of `train:` (`settings`, a
    TrainSettings): a warm-up as long as the run, a cosine ending above where it starts."""
    chosen = settings.schedule
    if chosen.name == "cosine":
        if chosen.warmup_epochs >= settings.epochs:
            raise field_error(
                f"the warm-up must end before the run does: train.epochs is {settings.epochs} "
                f"(got {chosen.warmup_epochs})",
                at=("schedule", "warmup_epochs"),
            )
        if chosen.min_lr >= settings.optimizer.lr:
            raise field_error(
                f"must be below train.optimizer.lr ({settings.optimizer.lr:g}), where the "
                f"cosine starts (got {chosen.min_lr:g})",
                at=("schedule", "min_lr"),
            )


def build_schedule(settings: Any, steps: int) -> schedule.Schedule:
    """The schedule `settings` (a TrainSettings) asks for, over `steps` batches per epoch."""
    return settings.schedule.build(settings.optimizer.lr, settings.epochs, steps)


def epoch_rates(settings: Any, steps: int) -> list[float]:
    """The rate of each epoch's first step, for `--dry-run`."""
    chosen = build_schedule(settings, steps)
    return [chosen.lr_at(e, 0) for e in range(settings.epochs)]


class LearningRate(Hooks):
    """Sets the optimizer's `lr` from `schedule` before each step: at the epoch's start (or
    where a resumed epoch goes on) and after each step, for the next."""

    def __init__(self, chosen: schedule.Schedule) -> None:
        self.schedule = chosen

    def on_epoch_start(self, state: LoopState) -> None:
        state.opt.lr = self.schedule.lr_at(state.epoch - 1, state.step)

    def on_step(self, state: LoopState, batch: BatchResult) -> None:
        state.opt.lr = self.schedule.lr_at(state.epoch - 1, state.step)
