"""needle.allocator: with glibc, a training loop's freed memory is kept for the next step
instead of being returned to the kernel and faulted in again. Each case runs in a fresh
process: the settings are the process's own."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Rounds of a step's pattern: 96 MB of arrays made (and written), then all freed at once.
ROUNDS = """
import json, resource, sys
import numpy as np
from needle import allocator
applied = allocator.retain_freed_memory() if sys.argv[1] == "retain" else None
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arrays = [np.ones(2**21, np.float32) for _ in range(12)]  # 12 × 8 MB
    del arrays
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _rounds(mode: str, **env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", ROUNDS, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return json.loads(result.stdout)


@pytest.mark.skipif(not GLIBC, reason="the settings are glibc's")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    kept, default = _rounds("retain"), _rounds("default")
    assert kept["applied"] is True
    # The first round faults its 96 MB in (fewer faults than 4 KB pages where the kernel
    # backs numpy's arrays with huge pages); with the memory kept, later rounds reuse it.
    first = kept["faults"][0]
    assert first > 0 and max(kept["faults"][2:]) < first / 20
    # glibc's own settings hand it back at every free: every round faults it in again.
    assert min(default["faults"][2:]) > default["faults"][0] / 2


def test_the_environment_can_keep_the_default_allocator():
    kept = _rounds("retain", NEEDLE_MALLOC="default")
    assert kept["applied"] is False


def test_the_training_loop_keeps_freed_memory():
    code = (
        "import numpy as np, needle as ndl\n"
        "from needle import allocator, data, nn, optim\n"
        "from needle.train import epoch\n"
        "x = np.random.rand(8, 3).astype(np.float32); y = np.zeros(8, np.uint8)\n"
        "model = nn.Linear(3, 2)\n"
        "loader = data.DataLoader(data.NDArrayDataset(x, y), 4)\n"
        "epoch(loader, model, optim.SGD(model.parameters()))\n"
        "print(allocator._applied)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(GLIBC)
