"""The optimizers a config names (`train.optimizer`), read from `needle.optim`'s constructors.

Each optimizer's settings and defaults are its constructor's keyword arguments; `SETTINGS`
gives every keyword used across them a type (its bounds) and a meaning. Adding an optimizer is
its class in `needle.optim` and one line in `OPTIMIZERS` (plus a `SETTINGS` row for a keyword
no optimizer took before).
"""

from __future__ import annotations

from needle import optim
from needle.train.constructors import Constructors, Setting, choice_model
from needle.train.fields import NonNegative, PositiveFloat, Probability

SETTINGS = {
    "lr": Setting(PositiveFloat, "learning rate"),
    "momentum": Setting(Probability, "momentum"),
    "beta1": Setting(Probability, "first-moment rate"),
    "beta2": Setting(Probability, "second-moment rate"),
    "eps": Setting(PositiveFloat, "added to the denominator"),
    "weight_decay": Setting(NonNegative, "weight decay: L2 penalty; adamw: decoupled"),
}

OPTIMIZERS = Constructors(
    "optimizer", {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW}, SETTINGS
)

OptimizerConfig = choice_model(
    "OptimizerConfig",
    OPTIMIZERS,
    default="adam",
    doc="`train.optimizer:` `adam`, or `{name: sgd, lr: 0.1, momentum: 0.9}` and so on.",
)
