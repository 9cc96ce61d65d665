"""Output in a pipe or a log keeps every number whole, whatever COLUMNS says: no cell cut to
"…", no header or shape folded over lines. (train's and evaluate's tables are checked cell by
cell in test_cli_train.py.) The numbers are read back from the same command's --json."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from needle_cli.app import app
from needle_cli.render import error, number, value

runner = CliRunner()


@pytest.fixture(autouse=True)
def narrow(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")


def run(*args: str) -> tuple[str, dict]:
    """The command's table output and its --json report."""
    table, report = runner.invoke(app, list(args)), runner.invoke(app, [*args, "--json"])
    assert table.exit_code == report.exit_code == 0, table.output + report.output
    assert "…" not in table.stdout
    return table.stdout, json.loads(report.stdout)


def fields(line: str) -> list[str]:
    """The cells of a table row drawn without vertical rules: runs of 2+ spaces divide them."""
    return re.split(r"\s{2,}", line.strip())


def test_gradcheck_table_keeps_every_number_at_40_columns():
    text, report = run("gradcheck", "logsumexp", "--axes", "1")
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("input"))
    assert {"shape", "checked", "max abs err", "max rel err", "verdict"} <= set(fields(header))
    (item,) = report["inputs"]
    row = fields(next(line for line in lines if line.startswith("a ")))
    for cell in (
        "(3, 4)",
        str(item["checked"]),
        error(item["max_abs_error"]),
        error(item["max_rel_error"]),
        str(tuple(item["worst_index"])),
        value(item["analytic"]),
        "pass",
    ):
        assert cell in row, (cell, row)


def test_init_stats_tables_keep_every_number_at_40_columns():
    text, report = run("init-stats", "kaiming_uniform", "--depth", "3")
    lines = text.splitlines()
    assert any(fields(line)[-1] == "E[extreme of n draws] = a·(n−1)/(n+1)" for line in lines)
    for layer in report["propagation"]["layers"]:
        row = next(fields(line) for line in lines if fields(line)[0] == str(layer["layer"]))
        assert row == [
            str(layer["layer"]),
            number(layer["forward_std"]),
            number(layer["expected_forward_std"]),
            number(layer["backward_std"]),
            number(layer["expected_backward_std"]),
        ]
