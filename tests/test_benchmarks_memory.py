"""benchmarks/memory.py's ResNet-9 run: needle's epochs, then the floor's in a fresh process,
and the ratio of their peaks. The live tensor count must not grow from epoch to epoch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MEMORY = Path(__file__).resolve().parents[1] / "benchmarks" / "memory.py"


def test_resnet9_run_reports_both_sides_and_a_flat_tensor_count():
    command = [sys.executable, str(MEMORY), "--model", "resnet9", "--epochs", "2"]
    command += ["--images", "64", "--batch-size", "32"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    rows = [line.split() for line in result.stdout.splitlines()]
    needle = [row for row in rows if row[0] == "needle"]
    floor = [row for row in rows if row[0] == "floor"]
    assert [row[1] for row in needle] == ["1", "2"] == [row[1] for row in floor]
    assert needle[0][-1] == needle[1][-1], "live tensors grew from one epoch to the next"
    assert int(needle[0][-1]) > 0 and floor[0][-1] == "-"
    assert "peak RSS: needle" in result.stdout and "ratio" in result.stdout
