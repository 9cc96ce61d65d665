"""Constructors a config chooses by name, with the settings their signatures take.

A config value such as `train.optimizer` is a name (`adam`) or a mapping with `name` and
keyword arguments for that name's constructor (`{name: sgd, lr: 0.1, momentum: 0.9}`). What
each name takes and its defaults are read from the constructor's signature with `inspect`,
never copied; a table of `Setting`s, one per keyword across the whole family, gives each its
type and meaning. `choice_model` turns the two into the pydantic model that validates such a
value, fills in the defaults and describes the settings in the JSON Schema.

The families: optimizers (`needle.train.optimizers`) and learning-rate schedules
(`needle.train.schedules`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, create_model, field_validator, model_validator

from needle.train.fields import Strict, check_choice, field_error


@dataclass(frozen=True)
class Setting:
    """How a config writes one keyword argument: a type from `needle.train.fields` (its
    bounds are checked and land in the JSON Schema) and what it means."""

    type: Any
    description: str


class Constructors(Mapping[str, Callable[..., Any]]):
    """Named constructors of one kind (a mapping of name to constructor) and the settings a
    config may pass them: every keyword argument after the first `positional` parameters,
    which the caller supplies (an optimizer's parameters)."""

    def __init__(
        self,
        kind: str,
        constructors: Mapping[str, Callable[..., Any]],
        settings: Mapping[str, Setting],
        *,
        positional: int = 1,
    ) -> None:
        self.kind = kind
        self._constructors = dict(constructors)
        self._defaults: dict[str, dict[str, Any]] = {}
        for name, constructor in self._constructors.items():
            params = list(inspect.signature(constructor).parameters.values())[positional:]
            defaults = {p.name: p.default for p in params}
            for key, default in defaults.items():
                # A programming mistake, caught on import: the config could not describe it.
                if default is inspect.Parameter.empty:
                    raise TypeError(f"{kind} {name}: setting {key} needs a default")
                if key not in settings:
                    raise TypeError(f"{kind} {name} takes {key}, which its Setting table lacks")
            self._defaults[name] = defaults
        # The table's order, not the signatures': the order keys are written back in.
        self.settings_table = {key: s for key, s in settings.items() if self.users(key)}

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return self._constructors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._constructors)

    def __len__(self) -> int:
        return len(self._constructors)

    def settings(self, name: str) -> dict[str, Any]:
        """The settings `name`'s constructor takes, with its defaults, in signature order."""
        return dict(self._defaults[name])

    def users(self, key: str) -> list[str]:
        """The names whose constructors take the setting `key`."""
        return [name for name, defaults in self._defaults.items() if key in defaults]

    def describe(self, key: str) -> str:
        """`key`'s meaning, who takes it and the defaults, for the JSON Schema:
        "sgd: momentum (0)", "weight decay (sgd, adam: 0; adamw: 0.01)"."""
        users = self.users(key)
        by_default: dict[str, list[str]] = {}
        for name in users:
            by_default.setdefault(_show(self._defaults[name][key]), []).append(name)
        if len(by_default) == 1:
            (defaults,) = by_default
        else:
            defaults = "; ".join(f"{', '.join(names)}: {d}" for d, names in by_default.items())
        who = "" if len(users) == len(self) else f"{', '.join(users)}: "
        return f"{who}{self.settings_table[key].description} ({defaults})"


def _show(default: Any) -> str:
    # 1e-8, as a config writes it, not Python's 1e-08
    return f"{default:g}".replace("e-0", "e-") if isinstance(default, float) else str(default)


class Choice(Strict):
    """A name from `constructors` and the settings its constructor takes; the rest of the
    family's settings are refused, the missing ones filled in with the constructor's
    defaults. Made by `choice_model`, one subclass per family."""

    constructors: ClassVar[Constructors]
    name: str

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_choice(cls.constructors.kind, cls.constructors, value)

    @model_validator(mode="after")
    def _fill_and_check(self) -> Choice:
        family = self.constructors
        defaults = family.settings(self.name)
        for key in family.settings_table:
            if key not in defaults:
                if getattr(self, key) is not None:
                    raise field_error(
                        f"{self.name} has no setting {key} (it belongs to "
                        f"{', '.join(family.users(key))})",
                        at=(key,),
                        key=True,
                    )
            elif getattr(self, key) is None:
                default = defaults[key]
                # a tuple default (the signature's immutable `()`) as the list a config writes
                setattr(self, key, list(default) if isinstance(default, tuple) else default)
        return self

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments for the constructor."""
        return {key: getattr(self, key) for key in self.constructors.settings(self.name)}

    def build(self, *args: Any) -> Any:
        """The constructor called with `args` (what the config does not say) and the settings."""
        return self.constructors[self.name](*args, **self.arguments())


def choice_model(
    model_name: str,
    constructors: Constructors,
    *,
    default: str,
    doc: str,
    base: type[Choice] = Choice,
) -> type[Choice]:
    """The `Choice` model of one family: a `name` field and one optional field per setting.
    `base`, a subclass of `Choice`, adds checks of settings together."""
    names = list(constructors)
    listed = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
    fields: dict[str, Any] = {
        "name": (
            str,
            Field(default, description=listed, json_schema_extra={"enum": sorted(names)}),
        )
    }
    for key, setting in constructors.settings_table.items():
        fields[key] = (setting.type | None, Field(None, description=constructors.describe(key)))
    model = create_model(model_name, __base__=base, __doc__=doc, **fields)
    model.constructors = constructors
    return model


def name_or_mapping(value: Any) -> Any:
    """The short form `optimizer: adam` as the mapping `{name: adam}`."""
    return {"name": value} if isinstance(value, str) else value
