"""The convolution ops: conv against its nested-loop definition, flip / dilate / undilate
against numpy, gradients (orders 1 and 2) against float64 central differences, on shapes,
strides and paddings that hypothesis draws."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_contract import one_line_error
from conv_reference import conv_loops, dilate_loops, undilate_loops
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import needle as ndl
from needle.backend_ndarray import api
from needle.errors import UsageError
from needle.gradcheck import check_gradients
from needle.ops import REGISTRY
from needle.ops.conv import ConvInputGrad, ConvWeightGrad
from needle.ops.im2col import (
    col2im,
    col2im_plan,
    covering_offsets,
    tap_reads,
    used_offsets,
    used_taps,
)
from needle_cli.app import app


@st.composite
def conv_cases(draw, max_size=6):
    """(a shape, b shape, stride, padding): stride 1–3, padding 0–2, kernel 1–3, and H, W
    drawn from what the kernel fits in once padded."""
    stride, padding, kernel = (
        draw(st.integers(1, 3)),
        draw(st.integers(0, 2)),
        draw(st.integers(1, 3)),
    )
    smallest = max(1, kernel - 2 * padding)
    h, w = draw(st.integers(smallest, max_size)), draw(st.integers(smallest, max_size))
    n, c_in, c_out = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return (n, h, w, c_in), (kernel, kernel, c_in, c_out), stride, padding


def _normal(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for shape in shapes]


# -- conv forward ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(case=conv_cases(), dtype=st.sampled_from(["float64", "float32"]))
def test_conv_matches_the_nested_loop_definition(case, dtype):
    a_shape, b_shape, stride, padding = case
    a, b = _normal(a_shape, b_shape)
    out = ndl.conv(ndl.Tensor(a, dtype=dtype), ndl.Tensor(b, dtype=dtype), stride, padding)
    expected = conv_loops(a.astype(dtype), b.astype(dtype), stride, padding)
    n, h, w, _ = a_shape
    k = b_shape[0]
    assert out.shape == (
        n,
        (h + 2 * padding - k) // stride + 1,
        (w + 2 * padding - k) // stride + 1,
        b_shape[3],
    )
    assert out.dtype == np.dtype(dtype)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(out.numpy(), expected, rtol=tol, atol=tol)


def test_conv_defaults_follow_the_course():
    # The function pads by 1 by default, the class by 0: both as the course has them.
    a, b = _normal((1, 4, 4, 2), (3, 3, 2, 1))
    np.testing.assert_allclose(
        ndl.conv(ndl.Tensor(a), ndl.Tensor(b)).numpy(), conv_loops(a, b, 1, 1)
    )
    np.testing.assert_allclose(
        ndl.ops.Conv()(ndl.Tensor(a), ndl.Tensor(b)).numpy(), conv_loops(a, b, 1, 0)
    )


# -- flip, dilate, undilate ------------------------------------------------------------------


@st.composite
def shapes_and_axes(draw, past_the_end=False):
    """A shape and distinct axes of it, some negative; with `past_the_end` also axes ≥ ndim."""
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    ndim = len(shape)
    top = ndim + 1 if past_the_end else ndim - 1
    axes = draw(st.lists(st.integers(0, top), min_size=1, max_size=ndim + 1, unique=True))
    signs = draw(st.lists(st.booleans(), min_size=len(axes), max_size=len(axes)))
    axes = tuple(
        a - ndim if negative and a < ndim else a for a, negative in zip(axes, signs, strict=True)
    )
    return shape, axes


@settings(max_examples=40, deadline=None)
@given(case=shapes_and_axes())
def test_flip_matches_numpy_and_is_its_own_gradient(case):
    shape, axes = case
    (x,) = _normal(shape)
    np.testing.assert_array_equal(ndl.flip(ndl.Tensor(x), axes).numpy(), np.flip(x, axes))
    assert check_gradients(lambda t: ndl.flip(t, axes), [x], order=2).passed


@settings(max_examples=40, deadline=None)
@given(case=shapes_and_axes(past_the_end=True), dilation=st.integers(0, 3))
def test_dilate_matches_its_definition_and_undilate_inverts_it(case, dilation):
    shape, axes = case
    (x,) = _normal(shape)
    dilated = ndl.dilate(ndl.Tensor(x), axes, dilation)
    np.testing.assert_array_equal(dilated.numpy(), dilate_loops(x, axes, dilation))
    np.testing.assert_array_equal(ndl.undilate(dilated, axes, dilation).numpy(), x)
    assert check_gradients(lambda t: ndl.dilate(t, axes, dilation), [x], order=2).passed


@settings(max_examples=40, deadline=None)
@given(case=shapes_and_axes(past_the_end=True), dilation=st.integers(0, 3), extra=st.data())
def test_undilate_of_any_size_matches_numpy_slicing(case, dilation, extra):
    shape, axes = case
    # Sizes that are no multiple of dilation + 1 too: ⌈n / (dilation + 1)⌉ elements remain.
    shape = tuple(n + extra.draw(st.integers(0, 3)) for n in shape)
    (x,) = _normal(shape)
    step = dilation + 1
    present = {a % x.ndim for a in axes if a < x.ndim}
    expected = x[
        tuple(slice(None, None, step) if i in present else slice(None) for i in range(x.ndim))
    ]
    out = ndl.undilate(ndl.Tensor(x), axes, dilation).numpy()
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, undilate_loops(x, axes, dilation))
    assert check_gradients(lambda t: ndl.undilate(t, axes, dilation), [x], order=2).passed


def test_dilate_on_a_kernel_and_an_image_alike():
    # The course's conv dilates axes (1, 2) of an image; of a 2-D array only axis 1 exists.
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(
        ndl.dilate(ndl.Tensor(x), (1, 2), 1).numpy(),
        [[0, 0, 1, 0, 2, 0], [3, 0, 4, 0, 5, 0]],
    )


# -- gradients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("device", [ndl.cpu_numpy(), ndl.cpu()], ids=str)
@settings(max_examples=25, deadline=None)
@given(case=conv_cases(max_size=5), order=st.sampled_from([1, 2]))
def test_conv_gradients_at_any_stride_and_padding(case, order, device):
    a_shape, b_shape, stride, padding = case
    inputs = _normal(a_shape, b_shape, seed=1)
    fn = lambda a, b: ndl.conv(a, b, stride, padding)  # noqa: E731
    report = check_gradients(fn, inputs, order=order, device=device)
    assert report.passed, (case, report.inputs)


@pytest.mark.parametrize("op_class", [ConvInputGrad, ConvWeightGrad])
@pytest.mark.parametrize("stride, padding, kernel", [(1, 1, 3), (2, 2, 1), (3, 0, 2)])
def test_the_gradient_ops_themselves(op_class, stride, padding, kernel):
    """Both gradient ops, orders 1 and 2: their own gradients are conv and each other."""
    image, c_in, c_out = (2, 5, 4, 2), 2, 3
    ho = (5 + 2 * padding - kernel) // stride + 1
    wo = (4 + 2 * padding - kernel) // stride + 1
    out_grad_shape = (2, ho, wo, c_out)
    if op_class is ConvInputGrad:
        op = ConvInputGrad(stride, padding, size=image[1:3])
        shapes = [out_grad_shape, (kernel, kernel, c_in, c_out)]
    else:
        op = ConvWeightGrad(stride, padding, kernel=kernel)
        shapes = [image, out_grad_shape]
    for order in (1, 2):
        report = check_gradients(lambda x, y: op(x, y), _normal(*shapes, seed=2), order=order)
        assert report.passed, (order, report.inputs)


def test_gradient_ops_are_the_adjoints_of_conv():
    """⟨g, conv(a, b)⟩ = ⟨ConvInputGrad(g, b), a⟩ = ⟨ConvWeightGrad(a, g), b⟩: conv is linear
    in each input, and each gradient op is conv's adjoint in one of them."""
    a, b = _normal((2, 6, 5, 3), (3, 3, 3, 2), seed=5)
    out = ndl.conv(ndl.Tensor(a), ndl.Tensor(b), 2, 1).numpy()
    (g,) = _normal(out.shape, seed=6)
    grad_a = ConvInputGrad(2, 1, size=(6, 5))(ndl.Tensor(g), ndl.Tensor(b)).numpy()
    grad_b = ConvWeightGrad(2, 1, kernel=3)(ndl.Tensor(a), ndl.Tensor(g)).numpy()
    assert np.sum(g * out) == pytest.approx(np.sum(grad_a * a), rel=1e-12)
    assert np.sum(g * out) == pytest.approx(np.sum(grad_b * b), rel=1e-12)


def test_a_constant_input_gets_no_gradient_and_the_kernel_its_own():
    a, b = _normal((2, 4, 4, 1), (3, 3, 1, 2), seed=3)
    images = ndl.Tensor(a, requires_grad=False)
    kernel = ndl.Tensor(b)
    ndl.conv(images, kernel, 1, 1).sum().backward()
    assert images.grad is None
    # ∂Σout/∂b[di, dj, c, o] = Σ over windows of the padded input: the same for every o.
    padded = np.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = np.array(
        [
            [padded[:, di : di + 4, dj : dj + 4, :].sum(axis=(0, 1, 2)) for dj in range(3)]
            for di in range(3)
        ]
    )
    np.testing.assert_allclose(kernel.grad.numpy(), np.repeat(expected[..., None], 2, axis=-1))


def test_float32_stays_float32_through_both_gradients():
    a, b = (x.astype(np.float32) for x in _normal((2, 5, 5, 2), (3, 3, 2, 4)))
    ta, tb = ndl.Tensor(a), ndl.Tensor(b)
    out = ndl.conv(ta, tb, 2, 1)
    out.backward()
    assert out.dtype == ta.grad.dtype == tb.grad.dtype == np.float32
    assert ta.grad.shape == a.shape and tb.grad.shape == b.shape


@settings(max_examples=25, deadline=None)
@given(case=conv_cases(max_size=5), order=st.sampled_from([1, 2]))
def test_conv_with_a_bias_adds_it_and_differentiates_it(case, order):
    a_shape, b_shape, stride, padding = case
    a, b, bias = _normal(a_shape, b_shape, (b_shape[3],), seed=4)
    out = ndl.conv(ndl.Tensor(a), ndl.Tensor(b), stride, padding, bias=ndl.Tensor(bias))
    np.testing.assert_allclose(out.numpy(), conv_loops(a, b, stride, padding) + bias, atol=1e-12)
    fn = lambda a, b, c: ndl.conv(a, b, stride, padding, bias=c)  # noqa: E731
    report = check_gradients(fn, [a, b, bias], order=order)
    assert report.passed, (case, report.inputs)


def test_a_bias_of_the_wrong_shape_is_refused():
    a, b, bias = _normal((1, 4, 4, 2), (3, 3, 2, 3), (2,))
    with pytest.raises(UsageError, match=r"bias has shape \(2,\).*need \(3,\)"):
        ndl.conv(ndl.Tensor(a), ndl.Tensor(b), bias=ndl.Tensor(bias))


def test_the_kernel_gradient_from_the_forward_im2col_equals_a_fresh_one():
    """conv hands its im2col matrix to the kernel's gradient once; a second backward pass
    over the same graph copies the windows again and gets the same gradient."""
    a, b = _normal((2, 6, 5, 3), (3, 3, 3, 2), seed=7)
    ta, tb = ndl.Tensor(a), ndl.Tensor(b)
    out = ndl.conv(ta, tb, 2, 1)
    (g,) = _normal(out.shape, seed=8)
    out.backward(ndl.Tensor(g))
    first = tb.grad.numpy()
    out.backward(ndl.Tensor(g))
    fresh = ConvWeightGrad(2, 1, kernel=3)(ndl.Tensor(a), ndl.Tensor(g)).numpy()
    np.testing.assert_array_equal(tb.grad.numpy(), first)
    np.testing.assert_array_equal(first, fresh)


@st.composite
def one_axis(draw, max_size=7, max_stride=3):
    """(size, kernel, stride, padding, out) along one axis: an input of `size` rows, padded,
    with `out` ≥ 1 windows of `kernel` rows every `stride`."""
    size, kernel = draw(st.integers(1, max_size)), draw(st.integers(1, 5))
    stride, padding = draw(st.integers(1, max_stride)), draw(st.integers(0, 3))
    out = (size + 2 * padding - kernel) // stride + 1
    assume(out >= 1)
    return size, kernel, stride, padding, out


@settings(max_examples=200, deadline=None)
@given(axis=one_axis())
def test_used_taps_run_from_the_first_to_the_last_offset_that_reads_the_input(axis):
    """By brute force: the offsets at which some output window reads a real row."""
    size, kernel, stride, padding, out = axis
    reads = [
        d for d in range(kernel) if any(0 <= i * stride + d - padding < size for i in range(out))
    ]
    used = used_offsets(size, kernel, stride, padding)
    assert list(used) == (list(range(reads[0], reads[-1] + 1)) if reads else [])


@settings(max_examples=200, deadline=None)
@given(axis=one_axis(), d=st.integers(0, 4))
def test_reads_pairs_each_output_with_the_real_row_it_reads(axis, d):
    size, kernel, stride, padding, out = axis
    assume(d < kernel)
    pairs = [
        (i, i * stride + d - padding) for i in range(out) if 0 <= i * stride + d - padding < size
    ]
    outputs, rows = tap_reads(d, size, out, stride, padding)
    assert list(zip(range(out)[outputs], range(size)[rows], strict=True)) == pairs


@settings(max_examples=300, deadline=None)
@given(axis=one_axis(max_size=9, max_stride=4))
def test_covering_offsets_read_each_row_once_and_are_found_whenever_they_exist(axis):
    """By brute force over the offsets' read rows: the offsets found read every row exactly
    once between them; none are found only when some class of rows r, r + s, … is read
    in full by no offset (then col2im adds every tap into zeros)."""
    size, kernel, stride, padding, out = axis
    read = {
        d: [i * stride + d - padding for i in range(out) if 0 <= i * stride + d - padding < size]
        for d in range(kernel)
    }
    classes = [list(range(first, size, stride)) for first in range(min(stride, size))]
    found = covering_offsets(size, out, kernel, stride, padding)
    if found:
        assert sorted(row for d in found for row in read[d]) == list(range(size))
    else:
        assert any(all(read[d] != rows for d in range(kernel)) for rows in classes)


def _col2im_loops(g, b, size, stride, padding):
    """col2im's definition: every window's g · bᵀ added back at the rows it read."""
    n, ho, wo, _ = g.shape
    kernel, _, c_in, _ = b.shape
    out = np.zeros((n, *size, c_in))
    for i in range(ho):
        for j in range(wo):
            for di in range(kernel):
                for dj in range(kernel):
                    row, column = i * stride + di - padding, j * stride + dj - padding
                    if 0 <= row < size[0] and 0 <= column < size[1]:
                        out[:, row, column] += g[:, i, j] @ b[di, dj].T
    return out


@pytest.mark.parametrize("device", [ndl.cpu_numpy(), ndl.cpu()], ids=str)
@settings(max_examples=80, deadline=None)
@given(case=conv_cases(max_size=9))
def test_col2im_is_its_loop_definition_whichever_taps_are_written(case, device):
    """Against the loops, on every geometry: the taps that read each entry once are written,
    the rest added."""
    (n, h, w, c_in), (k, _, _, c_out), stride, padding = case
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    g, b = _normal((n, ho, wo, c_out), (k, k, c_in, c_out), seed=11)
    expected = _col2im_loops(g, b, (h, w), stride, padding)
    got = col2im(device.array(g), device.array(b), (h, w), stride, padding)
    np.testing.assert_allclose(api(got).to_numpy(got), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "size, out, stride, written",
    [
        ((28, 28), (14, 14), 2, [(1, 1), (1, 2), (2, 1), (2, 2)]),  # the MNIST CNN's 2nd layer
        ((8, 8), (8, 8), 1, [(1, 1)]),  # a "same" conv: the centre tap reads every entry
        ((9, 9), (3, 3), 4, []),  # a stride past the kernel: rows no window reads
    ],
)
def test_col2im_plan_writes_the_covering_taps_first(size, out, stride, written):
    plan = col2im_plan(size, out, 3, stride, 1)
    assert len(plan) == 9
    assert [(tap.di, tap.dj) for tap in plan if tap.write] == written
    writes = [tap.write for tap in plan]
    assert writes == sorted(writes, reverse=True)  # every write before every add


@pytest.mark.parametrize("size, stride", [(1, 1), (2, 2), (1, 2), (3, 3)])
def test_taps_that_read_only_padding_change_nothing(size, stride):
    """At a 1×1 map a 3×3 kernel with padding 1 reads the input at its centre alone: the
    output is the loops' definition, and every other tap's gradient is exactly zero."""
    a, b, g = _normal((2, size, size, 3), (3, 3, 3, 4), (1,), seed=9)
    ta, tb = ndl.Tensor(a), ndl.Tensor(b)
    out = ndl.conv(ta, tb, stride, 1)
    np.testing.assert_allclose(out.numpy(), conv_loops(a, b, stride, 1), atol=1e-12)
    (g,) = _normal(out.shape, seed=10)
    out.backward(ndl.Tensor(g))
    rows, columns = used_taps(a.shape, 3, stride, 1)
    unused = np.ones((3, 3), bool)
    unused[rows.start : rows.stop, columns.start : columns.stop] = False
    assert np.all(tb.grad.numpy()[unused] == 0)
    report = check_gradients(lambda x, y: ndl.conv(x, y, stride, 1), [a, b], order=2)
    assert report.passed, report.inputs


def test_a_conv_whose_windows_all_lie_in_the_padding_gives_its_bias():
    a, b, bias = _normal((1, 1, 1, 2), (1, 1, 2, 3), (3,), seed=11)
    ta, tb = ndl.Tensor(a), ndl.Tensor(b)
    out = ndl.conv(ta, tb, 3, 2, bias=ndl.Tensor(bias))  # windows at rows −2 and 1: none real
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(bias, out.shape))
    out.sum().backward()
    assert not ta.grad.numpy().any() and not tb.grad.numpy().any()


@settings(max_examples=25, deadline=None)
@given(case=conv_cases(max_size=5), order=st.sampled_from([1, 2]))
def test_conv_nchw_is_conv_between_the_layouts(case, order):
    """conv_nchw(x) = to_nchw(conv(to_nhwc(x))), bias included, and its gradients (orders
    1 and 2) match central differences."""
    a_shape, b_shape, stride, padding = case
    a, b, bias = _normal(a_shape, b_shape, (b_shape[3],), seed=12)
    nchw = a.transpose(0, 3, 1, 2)
    out = ndl.conv_nchw(ndl.Tensor(nchw), ndl.Tensor(b), stride, padding, bias=ndl.Tensor(bias))
    expected = ndl.conv(ndl.Tensor(a), ndl.Tensor(b), stride, padding, bias=ndl.Tensor(bias))
    np.testing.assert_array_equal(out.numpy(), expected.numpy().transpose(0, 3, 1, 2))
    fn = lambda x, y, z: ndl.conv_nchw(x, y, stride, padding, bias=z)  # noqa: E731
    report = check_gradients(fn, [nchw, b, bias], order=order)
    assert report.passed, (case, report.inputs)


# -- the registry and its sample inputs --------------------------------------------------------


def test_the_registry_holds_the_conv_ops_with_their_options():
    for name in ("flip", "dilate", "undilate", "conv"):
        assert getattr(ndl, name) is REGISTRY[name].function
    params = {p.name: (p.kind, p.default) for p in REGISTRY["conv"].params}
    assert params == {"stride": ("int", 1), "padding": ("int", 1)}


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_conv_cases_always_fit(seed):
    spec = REGISTRY["conv"]
    params, (a_shape, b_shape) = spec.random_case(np.random.default_rng(seed))
    k, p = b_shape[0], params["padding"]
    assert k <= a_shape[1] + 2 * p and k <= a_shape[2] + 2 * p and a_shape[3] == b_shape[2]


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", [0, 1, 2])
def test_default_conv_inputs_fit_every_setting(stride, padding):
    a_shape, b_shape = REGISTRY["conv"].shapes_for({"stride": stride, "padding": padding})
    a, b = _normal(a_shape, b_shape)
    np.testing.assert_allclose(
        ndl.conv(ndl.Tensor(a), ndl.Tensor(b), stride, padding).numpy(),
        conv_loops(a, b, stride, padding),
    )


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a_shape, b_shape, kwargs, message",
    [
        ((2, 4, 4), (3, 3, 1, 1), {}, r"NHWC input \(N, H, W, Cin\), got shape \(2, 4, 4\)"),
        (
            (1, 4, 4, 2),
            (3, 2, 2, 1),
            {},
            r"kernel of shape \(K, K, Cin, Cout\), got \(3, 2, 2, 1\)",
        ),
        ((1, 4, 4, 2), (3, 3, 3, 1), {}, "the input has 2 channels .* the kernel expects 3"),
        (
            (1, 2, 3, 1),
            (5, 5, 1, 1),
            {"padding": 0},
            "kernel size 5 is larger than the padded input 2×3",
        ),
        ((1, 4, 4, 1), (3, 3, 1, 1), {"stride": 0}, r"stride must be an integer ≥ 1 \(got 0\)"),
        ((1, 4, 4, 1), (3, 3, 1, 1), {"padding": -1}, r"padding must be an integer ≥ 0 \(got -1\)"),
        ((1, 4, 4, 1), (3, 3, 1, 1), {"stride": 1.5}, r"stride must be an integer ≥ 1 \(got 1.5\)"),
    ],
)
def test_conv_errors_name_the_problem(a_shape, b_shape, kwargs, message):
    a, b = _normal(a_shape, b_shape)
    with pytest.raises(UsageError, match=message):
        ndl.conv(ndl.Tensor(a), ndl.Tensor(b), **kwargs)


def test_dilation_errors_name_the_problem():
    x = ndl.Tensor(np.ones((2, 3)))
    with pytest.raises(UsageError, match=r"dilate: dilation must be an integer ≥ 0 \(got -1\)"):
        ndl.dilate(x, (0,), -1)
    with pytest.raises(UsageError, match="axis -3 is out of range"):
        ndl.undilate(x, (-3,), 1)


# -- the command line --------------------------------------------------------------------------

runner = CliRunner()


@pytest.mark.parametrize(
    "args, params",
    [
        (["conv", "--stride", "2", "--padding", "1"], {"stride": 2, "padding": 1}),
        (["conv", "--stride", "3", "--padding", "0", "--order", "2"], {"stride": 3, "padding": 0}),
        (["flip", "--axes", "0,1"], {"axes": [0, 1]}),
        (
            ["dilate", "--axes", "1", "--dilation", "2", "--dtype", "float32"],
            {"axes": 1, "dilation": 2},
        ),
    ],
)
def test_gradcheck_command_checks_the_conv_ops(args, params):
    result = runner.invoke(app, ["gradcheck", *args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["passed"] and data["params"] == params
    if "--stride" in args:
        assert f"--stride {params['stride']} --padding {params['padding']}" in data["reproduce"]


def test_gradcheck_refuses_a_fractional_stride():
    result = runner.invoke(app, ["gradcheck", "conv", "--stride", "2.5"])
    assert one_line_error(result, 2) == "--stride expects an integer (got '2.5')"


def test_windows_keeps_the_first_count_windows_and_never_more_than_fit():
    from needle.ops import strided

    a = np.arange(2 * 5 * 6 * 3, dtype=np.float64).reshape(2, 5, 6, 3)
    full = strided.windows(a, 3, 1)
    assert full.shape == (2, 3, 4, 3, 3, 3)
    np.testing.assert_array_equal(strided.windows(a, 3, 1, count=(2, 3)), full[:, :2, :3])
    with pytest.raises(ValueError, match=r"\(3, 5\) windows asked of an input that fits \(3, 4\)"):
        strided.windows(a, 3, 1, count=(3, 5))


@settings(max_examples=60, deadline=None)
@given(case=conv_cases(max_size=9), channels=st.sampled_from([1, 2]))
def test_im2col_rows_are_the_padded_windows_at_the_used_taps(case, channels):
    """im2col's matrix, row (n, i, j), column (di, dj, c), is the padded input at
    (n, i·s + di, j·s + dj, c) over the taps that read the input (`used_taps`); one-channel
    images take the tap-by-tap copy, others the one copy of the window view."""
    from needle.ops.im2col import im2col

    (n, h, w, _), (k, *_), stride, padding = case
    a = np.random.default_rng(3).standard_normal((n, h, w, channels))
    cols, (_, ho, wo) = im2col(a, k, stride, padding)
    rows, columns = used_taps(a.shape, k, stride, padding)
    padded = np.pad(a, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    expected = np.array(
        [
            [
                padded[b, i * stride + di, j * stride + dj, c]
                for di in rows
                for dj in columns
                for c in range(channels)
            ]
            for b in range(n)
            for i in range(ho)
            for j in range(wo)
        ]
    ).reshape(n * ho * wo, len(rows) * len(columns) * channels)
    np.testing.assert_array_equal(cols, expected)
