"""standardize's pieces on their own: the one-node gradient StandardizeGrad and the statistic
InverseStd, each against central differences at orders 1 and 2 (standardize itself is
checked with every registered op), and BatchNorm2d on an NCHW view of NHWC memory against
the same images laid out NCHW."""

from __future__ import annotations

import numpy as np
import pytest

import needle as ndl
from needle import nn, ops
from needle.errors import UsageError
from needle.gradcheck import check_gradients


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize(
    "shape, axes", [((5, 3), (0,)), ((2, 3, 4), (2,)), ((2, 3, 2, 2), (0, 2, 3))]
)
def test_standardize_grad_as_a_function_of_all_three_inputs(shape, axes, order):
    rng = np.random.default_rng(0)
    r_shape = tuple(1 if i in axes else n for i, n in enumerate(shape))
    inputs = [rng.standard_normal(shape), rng.standard_normal(shape), rng.uniform(0.5, 2, r_shape)]
    report = check_gradients(
        lambda u, x, r: ops.StandardizeGrad(axes)(u, x, r), inputs, order=order
    )
    assert report.passed, report.inputs


@pytest.mark.parametrize("order", [1, 2])
def test_inverse_std_against_its_definition_and_differences(order):
    x = np.random.default_rng(1).standard_normal((6, 4))
    r = ops.InverseStd((0,), 0.1)(ndl.Tensor(x)).numpy()
    np.testing.assert_allclose(r, 1 / np.sqrt(x.var(axis=0, keepdims=True) + 0.1), rtol=1e-12)
    report = check_gradients(lambda t: ops.InverseStd((0,), 0.1)(t), [x], order=order)
    assert report.passed, report.inputs


def test_standardize_keeps_its_statistics_for_the_running_averages():
    x = np.random.default_rng(2).standard_normal((7, 3))
    op = ops.Standardize((0,), 1e-5)
    op(ndl.Tensor(x))
    np.testing.assert_allclose(op.mean, x.mean(axis=0, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(op.var, x.var(axis=0, keepdims=True), rtol=1e-12)


def test_a_second_backward_pass_recomputes_what_the_first_took():
    x = ndl.Tensor(np.random.default_rng(3).standard_normal((5, 2)))
    y = ops.standardize(x, (0,)) * ndl.Tensor(np.arange(10.0).reshape(5, 2))
    y.sum().backward()
    first = x.grad.numpy()
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), first, rtol=1e-12, atol=1e-15)


def test_batchnorm2d_on_a_view_of_nhwc_memory_equals_it_on_nchw_memory():
    nhwc = np.random.default_rng(4).standard_normal((3, 4, 5, 2))
    results = []
    for images in (nhwc.transpose(0, 3, 1, 2), np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))):
        np.random.seed(0)
        bn = nn.BatchNorm2d(2, dtype="float64")
        bn.weight.data = ndl.Tensor(np.array([1.5, -0.5]))
        x = ndl.Tensor(images)
        out = bn(x)
        out.backward(ndl.Tensor(np.cos(np.arange(out.size)).reshape(out.shape)))
        results.append(
            (out.numpy(), x.grad.numpy(), bn.weight.grad.numpy(), bn.running_var.numpy())
        )
    for view, compact in zip(*results, strict=True):
        np.testing.assert_allclose(view, compact, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("shape, axes", [((6, 3), (0,)), ((2, 3, 2, 2), (0, 2, 3))])
def test_standardize_with_a_scale_and_shift_per_group(shape, axes, order):
    rng = np.random.default_rng(5)
    group = tuple(1 if i in axes else n for i, n in enumerate(shape))
    x, scale, shift = (
        rng.standard_normal(shape),
        rng.standard_normal(group),
        rng.standard_normal(group),
    )
    out = ops.standardize(
        ndl.Tensor(x), axes, 0.1, scale=ndl.Tensor(scale), shift=ndl.Tensor(shift)
    )
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    np.testing.assert_allclose(
        out.numpy(), (x - mean) / np.sqrt(var + 0.1) * scale + shift, rtol=1e-12
    )
    fn = lambda a, s, t: ops.standardize(a, axes, 0.1, scale=s, shift=t)  # noqa: E731
    report = check_gradients(fn, [x, scale, shift], order=order)
    assert report.passed, report.inputs


def test_a_scale_of_the_wrong_shape_or_alone_is_refused():
    x = ndl.Tensor(np.ones((4, 3)))
    with pytest.raises(
        UsageError, match=r"scale has shape \(2,\); one per group .* is \(1, 3\) or \(3,\)"
    ):
        ops.standardize(x, (0,), scale=ndl.Tensor(np.ones(2)), shift=ndl.Tensor(np.ones(3)))
    with pytest.raises(UsageError, match="a scale and a shift together"):
        ops.standardize(x, (0,), scale=ndl.Tensor(np.ones((1, 3))))


@pytest.mark.parametrize("order", [1, 2])
def test_a_scale_and_shift_per_channel_without_the_standardized_axes(order):
    """BatchNorm2d's (C,) weight and bias on NCHW images: the same as (1, C, 1, 1) ones."""
    rng = np.random.default_rng(6)
    x, scale, shift = (
        rng.standard_normal((2, 3, 2, 2)),
        rng.standard_normal(3),
        rng.standard_normal(3),
    )
    flat = ops.standardize(
        ndl.Tensor(x), (0, 2, 3), scale=ndl.Tensor(scale), shift=ndl.Tensor(shift)
    )
    kept = ops.standardize(
        ndl.Tensor(x),
        (0, 2, 3),
        scale=ndl.Tensor(scale.reshape(1, 3, 1, 1)),
        shift=ndl.Tensor(shift.reshape(1, 3, 1, 1)),
    )
    np.testing.assert_array_equal(flat.numpy(), kept.numpy())
    fn = lambda a, s, t: ops.standardize(a, (0, 2, 3), scale=s, shift=t)  # noqa: E731
    report = check_gradients(fn, [x, scale, shift], order=order)
    assert report.passed, report.inputs


def test_standardize_grad_with_a_gradient_in_another_memory_order():
    """x̂ an NCHW view of NHWC memory (computed as rows), u NCHW-contiguous (as after a
    Flatten): the same numbers as with both contiguous."""
    rng = np.random.default_rng(7)
    nhwc_x, u = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 5, 3, 4))
    r = rng.uniform(0.5, 2, (1, 5, 1, 1))
    x_view = nhwc_x.transpose(0, 3, 1, 2)
    op = ops.StandardizeGrad((0, 2, 3))
    mixed = op.compute(u, x_view, r)
    plain = op.compute(u, np.ascontiguousarray(x_view), r)
    assert mixed.shape == plain.shape == u.shape
    np.testing.assert_allclose(mixed, plain, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["nchw", "view of nhwc", "rows"])
def test_the_affine_gradient_in_one_node_is_the_composition_bit_for_bit(layout, dtype, device):
    # Batch norm's backward as one AffineStandardizeGrad node gives the seven-node
    # composition's gradients in x, the scale and the shift, every bit.
    rng = np.random.default_rng(14)
    if layout == "rows":
        x, axes, groups = rng.standard_normal((6, 3)), (0,), (3,)
    else:
        nhwc = rng.standard_normal((2, 3, 3, 4))
        x = nhwc.transpose(0, 3, 1, 2) if layout == "view of nhwc" else nhwc
        axes, groups = (0, 2, 3), (x.shape[1],)
    scale, shift = rng.standard_normal(groups), rng.standard_normal(groups)
    u = rng.standard_normal(x.shape).astype(dtype)
    results = []
    for fused in (True, False):
        inputs = [ndl.Tensor(a.astype(dtype), device=device) for a in (x, scale, shift)]
        out = ops.Standardize(axes, 1e-5, fused=fused)(*inputs)
        out.backward(ndl.Tensor(u, device=device))
        results.append([out.numpy()] + [t.grad.numpy() for t in inputs])
    for got, want in zip(*results, strict=True):
        assert got.dtype == want.dtype == dtype
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("order", [1, 2])
def test_the_affine_gradient_differentiates_in_its_out_grad_too(order):
    # Standardize's order-2 checks hold the out_grad constant; here it is an input.
    rng = np.random.default_rng(15)
    x, scale, shift, u = (rng.standard_normal(s) for s in [(5, 2), (2,), (2,), (5, 2)])
    grad_op = lambda *t: ops.AffineStandardizeGrad((0,), 0.1)(*t)  # noqa: E731
    report = check_gradients(grad_op, [x, scale, shift, u], order=order)
    assert report.passed, report.inputs


def test_batchnorm2d_evaluation_on_a_view_of_nhwc_memory_equals_it_on_nchw_memory():
    # normalize reads an NCHW view of NHWC memory as the rows of that memory: the same
    # numbers as on the images laid out NCHW, and as the definition.
    rng = np.random.default_rng(16)
    nhwc = rng.standard_normal((3, 4, 5, 2))
    bn = nn.BatchNorm2d(2, dtype="float64").eval()
    bn.running_mean.data = ndl.Tensor(np.array([0.3, -1.0]))
    bn.running_var.data = ndl.Tensor(np.array([2.0, 0.5]))
    bn.weight.data, bn.bias.data = ndl.Tensor(np.array([1.5, -0.5])), ndl.Tensor(np.ones(2))
    view = nhwc.transpose(0, 3, 1, 2)
    from needle.ops.standardize import GroupLayout

    layouts = [GroupLayout.of(a, (0, 2, 3)).order for a in (view, np.ascontiguousarray(view))]
    assert layouts[0] is not None and layouts[1] is None  # one image each way
    outs = [bn(ndl.Tensor(images)).numpy() for images in (view, np.ascontiguousarray(view))]
    np.testing.assert_array_equal(outs[0], outs[1])  # every number the same
    along = (1, 2, 1, 1)
    mean, var = np.array([0.3, -1.0]).reshape(along), np.array([2.0, 0.5]).reshape(along)
    w, b = np.array([1.5, -0.5]).reshape(along), 1.0
    np.testing.assert_allclose(outs[0], (view - mean) / np.sqrt(var + 1e-5) * w + b, rtol=1e-12)


@pytest.mark.parametrize(
    "x_dtype, affine_dtype, u_dtype",
    [
        ("float32", "float64", "float32"),
        ("float32", "float32", "float64"),
        ("float64", "float32", "float32"),
        ("float32", "float32", "float32"),
    ],
)
def test_mixed_dtypes_give_numpys_promotion(x_dtype, affine_dtype, u_dtype):
    """Standardize writes over its own temporaries only where every operand has their dtype
    (`_spare`): with a wider scale and shift the output has numpy's promoted dtype, and with
    a wider out_grad so do the gradient's sums; the values are the float64 definition's."""
    rng = np.random.default_rng(16)
    rows = 2048  # enough rows for numpy_api's wide-row form to be taken
    x = rng.standard_normal((rows, 3)).astype(x_dtype)
    scale, shift = (rng.standard_normal(3).astype(affine_dtype) for _ in range(2))
    u = rng.standard_normal((rows, 3)).astype(u_dtype)
    inputs = [ndl.Tensor(a) for a in (x, scale, shift)]
    out = ops.Standardize((0,), 1e-5)(*inputs)
    out.backward(ndl.Tensor(u))

    x64, u64 = x.astype(np.float64), u.astype(np.float64)
    r = 1 / np.sqrt(x64.var(axis=0) + 1e-5)
    x_hat = (x64 - x64.mean(axis=0)) * r
    expected = x_hat * scale + shift
    assert out.dtype == np.result_type(x, scale, shift)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)
    projected = u64 - u64.mean(axis=0) - x_hat * (u64 * x_hat).mean(axis=0)
    grads = [r * scale * projected, (u64 * x_hat).sum(axis=0), u64.sum(axis=0)]
    for tensor, want in zip(inputs, grads, strict=True):
        assert tensor.grad.dtype == tensor.dtype
        np.testing.assert_allclose(tensor.grad.numpy(), want, rtol=1e-4, atol=1e-3)
