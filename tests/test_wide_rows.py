"""numpy_api's add, subtract, multiply and add_into against numpy's own: a row broadcast down
a narrow matrix is computed in wider rows (`_widened`), and must give numpy's shape, dtype
and bits for every shape, memory layout, row form and dtype pair."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from needle.backend_ndarray import numpy_api

OPS = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply}


@st.composite
def matrix_and_row(draw):
    """An (M, C) matrix, most often with enough rows to widen, in a row-major, transposed or
    sliced layout, and a row of C values as (C,) or (1, C), or a same-shaped operand."""
    rows = draw(st.one_of(st.integers(1, 40), st.integers(1000, 3000)))
    columns = draw(st.sampled_from([1, 2, 3, 5, 8, 16, 32, 48, 64, 255, 256, 300]))
    dtype_a, dtype_b = draw(st.sampled_from([np.float32, np.float64])), np.float32
    if draw(st.booleans()):
        dtype_b = np.float64
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layout = draw(st.sampled_from(["row-major", "transposed", "sliced"]))
    if layout == "transposed":
        a = rng.standard_normal((columns, rows)).astype(dtype_a).T
    elif layout == "sliced":
        a = rng.standard_normal((rows, columns + 1)).astype(dtype_a)[:, 1:]
    else:
        a = rng.standard_normal((rows, columns)).astype(dtype_a)
    form = draw(st.sampled_from([(columns,), (1, columns), (rows, columns)]))
    b = rng.standard_normal(form).astype(dtype_b)
    return a, b


@settings(max_examples=300, deadline=None)
@given(matrix_and_row(), st.sampled_from(sorted(OPS)))
def test_elementwise_ops_give_numpys_bits(case, name):
    a, b = case
    ours, theirs = getattr(numpy_api, name)(a, b), OPS[name](a, b)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


@settings(max_examples=300, deadline=None)
@given(matrix_and_row(), st.sampled_from(sorted(OPS)), st.sampled_from(["a", "new", "other"]))
def test_elementwise_ops_write_numpys_bits_into_out(case, name, into):
    """`out=` as numpy's: the result written into the array given (`a` itself, or a new
    one in a's layout or in the other memory order) and returned as it."""
    a, b = case
    dtype = np.result_type(a, b)
    theirs = OPS[name](a, b)
    if into == "a":
        if a.dtype != dtype:
            return
        out = a = a.copy(order="K")
        theirs = OPS[name](a, b)
    elif into == "new":
        out = np.empty_like(theirs, order="K")
    else:
        out = np.empty(theirs.shape, dtype, order="F" if theirs.flags.c_contiguous else "C")
    result = getattr(numpy_api, name)(a, b, out=out)
    assert result is out
    np.testing.assert_array_equal(out, theirs)


@settings(max_examples=200, deadline=None)
@given(matrix_and_row())
def test_add_into_a_whole_matrix_gives_numpys_bits(case):
    a, b = case  # a float64 row into a float32 matrix rounds, as += does
    ours, theirs = a.copy(order="K"), a.copy(order="K")  # a transposed matrix stays one
    numpy_api.add_into(ours, (slice(None), slice(None)), b)
    theirs += b
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("shape", [(2048, 16), (100352, 16), (25088, 32), (1568, 64)])
def test_narrow_row_major_matrices_are_widened(shape):
    """The cases the widening is for (a batch norm's and a conv bias's channel rows) take it:
    the tests above then compare the wide path itself with numpy."""
    a = np.zeros(shape, np.float32)
    for row in (np.ones(shape[1], np.float32), np.ones((1, shape[1]), np.float32)):
        wide = numpy_api._widened(a, row)
        assert wide is not None and wide[0].shape[1] == numpy_api.ROW_WIDTH
        assert np.shares_memory(wide[0], a)  # a view: no copy of the matrix


@pytest.mark.parametrize(
    "a, b",
    [
        (np.zeros((16, 2048)).T, np.ones(16)),  # (2048, 16), but column-major
        (np.zeros((512, 16)), np.ones(16)),  # too few rows to pay for the row copy
        (np.zeros((2048, 256)), np.ones(256)),  # wide already
        (np.zeros((2048, 16)), np.ones((2048, 16))),  # no broadcast
        (np.zeros((1031, 16)), np.ones(16)),  # a prime row count: no wider rows fit
        (np.zeros((2048, 16)), 2.0),  # a scalar
    ],
)
def test_other_pairs_take_numpys_broadcast(a, b):
    assert numpy_api._widened(a, b) is None


def test_add_into_with_an_index_array_is_numpys():
    """add_into's whole-matrix check must not compare index arrays with slices."""
    out = np.zeros((2048, 16), np.float32)
    numpy_api.add_into(out, (np.array([0, 5]), slice(None)), np.ones(16, np.float32))
    assert out.sum() == 32 and out[5].sum() == 16
