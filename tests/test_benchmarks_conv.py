"""The conv benchmark's numpy floor computes needle's step: same loss, same first-conv weight
gradient, and after an SGD step the same next loss. Correctness only; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
conv_step = pytest.importorskip("conv_step")


@pytest.mark.parametrize("batch_size", [2, 5])
def test_floor_agrees_with_needle_over_two_steps(batch_size):
    needle_step, floor_step, tensor_batches, batches = conv_step.setup("tiny", batch_size)
    for k in range(2):  # the second step starts from both sides' SGD updates
        errors = conv_step.agreement(needle_step, floor_step, tensor_batches[k], batches[k])
        assert errors["loss_err"] <= conv_step.LOSS_RTOL
        assert errors["grad_err"] <= max(conv_step.GRAD_FACTOR * errors["floor_grad_err"], 1e-4)


def test_floor_gradients_match_needle_for_every_parameter():
    needle_step, floor_step, tensor_batches, batches = conv_step.setup("tiny", 3)
    needle_step(*tensor_batches[0])
    floor_step(*batches[0])
    needle_grads = [p.grad.numpy() for p in needle_step.model.parameters()]
    floor_grads = [g for layer in floor_step.with_params for g in layer.grads]
    assert len(needle_grads) == len(floor_grads)
    for needle_grad, floor_grad in zip(needle_grads, floor_grads, strict=True):
        np.testing.assert_allclose(floor_grad, needle_grad, rtol=1e-4, atol=1e-6)


def test_agreement_refuses_a_floor_that_differs():
    needle_step, floor_step, tensor_batches, batches = conv_step.setup("tiny", 2)
    floor_step.with_params[-1].weight *= 1.01  # the floor's head no longer has needle's weights
    with pytest.raises(AssertionError, match="disagree"):
        conv_step.agreement(needle_step, floor_step, tensor_batches[0], batches[0])


def test_agreement_refuses_a_needle_gradient_that_differs():
    """A first conv followed by batch norm leaves the loss unchanged when its weights are
    scaled, but not their gradient: the check catches it there."""
    needle_step, floor_step, tensor_batches, batches = conv_step.setup("tiny", 2)
    weight = needle_step.first_conv.weight
    weight.data = weight.data * 1.01
    with pytest.raises(AssertionError, match="weight gradient"):
        conv_step.agreement(needle_step, floor_step, tensor_batches[0], batches[0])


def test_quick_run_prints_a_row_per_network_and_batch():
    command = [sys.executable, str(BENCHMARKS / "conv_step.py"), "--quick", "--json"]
    command += ["--networks", "tiny", "--batch-sizes", "2"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    [row] = json.loads(result.stdout)["rows"]
    assert (row["network"], row["batch_size"]) == ("tiny", 2)
    assert row["needle_ms"] > 0 and row["numpy_ms"] > 0 and row["numpy_mb"] >= 0
