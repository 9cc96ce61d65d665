"""The gradient checker catches gradients broken on purpose, and tells kinks from errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from broken_ops import (
    AddWithoutReduction,
    DetachedTanh,
    DivScalarForgettingTheScalar,
    ExpIgnoringOutGrad,
    MatMulForgettingTranspose,
    ScaledLog,
    ScaledMul,
    SigmoidTimesTransposedOnes,
    SplitStackingReversed,
    StackSplittingReversed,
    SumIgnoringOutGrad,
    TransposedMatMul,
    scaled_gradient,
)

import needle as ndl
from needle.autograd import Tensor
from needle.errors import UsageError
from needle.gradcheck import (
    check_all,
    check_gradients,
    check_module,
    check_op,
    default_tolerances,
    validate_tolerances,
)
from needle.ops import REGISTRY

rng = np.random.default_rng(0)
SQUARE = [rng.standard_normal((3, 3)), rng.standard_normal((3, 3))]
BROKEN = {
    "scaled by 1.01": (lambda a, b: ScaledMul()(a, b), SQUARE, [0]),
    "transposed": (lambda a, b: TransposedMatMul()(a, b), SQUARE, [0]),
    "missing broadcast reduction": (
        lambda a, b: AddWithoutReduction()(a, b),
        [rng.standard_normal((3, 4)), rng.standard_normal((4,))],
        [1],
    ),
    "ignores out_grad (exp)": (lambda a: ExpIgnoringOutGrad()(a), SQUARE[:1], [0]),
    "ignores out_grad (sum)": (lambda a: SumIgnoringOutGrad(None)(a), SQUARE[:1], [0]),
    # A TensorTuple out (a cotangent per element) and a tuple in (the checker's inputs).
    "split's slices reversed": (lambda a: SplitStackingReversed(1)(a), SQUARE[:1], [0]),
    "stack's inputs reversed": (
        lambda a, b, c: StackSplittingReversed(0)(ndl.make_tuple(a, b, c)),
        [rng.standard_normal((2, 3)) for _ in range(3)],
        [0, 2],
    ),
}


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_gradients_fail(case, dtype, fast):
    fn, inputs, failing = BROKEN[case]
    report = check_gradients(fn, inputs, dtype=dtype, fast=fast, seed=5)
    assert not report.passed
    assert report.failing_inputs == failing


@pytest.mark.parametrize("case", ["scaled by 1.01", "split's slices reversed"])
def test_the_check_computes_on_the_device_it_is_given(case):
    fn, inputs, failing = BROKEN[case]
    seen = set()

    def recording(*tensors):
        seen.update(t.device for t in tensors)
        return fn(*tensors)

    report = check_gradients(recording, inputs, device=ndl.cpu(), order=2, seed=5)
    assert seen == {ndl.cpu()} and report.failing_inputs == failing
    right = check_gradients(lambda a: ndl.split(a, 1), inputs[:1], device=ndl.cpu(), order=2)
    assert right.passed


def test_scaled_gradient_error_is_one_percent():
    fn, inputs, _ = BROKEN["scaled by 1.01"]
    worst = check_gradients(fn, inputs).inputs[0]
    assert worst.max_rel_error == pytest.approx(0.01 / 1.01, rel=1e-4)
    assert worst.analytic == pytest.approx(1.01 * worst.numerical, rel=1e-6)
    row, col = worst.worst_index
    assert worst.numerical == pytest.approx(inputs[1][row, col] * _cotangent(fn, inputs)[row, col])


def _cotangent(fn, inputs, seed=0):
    out = fn(*[Tensor(x, requires_grad=False) for x in inputs])
    return np.random.default_rng(seed).standard_normal(out.shape)


def test_missing_reduction_reports_the_shapes():
    fn, inputs, _ = BROKEN["missing broadcast reduction"]
    problem = check_gradients(fn, inputs).inputs[1].problem
    assert problem == "gradient has shape (3, 4), input has shape (4,)"


def test_second_order_catches_a_detached_gradient():
    x = [rng.standard_normal((2, 3))]
    fn = lambda a: DetachedTanh()(a)  # noqa: E731
    assert check_gradients(fn, x).passed
    report = check_gradients(fn, x, order=2)
    assert not report.passed and report.inputs[0].passed and not report.second_order[0].passed
    assert report.failing_inputs == [] and report.failing_second_order == [0]
    assert check_gradients(ndl.tanh, x, order=2).passed


ORDER_ONE_BUGS = {
    "log scaled by 1.01": lambda a: ScaledLog()(a),
    "divide_scalar forgetting the scalar": lambda a: DivScalarForgettingTheScalar(4.0)(a),
}


@pytest.mark.parametrize("case", sorted(ORDER_ONE_BUGS))
def test_order_two_checks_the_first_order_too(case):
    # A gradient off by a constant factor has second derivatives consistent with itself:
    # order 2 alone would pass it. Like torch's gradcheck with gradgradcheck, it checks both.
    x = [rng.uniform(0.5, 2.0, (2, 3))]
    report = check_gradients(ORDER_ONE_BUGS[case], x, order=2)
    assert not report.passed
    assert [item.order for item in report.inputs] == [1] and not report.inputs[0].passed
    assert [item.order for item in report.second_order] == [2]
    assert report.failing_inputs == [0]


def test_order_two_reports_the_same_first_order_as_order_one():
    x = [rng.standard_normal((2, 3)), rng.standard_normal((3, 2))]
    first, both = (
        check_gradients(ndl.matmul, x, seed=3),
        check_gradients(ndl.matmul, x, seed=3, order=2),
    )
    assert both.inputs == first.inputs and first.second_order == ()
    assert both.passed and len(both.second_order) == 2
    assert both.checked == first.checked + sum(item.checked for item in both.second_order)


def test_a_backward_that_raises_is_a_failed_check_naming_the_input():
    x = [rng.standard_normal((3, 4)), rng.standard_normal((4, 5))]
    report = check_gradients(lambda a, b: MatMulForgettingTranspose()(a, b), x, order=2)
    assert not report.passed and report.failing_inputs == [0]
    a, b = report.inputs
    assert a.problem.startswith(
        "backward raised UsageError in MatMulForgettingTranspose.gradient: "
        "matmul shapes do not fit: (3, 5) @ (4, 5)"
    )
    assert a.max_abs_error == math.inf and a.checked == 0
    assert b.passed and b.problem is None  # b's gradient is computed without a's
    # The second derivatives need the whole gradient: neither can be computed.
    assert report.failing_second_order == [0, 1]
    assert all("MatMulForgettingTranspose.gradient" in item.problem for item in report.second_order)


def test_a_numpy_error_in_backward_is_a_failed_check_too():
    report = check_gradients(lambda a: SigmoidTimesTransposedOnes()(a), [np.ones((3, 4))])
    (item,) = report.inputs
    assert not item.passed
    assert item.problem.startswith(
        "backward raised ValueError in SigmoidTimesTransposedOnes.gradient: operands could not"
    )


@pytest.mark.parametrize("name", ["exp", "tanh", "multiply", "matmul", "logsumexp", "power_scalar"])
def test_a_tenth_of_a_percent_error_fails_in_float64_by_default(name):
    spec = REGISTRY[name]
    params = spec.resolve_params({"scalar": -1.5} if name == "power_scalar" else {})
    inputs = spec.sample_inputs(params, rng=np.random.default_rng(0))
    broken = scaled_gradient(spec.op_class, 1.001)
    report = check_gradients(lambda *tensors: broken(**params)(*tensors), inputs)
    assert not report.passed
    worst = max(item.max_rel_error for item in report.inputs)
    assert worst == pytest.approx(0.001 / 1.001, rel=1e-3)


def test_relu_at_zero_is_a_kink_not_an_error():
    x = np.array([[0.0, 1.5, -2.0], [0.0, -0.5, 3.0]])
    report = check_gradients(ndl.relu, [x])
    assert report.passed
    assert report.inputs[0].nondifferentiable == ((0, 0), (1, 0))
    assert report.inputs[0].checked == 6


def test_smooth_functions_report_no_kinks():
    x = rng.standard_normal((4, 5)) * 10
    report = check_gradients(lambda t: ndl.logsumexp(t, (1,)), [x])
    assert report.passed and report.inputs[0].nondifferentiable == ()


def test_report_totals_over_its_inputs():
    a = np.array([[0.0, 1.5, -2.0], [0.5, 0.0, 3.0]])
    report = check_gradients(lambda x, y: ndl.relu(x) * y, [a, rng.standard_normal(3)])
    assert report.input_names == ("0", "1")  # named by position when no names are given
    assert report.elements == 6 + 3 and report.checked == 6 + 3
    assert report.kinks == 2  # relu at the two zeros of a
    first, second = report.inputs
    assert report.max_abs_error == max(first.max_abs_error, second.max_abs_error)
    assert report.max_rel_error == max(first.max_rel_error, second.max_rel_error)
    fast = check_gradients(lambda x: ndl.exp(x), [rng.standard_normal((20, 30))], fast=True)
    assert fast.elements == 600 and fast.checked == 3


def test_tolerances_are_keyword_only_with_dtype_defaults():
    report32 = check_gradients(ndl.exp, [np.ones(3)], dtype="float32")
    report64 = check_gradients(ndl.exp, [np.ones(3)])
    assert report32.rtol > report64.rtol and report32.atol == report64.atol == 0.0
    for report in (report32, report64):
        assert default_tolerances(report.dtype) == {"atol": report.atol, "rtol": report.rtol}
    with pytest.raises(TypeError):
        check_gradients(ndl.exp, [np.ones(3)], "float64")  # type: ignore[misc]


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("eps", [1e-6, 1e-4])
def test_default_rtol_is_truncation_plus_the_analytic_sides_rounding(dtype, eps):
    # eps²·K/6 (K = 1e4, the bending allowed) + u·κ (u the dtype's unit roundoff, κ = 1e3).
    u = np.finfo(dtype).eps / 2
    expected = eps**2 * 1e4 / 6 + u * 1e3
    assert default_tolerances(dtype, eps)["rtol"] == pytest.approx(expected, rel=0.01)


def test_a_gradient_rounded_to_float32_fails_a_float64_check():
    # float32's rounding (~6e-8) is far beyond what float64 allows, and within what float32
    # does: the tolerance follows the precision the gradient is computed in.
    class Float32Exp(ndl.ops.Exp):
        def gradient(self, out_grad, node):
            return out_grad * Tensor.make_const(node.numpy().astype(np.float32).astype(node.dtype))

    x = [rng.standard_normal((3, 4))]
    assert not check_gradients(lambda a: Float32Exp()(a), x).passed
    assert check_gradients(lambda a: Float32Exp()(a), x, dtype="float32").passed
    assert check_gradients(ndl.exp, x).passed


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"atol": math.inf}, r"atol must be a finite number ≥ 0 \(got inf\)"),
        ({"rtol": math.inf}, r"rtol must be a finite number ≥ 0 \(got inf\)"),
        ({"atol": math.nan}, r"atol must be a finite number ≥ 0 \(got nan\)"),
        ({"rtol": -1e-3}, r"rtol must be a finite number ≥ 0 \(got -0.001\)"),
        ({"eps": 0.0}, r"eps must be a number in \(0, 1\) \(got 0.0\)"),
        ({"eps": 1.0}, r"eps must be a number in \(0, 1\) \(got 1.0\)"),
        ({"eps": math.inf}, r"eps must be a number in \(0, 1\) \(got inf\)"),
        ({"eps": math.nan}, r"eps must be a number in \(0, 1\) \(got nan\)"),
        ({"eps": "1e-6"}, r"eps must be a number in \(0, 1\) \(got 1e-6\)"),
        ({"fast": True, "projections": 0}, r"projections must be a positive integer \(got 0\)"),
        ({"order": 3}, r"order must be 1 or 2 \(got 3\)"),
        ({"dtype": "int64"}, r"gradients need a floating dtype \(got int64\)"),
    ],
)
def test_settings_under_which_the_check_cannot_fail_are_refused(settings, message):
    with pytest.raises(UsageError, match=message):
        check_gradients(ndl.exp, [np.ones(3)], **settings)
    if set(settings) <= {"eps", "atol", "rtol"}:
        with pytest.raises(UsageError, match=message):
            validate_tolerances(**settings)


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_a_seed_numpy_cannot_take_is_refused_at_every_entry_point(seed):
    message = r"seed must be a non-negative integer"
    with pytest.raises(UsageError, match=message):
        check_gradients(ndl.exp, [np.ones(3)], seed=seed)
    with pytest.raises(UsageError, match=message):
        check_op("exp", seed=seed)
    with pytest.raises(UsageError, match=message):
        check_all(seed=seed)
    with pytest.raises(UsageError, match=message):
        check_module(ndl.nn.Linear(2, 3), np.ones((4, 2)), np.zeros(4, dtype=int), seed=seed)


def test_zero_tolerances_are_allowed():
    validate_tolerances(eps=1e-6, atol=0.0, rtol=0.0)
    assert check_gradients(ndl.exp, [np.ones(3)], atol=0.0, rtol=0.0).atol == 0.0


def test_an_op_output_with_no_elements_is_refused():
    # Its cotangent is empty: both gradients would be 0 and the check could not fail.
    with pytest.raises(UsageError, match=r"output has shape \(0, 3\), with no elements"):
        check_op("broadcast_to", {"shape": (0, 3)}, shapes=[(3,)])


def test_check_gradients_refuses_what_has_no_elements():
    # Called directly (not through check_op), an empty input or output would pass vacuously.
    with pytest.raises(UsageError, match=r"input 0 has shape \(0, 3\), with no elements"):
        check_gradients(ndl.exp, [np.ones((0, 3))])
    with pytest.raises(UsageError, match=r"output has shape \(0, 3\), with no elements"):
        check_gradients(lambda t: ndl.broadcast_to(t, (0, 3)), [np.ones(3)])


def test_check_op_reproducible_and_validated():
    a = check_op("logsumexp", {"axes": 1}, seed=7)
    b = check_op("logsumexp", {"axes": 1}, seed=7)
    assert a == b and a.params == {"axes": 1} and a.label == "logsumexp"
    with pytest.raises(UsageError, match="did you mean 'logsumexp'"):
        check_op("logsumexpp")
    with pytest.raises(UsageError, match="no parameter 'axis'"):
        check_op("summation", {"axis": 1})
    with pytest.raises(UsageError, match="needs --scalar"):
        check_op("power_scalar")
    with pytest.raises(UsageError, match="out of range"):
        check_op("summation", {"axes": 3})


@pytest.mark.parametrize(
    "name, params, scale",
    [("logsumexp", {"axes": 1}, 1e30), ("logsumexp", {"axes": None}, 1e-3), ("multiply", {}, 1e8)],
)
def test_correct_ops_pass_at_any_scale(name, params, scale):
    report = check_op(name, params, scale=scale, seed=2)
    assert report.passed and report.scale == scale


def test_scale_multiplies_the_sample_inputs(monkeypatch):
    seen = []

    def spy(a):
        seen.append(a.numpy().copy())
        return ndl.exp(a)

    spec = dataclasses.replace(REGISTRY["exp"], name="exp_spy", function=spy)
    monkeypatch.setitem(REGISTRY, spec.name, spec)
    check_op("exp_spy", seed=2)
    plain = seen[0]
    seen.clear()
    check_op("exp_spy", seed=2, scale=1e-3)
    np.testing.assert_array_equal(seen[0], plain * 1e-3)


@pytest.mark.parametrize("scale", [1e-3, 1e8])
def test_a_wrong_gradient_fails_at_any_scale(scale):
    # The tolerance is relative: scaling the inputs hides no error.
    x = [rng.standard_normal((3, 3)) * scale, rng.standard_normal((3, 3)) * scale]
    report = check_gradients(lambda a, b: scaled_gradient(ndl.ops.EWiseMul, 1.001)()(a, b), x)
    assert not report.passed


@pytest.mark.parametrize("scale", [0.0, -1.0, math.inf, math.nan, "2"])
def test_a_scale_that_is_not_a_positive_number_is_refused(scale):
    with pytest.raises(UsageError, match=r"scale must be a finite number > 0 \(got "):
        check_op("exp", scale=scale)
    with pytest.raises(UsageError, match=r"scale must be a finite number > 0"):
        check_all(scale=scale)


def test_check_op_refuses_too_many_elements_unless_fast():
    shapes = [(20, 30), (20, 30)]
    with pytest.raises(UsageError, match=r"1200 input elements is too many .*\(limit 1000\)"):
        check_op("add", shapes=shapes, max_elements=1000)
    assert check_op("add", shapes=shapes, max_elements=1200).checked == 1200
    assert check_op("add", shapes=shapes, max_elements=1000, fast=True).passed


def test_fast_mode_on_a_large_input():
    x = rng.standard_normal((300, 400))
    report = check_gradients(lambda t: ndl.logsumexp(t, (0,)), [x], fast=True)
    assert report.passed and report.inputs[0].checked == 3


# -- check_module: every parameter of a model -------------------------------------------------


class _Tied(ndl.nn.Module):
    """Two layers sharing one weight, and optionally a scale held only in a list."""

    def __init__(self, scale_in_list: bool = False):
        super().__init__()
        self.first = ndl.nn.Linear(3, 3)
        self.second = ndl.nn.Linear(3, 3)
        self.second.weight = self.first.weight
        self.head = ndl.nn.Linear(3, 2)
        if scale_in_list:
            self.scales = [ndl.nn.Parameter(ndl.init.ones(1))]

    def forward(self, x):
        if self.second.weight is not self.first.weight:
            raise AssertionError("the shared weight came apart")
        return self.head(ndl.tanh(self.second(ndl.tanh(self.first(x)))))


def _batch():
    return rng.standard_normal((4, 3)), np.array([0, 1, 1, 0])


def test_check_module_names_inputs_and_puts_parameters_back():
    np.random.seed(0)
    model = _Tied()
    before = [(name, id(p), p.dtype) for name, p in model.named_parameters()]
    report = check_module(model, *_batch())
    assert report.passed, report.to_dict()
    # The shared weight is one input, swapped in both layers (the forward pass checks).
    names = ("first.weight", "first.bias", "second.bias", "head.weight", "head.bias")
    assert report.input_names == names
    assert [(name, id(p), p.dtype) for name, p in model.named_parameters()] == before
    assert model.second.weight is model.first.weight


def test_a_gradient_that_is_zero_within_rounding_has_no_relative_error():
    # A bias before batch norm: the batch mean takes it out again, so ∂L/∂bias is 0, and
    # both sides find it up to rounding (about 1e-18 and 1e-11). Their relative error, 1,
    # means nothing; they pass on the absolute error, and the report says so.
    np.random.seed(0)
    model = ndl.nn.Sequential(ndl.nn.Linear(3, 4), ndl.nn.BatchNorm1d(4), ndl.nn.Linear(4, 2))
    report = check_module(model, rng.standard_normal((8, 3)), np.array([0, 1] * 4))
    weight, bias = report.inputs[:2]
    assert report.passed
    assert bias.zeros == bias.checked == 4 and bias.max_rel_error is None
    assert bias.max_abs_error <= bias.tolerance
    assert weight.zeros == 0 and weight.max_rel_error < 1e-6
    assert report.max_rel_error == max(item.max_rel_error or 0.0 for item in report.inputs)


def test_check_module_refuses_a_parameter_it_cannot_swap():
    np.random.seed(0)
    with pytest.raises(UsageError, match=r"scales\.0 is held only in a list"):
        check_module(_Tied(scale_in_list=True), *_batch())


# -- a learner's own op class ------------------------------------------------------------


class Cube(ndl.autograd.TensorOp):
    """x³·k, k a constructor argument."""

    def __init__(self, k: float = 1.0):
        self.k = k

    def compute(self, x):
        return self.k * x**3

    def gradient(self, out_grad, node):
        (x,) = node.inputs
        return out_grad * ndl.power_scalar(x, 2) * (3 * self.k)


class CubeWithAWrongGradient(Cube):
    def gradient(self, out_grad, node):
        (x,) = node.inputs
        return out_grad * ndl.power_scalar(x, 2) * (2 * self.k)  # 2 instead of 3


class Hypot(ndl.autograd.TensorOp):
    def compute(self, *arrays):
        return np.sqrt(sum(a * a for a in arrays))

    def gradient(self, out_grad, node):
        return tuple(out_grad * x / node for x in node.inputs)


def test_check_op_takes_an_op_class_of_your_own():
    report = check_op(Cube, {"k": 0.5}, seed=1, order=2)
    assert report.passed and report.label == "Cube" and report.params == {"k": 0.5}
    assert report.input_names == ("x",) and report.inputs[0].shape == (3, 4)
    assert check_op(Cube, seed=1).params == {"k": 1.0}  # the constructor's default
    bad = check_op(CubeWithAWrongGradient, seed=1)
    assert not bad.passed and bad.label == "CubeWithAWrongGradient"


def test_an_op_class_with_star_args_takes_its_inputs_from_the_shapes():
    report = check_op(Hypot, shapes=[(4,), (4,), (4,)], draw="positive")
    assert report.passed and report.input_names == ("0", "1", "2")
    with pytest.raises(UsageError, match=r"Hypot.compute takes \*arrays: give one shape per"):
        check_op(Hypot)


def test_draw_chooses_the_inputs_domain():
    # log of standard normal draws is nan at the negative ones: the check fails, and says so.
    with np.errstate(invalid="ignore"):
        assert not check_op("log", draw="normal").passed
    assert check_op("log", draw="positive").passed
    with pytest.raises(UsageError, match=r"unknown draw 'postive'; did you mean 'positive'"):
        check_op("log", draw="postive")


@pytest.mark.parametrize(
    "op, message",
    [
        (int, "int is not a TensorOp subclass"),
        (ndl.exp, "function is not a TensorOp subclass"),
    ],
)
def test_check_op_refuses_what_is_not_an_op_class(op, message):
    with pytest.raises(UsageError, match=message):
        check_op(op)


def test_an_op_class_s_required_argument_must_be_given():
    class Scale(ndl.autograd.TensorOp):
        def __init__(self, factor):
            self.factor = factor

        def compute(self, x):
            return x * self.factor

        def gradient(self, out_grad, node):
            return out_grad * self.factor

    with pytest.raises(UsageError, match="op 'Scale' needs --factor"):
        check_op(Scale)
    assert check_op(Scale, {"factor": -2.0}).passed
