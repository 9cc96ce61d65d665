"""numpy_api.sum's column-sum path (ones @ the rows of the array's memory) against numpy's
own reduction: every shape, set of axes, memory layout and keepdims gives numpy's shape,
dtype and values."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from needle.backend_ndarray import numpy_api


@st.composite
def arrays_and_axes(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    memory = rng.standard_normal(shape).astype(dtype)
    layout = tuple(draw(st.permutations(range(ndim))))
    a = memory.transpose(layout)  # the same memory seen in another axis order
    axes = tuple(
        draw(st.lists(st.integers(-ndim, ndim - 1), max_size=ndim, unique_by=lambda x: x % ndim))
    )
    return a, axes, draw(st.booleans())


@settings(max_examples=300, deadline=None)
@given(arrays_and_axes())
def test_sum_matches_numpy_for_every_layout(case):
    a, axes, keepdims = case
    ours = numpy_api.sum(a, axis=axes, keepdims=keepdims)
    theirs = np.add.reduce(a, axis=axes, keepdims=keepdims)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    tolerance = 1e-5 if a.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ours, theirs, rtol=tolerance, atol=tolerance * 10)


def test_nchw_view_of_nhwc_memory_takes_the_product_path():
    """The batch-norm case: channel statistics of an NCHW view whose memory is NHWC."""
    nhwc = np.random.default_rng(0).standard_normal((4, 3, 5, 2)).astype(np.float32)
    nchw = nhwc.transpose(0, 3, 1, 2)
    assert numpy_api._column_sums(nchw, (0, 2, 3), keepdims=True) is not None
    exact = nhwc.astype(np.float64).sum(axis=(0, 1, 2)).reshape(1, 2, 1, 1)
    np.testing.assert_allclose(numpy_api.sum(nchw, (0, 2, 3), keepdims=True), exact, rtol=1e-6)


def test_column_sums_are_at_least_as_close_to_float64_as_numpys_reduction():
    a = np.random.default_rng(1).random((50000, 8)).astype(np.float32)
    exact = a.astype(np.float64).sum(axis=0)
    ours = np.abs(numpy_api.sum(a, axis=0) - exact).max()
    theirs = np.abs(np.add.reduce(a, axis=0) - exact).max()
    assert ours <= theirs


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 40),
    st.integers(0, 40),
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from([0, (0,)]),
    st.booleans(),
)
def test_a_matrix_s_column_sums_are_the_general_paths_bits(rows, columns, dtype, axis, keepdims):
    """A row-major matrix's column sums skip the layout lookup: the same bits as the lookup
    gives the same memory seen with a third axis, in the shape and dtype numpy's sum has."""
    a = np.random.default_rng(rows * 41 + columns).standard_normal((rows, columns)).astype(dtype)
    ours = numpy_api.sum(a, axis=axis, keepdims=keepdims)
    through_the_lookup = numpy_api.sum(a[:, :, None], axis=axis)[:, 0]
    expected = np.sum(a, axis=axis, keepdims=keepdims)
    assert ours.shape == expected.shape and ours.dtype == expected.dtype
    assert np.array_equal(ours.reshape(-1), through_the_lookup)
