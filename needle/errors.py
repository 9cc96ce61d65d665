"""The one exception family needle raises for failures a user can cause.

The CLI turns these into one line on stderr and an exit code; library users catch
`NeedleError`. Anything else escaping needle is a bug. Likely mistakes that do not stop
anything are `warnings.warn(NeedleWarning(...))`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class NeedleError(Exception):
    """A failure the user can fix: the message names the culprit and what would be valid."""

    exit_code = 1


class UsageError(NeedleError):
    """Bad input: a config, an option, a value, a file that is not what it should be."""

    exit_code = 2


class ConfigError(UsageError):
    """A mistake at a known place in a config, kept in its parts so that each reader can lay
    it out: the CLI colours the position, a test compares the line and column.

    - `source`: where it was written: the file name as given, or the `--set key=value`;
    - `line`, `column`: 1-based, as editors count; None when there is none (a `--set` value
      is one line, so it has a column only; a key a `--set` wrote has neither);
    - `key`: the dotted key path, such as "model.layers[2].linear.out_features", or None;
    - `message`: what is wrong and what was found;
    - `others`: further mistakes found in the same validation, in file order.

    `str()` is the one-line form, one line per mistake:
    "config.yaml:12:15: model.layers[2].linear.out_features: must be a positive integer (got -3)".
    A `--set` value's position is a column of the value: "--set a=[1: column 3 of the value: ...".
    """

    def __init__(
        self,
        source: str,
        message: str,
        line: int | None = None,
        column: int | None = None,
        key: str | None = None,
        others: Sequence[ConfigError] = (),
    ) -> None:
        # Every part is positional too, so that the exception pickles (via self.args).
        super().__init__(source, message, line, column, key, tuple(others))
        self.source, self.message, self.line, self.column = source, message, line, column
        self.key = key
        self.others = tuple(others)

    @property
    def problems(self) -> tuple[ConfigError, ...]:
        """This mistake and the others found with it, each with no others of its own."""
        return (self.alone(), *self.others)

    def alone(self) -> ConfigError:
        """This mistake without the others found with it."""
        return ConfigError(self.source, self.message, self.line, self.column, self.key)

    def with_others(self, others: Sequence[ConfigError]) -> ConfigError:
        """This mistake, reported together with `others` (each taken alone)."""
        alone = [other.alone() for other in others]
        return ConfigError(self.source, self.message, self.line, self.column, self.key, alone)

    def _position(self) -> str:
        """The source, with "line:col" or "column C of the value" where they are known."""
        if self.line is not None:
            column = f":{self.column}" if self.column is not None else ""
            return f"{self.source}:{self.line}{column}"
        if self.column is not None:
            return f"{self.source}: column {self.column} of the value"
        return self.source

    def __str__(self) -> str:
        head = f"{self._position()}: " + (f"{self.key}: " if self.key else "") + self.message
        return "\n".join([head, *(str(other) for other in self.others)])


class NeedleWarning(UserWarning):
    """Something that works but is likely a mistake (features far from unit scale); the
    message names it and the fix. The CLI shows each as one `warning:` line."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return " did you mean 'x'?" for the closest choice, or "" when nothing is close."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f" did you mean '{close[0]}'?" if close else ""


def unknown_choice(kind: str, value: str, choices: Iterable[str]) -> UsageError:
    """The standard error for a name that is not in a registry. The name is shown quoted and
    escaped, so a stray newline or quote in it cannot break the one-line message."""
    choices = sorted(choices)
    hint = did_you_mean(value, choices) or f" valid: {', '.join(choices)}"
    return UsageError(f"unknown {kind} {str(value)!r};{hint}")
