"""Every command's --help tells the truth: it has an Examples section, and each example is a
command line that parses as written, for the command whose help shows it, with any config
file it names present in configs/ and nothing a shell such as zsh would expand."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from needle_cli.app import COMMANDS as COMMAND_TABLE
from needle_cli.app import app, load_command

ROOT = Path(__file__).resolve().parents[1]
TOOL = typer.main.get_command(app)
runner = CliRunner()


def _commands(command, path=()):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, path + (name,))


COMMANDS = list(_commands(TOOL))


def examples(help_text: str) -> list[str]:
    """The lines of the help's Examples section (click indents them; blank lines dropped)."""
    assert help_text.count("Examples:") == 1, help_text
    return [line.strip() for line in help_text.split("Examples:")[1].splitlines() if line.strip()]


def parse(line: str) -> tuple[str, ...]:
    """Parse an example as the tool would, up to a shell redirection; return the path of the
    command it runs. Raises click's usage errors for a bad option or argument."""
    words = shlex.split(line)
    assert words[0] == "needle", line
    args = words[1 : next((i for i, w in enumerate(words) if w in (">", "|")), len(words))]
    command, path = TOOL, ()
    while args and args[0] in getattr(command, "commands", {}):
        command, path, args = command.commands[args[0]], path + (args[0],), args[1:]
    assert not hasattr(command, "commands"), f"{line}: names no command"
    command.make_context(" ".join(("needle", *path)), list(args))
    for word in args:
        if word.endswith((".yaml", ".yml")):
            assert (ROOT / word).is_file() and Path(word).parts[0] == "configs", line
    return path


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(("needle", *path)))
def test_every_help_has_examples_that_parse(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    lines = examples(result.stdout)
    assert lines, result.stdout
    for line in lines:
        assert line.startswith("needle "), f"not one example per line: {line!r}"
        assert parse(line)[: len(path)] == path, f"{line}: not an example of {path}"
        unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "", line)
        assert not re.search(r"[][*?]", unquoted), f"{line}: zsh would expand it"


@pytest.mark.parametrize(
    "line, problem",
    [
        ("needle trian configs/quickstart.yaml", "names no command"),
        ("needle train configs/mnist.yaml", "configs"),
        ("needle evaluate runs/x --bogus", "No such option"),
        ("needle init-stats --depth many", "integer"),
    ],
)
def test_the_example_checker_catches_a_false_example(line, problem):
    with pytest.raises(Exception, match=problem):
        parse(line)


def test_the_top_level_help_loads_no_command_module():
    code = (
        "import sys\n"
        "from needle_cli.app import main\n"
        "sys.argv = ['needle', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('needle', 'numpy', 'rich'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.strip().splitlines()[-1]
    assert loaded == "['needle_cli', 'needle_cli.app', 'needle_cli.errors']", loaded


@pytest.mark.parametrize("name", sorted(COMMAND_TABLE))
def test_each_listed_summary_is_the_commands_own_first_help_line(name):
    command = load_command(name)
    first_line = (command.help or "").strip().splitlines()[0]
    assert COMMAND_TABLE[name][1] == first_line
