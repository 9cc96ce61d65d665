"""How the `needle` tool fails: one line on stderr, a meaningful exit code, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from needle_cli import errors
from needle_cli.app import app

runner = CliRunner()


def test_bad_option_value_is_one_line_exit_2():
    result = runner.invoke(app, ["gradcheck", "exp", "--seed", "abc"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: Invalid value for '--seed'")
    assert "gradcheck --help" in lines[0]
    assert "Traceback" not in result.output


def test_unknown_command_is_one_line_exit_2():
    result = runner.invoke(app, ["trian"])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "No such command 'trian'" in result.stderr


def test_no_command_prints_the_help_and_exits_2():
    result = runner.invoke(app, [])
    assert result.exit_code == 2
    assert result.stderr.startswith("Usage: needle [OPTIONS] COMMAND")
    assert "init-stats" in result.stderr and "Traceback" not in result.output


def _probe(failure: BaseException) -> typer.Typer:
    """A two-command app on NeedleGroup whose `fail` command raises `failure`."""
    probe = typer.Typer(cls=errors.NeedleGroup)

    @probe.command()
    def fail() -> None:
        raise failure

    @probe.command()
    def other() -> None:
        pass

    return probe


def test_ctrl_c_or_an_abort_outside_a_run_exits_130_without_a_trace():
    # Ctrl-C: the shell shows ^C and typer exits quietly; an abort says so.
    for failure, said in ((KeyboardInterrupt(), ""), (typer.Abort(), "aborted\n")):
        result = runner.invoke(_probe(failure), ["fail"])
        assert (result.exit_code, result.stderr) == (130, said), result.output


def test_a_click_error_is_one_line_with_its_own_exit_code():
    from typer._click.exceptions import ClickException

    failure = ClickException("the disk is on fire")
    failure.exit_code = 3
    result = runner.invoke(_probe(failure), ["fail"])
    assert (result.exit_code, result.stderr) == (3, "error: the disk is on fire\n")


def test_a_bug_says_so_and_saves_the_trace(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    probe = typer.Typer(cls=errors.NeedleGroup)

    @probe.command()
    def explode() -> None:
        raise RuntimeError("boom")

    @probe.command()
    def other() -> None:
        pass

    result = runner.invoke(probe, ["explode"])
    assert result.exit_code == 1
    trace = tmp_path / errors.CRASH_TRACE_NAME
    assert result.stderr.strip() == (
        f"internal error (this is a bug in needle); full trace saved to {trace}"
    )
    assert "RuntimeError: boom" in trace.read_text()


def test_console_script_version_and_help_start_without_numpy():
    code = (
        "import sys; from needle_cli.app import main; sys.argv = ['needle', '--version'];\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "assert 'numpy' not in sys.modules and 'rich' not in sys.modules, 'heavy import'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("needle ")
