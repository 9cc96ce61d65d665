"""The one exception family needle raises for failures a user can cause.

The CLI turns these into one line on stderr and an exit code; library users catch
`NeedleError`. Anything else escaping needle is a bug. Likely mistakes that do not stop
anything are `warnings.warn(NeedleWarning(...))`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NeedleError(Exception):
    """A failure the user can fix: the message names the culprit and what would be valid."""

    exit_code = 1


class UsageError(NeedleError):
    """Bad input: a config, an option, a value, a file that is not what it should be."""

    exit_code = 2


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
