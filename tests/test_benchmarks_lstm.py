"""The LSTM benchmark's numpy floor computes needle's step: loss and gradients agree with
needle's, and its agreement check passes for needle and refuses a model that differs.
Correctness only; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
lstm_step = pytest.importorskip("lstm_step")


@pytest.mark.parametrize("seed", [0, 1])
def test_agreement_passes_over_two_windows(seed):
    errors = lstm_step.checked("tiny", seed)  # the second window starts from the carried state
    assert errors["loss_err"] <= lstm_step.ERROR_FACTOR * errors["floor_loss_err"] + 1e-6


def test_floor_gradients_match_needle_for_every_parameter():
    needle_step, floor_step, tensor_batches, batches = lstm_step.setup("tiny")
    for k in range(2):
        needle_step(*tensor_batches[k])
        floor_step(*batches[k])
    needle = {id(p): p.grad.numpy() for p in needle_step.model.parameters()}
    model = needle_step.model
    floor = [(model.embedding.weight, floor_step.embedding_grad)]
    for cell, layer in zip(model.seq_model.lstm_cells, floor_step.layers, strict=True):
        d_weight, d_bias, _ = layer.grads
        floor += [(cell.W_ih, d_weight[: layer.n_in]), (cell.W_hh, d_weight[layer.n_in :])]
        floor += [(cell.bias_ih, d_bias), (cell.bias_hh, d_bias)]
    floor += [(model.linear.weight, floor_step.head_grads[0])]
    floor += [(model.linear.bias, floor_step.head_grads[1])]
    assert len(floor) == len(needle)
    for param, floor_grad in floor:
        np.testing.assert_allclose(floor_grad, needle[id(param)], rtol=1e-4, atol=1e-6)


def test_agreement_refuses_a_model_that_differs():
    needle_step, floor_step, tensor_batches, batches = lstm_step.setup("tiny")
    exact_step = lstm_step.FloorStep(needle_step.model, np.float64)
    cell = needle_step.model.seq_model.lstm_cells[1]
    cell.W_hh.data = cell.W_hh.data * 1.01  # needle no longer has the floors' weights
    with pytest.raises(AssertionError, match="disagree"):
        lstm_step.agreement(needle_step, floor_step, exact_step, tensor_batches, batches)


def test_quick_run_prints_a_row():
    command = [sys.executable, str(BENCHMARKS / "lstm_step.py"), "--quick", "--json"]
    result = subprocess.run(
        command + ["--size", "tiny"], capture_output=True, text=True, check=True
    )
    [row] = json.loads(result.stdout)["rows"]
    assert row["size"] == "tiny" and row["needle_ms"] > 0 and row["numpy_ms"] > 0
    assert row["numpy_mb"] >= 0 and "torch" not in json.loads(result.stdout)
