"""needle.train: run_batches against a hand-written loop, evaluation without a graph, and
epoch's summary against numpy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import needle as ndl
from needle import data, nn, optim
from needle.errors import UsageError
from needle.models import MLPResNet
from needle.train.loop import BatchResult, epoch, run_batches


def _dataset(n=23, dim=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim)).astype(np.float32)
    y = rng.integers(0, classes, n).astype(np.uint8)
    return X, y


def _loader(X, y, batch_size=5, shuffle=False):
    return data.DataLoader(data.NDArrayDataset(X, y), batch_size=batch_size, shuffle=shuffle)


def _model(seed=1):
    np.random.seed(seed)
    return MLPResNet(6, hidden_dim=8, num_blocks=1, num_classes=3, drop_prob=0.2)


def test_training_pass_equals_a_hand_written_loop():
    X, y = _dataset()
    model, reference = _model(), _model()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    ref_opt = optim.SGD(reference.parameters(), lr=0.1, momentum=0.5)

    np.random.seed(7)  # the same shuffles and dropout masks for both
    results = list(run_batches(_loader(X, y, shuffle=True), model, opt))
    assert model.training

    np.random.seed(7)
    expected = []
    reference.train()
    for xb, yb in _loader(X, y, shuffle=True):
        ref_opt.reset_grad()
        logits = reference(xb)
        loss = nn.SoftmaxLoss()(logits, yb)
        loss.backward()
        ref_opt.step()
        predicted = logits.numpy().argmax(axis=1)
        correct = int((predicted == yb.numpy()).sum())
        expected.append(BatchResult(float(loss.numpy()), correct, yb.shape[0], predicted))

    assert results == expected
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(got.predictions, want.predictions)
    assert [r.size for r in results] == [5, 5, 5, 5, 3]
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_evaluation_builds_no_graph_and_matches_the_model_in_eval_mode():
    X, y = _dataset()
    model = _model()
    model.train()
    losses = []

    def recording_loss(logits, labels):
        loss = nn.SoftmaxLoss()(logits, labels)
        losses.append(loss)
        return loss

    np.random.seed(3)
    results = list(run_batches(_loader(X, y), model, loss_fn=recording_loss))
    assert not model.training
    assert all(loss.op is None and not loss.requires_grad for loss in losses)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())

    for result, k in zip(results, range(0, 23, 5), strict=True):
        logits = model(ndl.Tensor(X[k : k + 5], requires_grad=False)).numpy()
        labels = y[k : k + 5]
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        assert result.size == len(labels)
        assert result.correct == int((logits.argmax(axis=1) == labels).sum())
        assert result.loss == pytest.approx(-log_probs[np.arange(len(labels)), labels].mean(), 1e-5)


def test_evaluation_restores_gradient_flags_even_when_it_fails():
    X, y = _dataset()
    model = _model()
    frozen = model.parameters()[0]
    frozen.requires_grad = False

    def failing_loss(logits, labels):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        list(run_batches(_loader(X, y), model, loss_fn=failing_loss))
    assert not frozen.requires_grad
    assert all(p.requires_grad for p in model.parameters()[1:])


def test_custom_loss_is_used():
    X, y = _dataset()
    model = _model()
    default = [r.loss for r in run_batches(_loader(X, y), model)]
    doubled = [
        r.loss
        for r in run_batches(_loader(X, y), model, loss_fn=lambda z, t: nn.SoftmaxLoss()(z, t) * 2)
    ]
    np.testing.assert_allclose(doubled, np.multiply(default, 2), rtol=1e-6)


def test_epoch_evaluation_against_numpy():
    X, y = _dataset(n=17)
    np.random.seed(0)
    model = nn.Linear(6, 3)
    error, loss = epoch(_loader(X, y, batch_size=4), model)
    assert isinstance(error, float) and isinstance(loss, float)

    logits = X.astype(np.float64) @ model.weight.numpy() + model.bias.numpy()
    lse = np.log(np.exp(logits).sum(axis=1))
    assert error == pytest.approx(np.mean(logits.argmax(axis=1) != y))
    # a mean over samples, not over batches: the short last batch weighs 1/17, not 1/5
    assert loss == pytest.approx(np.mean(lse - logits[np.arange(17), y]), rel=1e-5)


def test_epoch_training_summarizes_run_batches():
    X, y = _dataset()
    model, twin = _model(), _model()
    np.random.seed(2)
    error, loss = epoch(_loader(X, y, shuffle=True), model, optim.Adam(model.parameters()))
    np.random.seed(2)
    results = list(run_batches(_loader(X, y, shuffle=True), twin, optim.Adam(twin.parameters())))
    n = sum(r.size for r in results)
    assert error == pytest.approx(1 - sum(r.correct for r in results) / n)
    assert loss == pytest.approx(sum(r.loss * r.size for r in results) / n)


def test_training_learns_a_separable_problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 2)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.uint8)
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = optim.SGD(model.parameters(), lr=0.5)
    first_error, first_loss = epoch(_loader(X, y, batch_size=10), model)
    for _ in range(30):
        epoch(_loader(X, y, batch_size=10, shuffle=True), model, opt)
    error, loss = epoch(_loader(X, y, batch_size=10), model)
    assert loss < first_loss / 4 and error <= 0.05


def test_batch_result_is_plain_frozen_data():
    result = BatchResult(loss=0.5, correct=3, size=4, predictions=np.array([1, 0, 2, 2]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.loss = 1.0  # type: ignore[misc]
    assert result == BatchResult(loss=0.5, correct=3, size=4, predictions=np.zeros(4))


def test_epoch_on_an_empty_loader_is_a_usage_error():
    X, y = _dataset(n=0)
    with pytest.raises(UsageError, match="no batches"):
        epoch(_loader(X, y), _model())
