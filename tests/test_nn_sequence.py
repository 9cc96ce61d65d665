"""Sequence layers against numpy: Embedding's draw, lookup and gradient."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle import nn
from needle.errors import UsageError


@pytest.mark.parametrize("device", [ndl.cpu_numpy(), ndl.cpu()], ids=str)
@settings(max_examples=25, deadline=None)
@given(
    num=st.integers(1, 12),
    dim=st.integers(1, 6),
    steps=st.integers(1, 5),
    batch=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_embedding_draws_one_randn_and_looks_rows_up(num, dim, steps, batch, seed, device):
    np.random.seed(seed)
    layer = nn.Embedding(num, dim, device=device)
    after = np.random.rand()  # the stream after the layer: one randn(num, dim), nothing more
    np.random.seed(seed)
    expected_weight = np.random.randn(num, dim).astype(np.float32)
    assert np.random.rand() == after
    np.testing.assert_array_equal(layer.weight.numpy(), expected_weight)

    rng = np.random.default_rng(seed)
    ids = rng.integers(0, num, size=(steps, batch))
    out = layer(ndl.Tensor(ids.astype(np.float32), device=device, requires_grad=False))
    assert out.shape == (steps, batch, dim) and out.device == device
    np.testing.assert_array_equal(out.numpy(), expected_weight[ids])

    # Gradient: each row of weight collects the cotangents of the positions holding its id.
    cotangent = rng.standard_normal((steps, batch, dim)).astype(np.float32)
    (out * ndl.Tensor(cotangent, device=device, requires_grad=False)).sum().backward()
    expected_grad = np.zeros((num, dim), dtype=np.float64)
    np.add.at(expected_grad, ids.ravel(), cotangent.reshape(-1, dim))
    np.testing.assert_allclose(layer.weight.grad.numpy(), expected_grad, rtol=1e-5, atol=1e-6)


def test_embedding_refuses_ids_out_of_range():
    layer = nn.Embedding(3, 2)
    with pytest.raises(UsageError, match=r"^Embedding: token id 3 is outside \[0, 3\)$"):
        layer(ndl.Tensor(np.array([[3.0]]), requires_grad=False))
    with pytest.raises(UsageError, match=r"^Embedding: token ids must be whole numbers"):
        layer(ndl.Tensor(np.array([[0.5]]), requires_grad=False))
