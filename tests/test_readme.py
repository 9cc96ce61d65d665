"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    namespace: dict = {}
    # The blocks build on each other, as a reader would type them.
    for block in BLOCKS[: index + 1]:
        exec(compile(block, f"README.md block {index}", "exec"), namespace)  # noqa: S102
    if "x" in namespace:  # the gradient-of-a-gradient example
        x = namespace["x"]
        np.testing.assert_allclose(x.grad.numpy(), 6 * x.numpy())
    if "loss" in namespace:
        assert float(namespace["loss"].numpy()) < 0.69  # learned something beyond chance
