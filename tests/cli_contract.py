"""The CLI's error contract, checked by every CLI test module the same way."""

from __future__ import annotations


def one_line_error(result, code: int) -> str:
    """The message of a failed command, checked to be one `error:` line on stderr, exit
    `code`, no traceback anywhere."""
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    return result.stderr[len("error: ") : -1]
