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
conv_floor = pytest.importorskip("conv_floor")


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


# -- evaluation: the forward pass with the running statistics, no graph ----------------------


def _floor_batch_norms(floor_eval):
    return [
        layer
        for layer in conv_floor.leaves(floor_eval.net)
        if isinstance(layer, conv_floor.FloorBatchNorm)
    ]


@pytest.mark.parametrize("batch_size", [2, 5])
def test_eval_floor_agrees_with_needle_under_moved_running_statistics(batch_size):
    needle_eval, floor_eval, tensor_batches, batches = conv_step.setup(
        "tiny", batch_size, mode="eval"
    )
    # setup moved the statistics off their initial zeros and ones, so that an evaluation
    # ignoring them would disagree
    for bn in _floor_batch_norms(floor_eval):
        assert not np.allclose(bn.running_mean, 0) and not np.allclose(bn.running_var, 1)
    for k in range(2):
        errors = conv_step.eval_agreement(needle_eval, floor_eval, tensor_batches[k], batches[k])
        assert errors["floor_logit_err"] <= conv_step.LOGIT_RTOL
        assert errors["logit_err"] <= max(
            conv_step.LOGIT_FACTOR * errors["floor_logit_err"], conv_step.LOGIT_RTOL
        )


def test_eval_floor_keeps_no_caches_and_leaves_the_statistics():
    _, floor_eval, _, batches = conv_step.setup("tiny", 3, mode="eval")
    before = [
        (bn.running_mean.copy(), bn.running_var.copy()) for bn in _floor_batch_norms(floor_eval)
    ]
    floor_eval(*batches[0])
    caches = {"cols", "in_shape", "x_hat", "inv_std", "out", "x"}
    for layer in conv_floor.leaves(floor_eval.net):
        assert not caches & set(vars(layer)), type(layer).__name__
    for bn, (mean, var) in zip(_floor_batch_norms(floor_eval), before, strict=True):
        np.testing.assert_array_equal(bn.running_mean, mean)
        np.testing.assert_array_equal(bn.running_var, var)


def test_eval_agreement_refuses_a_floor_that_differs():
    needle_eval, floor_eval, tensor_batches, batches = conv_step.setup("tiny", 2, mode="eval")
    _floor_batch_norms(floor_eval)[-1].running_mean += 0.05
    with pytest.raises(AssertionError, match="disagree"):
        conv_step.eval_agreement(needle_eval, floor_eval, tensor_batches[0], batches[0])


def test_eval_agreement_refuses_needle_logits_that_differ():
    needle_eval, floor_eval, tensor_batches, batches = conv_step.setup("tiny", 2, mode="eval")
    bn = next(
        m for m in conv_step.walk(needle_eval.model) if isinstance(m, conv_step.nn.BatchNorm2d)
    )
    bn.running_var.data = bn.running_var * 1.05
    with pytest.raises(AssertionError, match="disagree"):
        conv_step.eval_agreement(needle_eval, floor_eval, tensor_batches[0], batches[0])


def test_quick_eval_run_prints_a_row():
    command = [sys.executable, str(BENCHMARKS / "conv_step.py"), "--quick", "--mode", "eval"]
    command += ["--networks", "tiny", "--batch-sizes", "2"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    [row] = [
        line.split() for line in result.stdout.splitlines() if line.lstrip().startswith("eval")
    ]
    assert row[:3] == ["eval", "tiny", "2"]
    assert float(row[3]) > 0 and float(row[4]) > 0  # needle ms, numpy ms


def test_alone_step_reports_each_side_with_each_allocator():
    command = [sys.executable, str(BENCHMARKS / "alone_step.py"), "--json", "--processes", "1"]
    command += ["--networks", "tiny", "--batch-sizes", "2"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    rows = json.loads(result.stdout)
    assert {(r["side"], r["allocator"]) for r in rows} == {
        (side, allocator) for side in ("needle", "floor") for allocator in ("default", "retained")
    }
    assert all(r["ms"] > 0 and r["faults"] >= 0 for r in rows)
