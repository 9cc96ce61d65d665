"""The gradient checker catches gradients broken on purpose, and tells kinks from errors."""

from __future__ import annotations

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
    SumIgnoringOutGrad,
    TransposedMatMul,
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
}


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_gradients_fail(case, dtype, fast):
    fn, inputs, failing = BROKEN[case]
    report = check_gradients(fn, inputs, dtype=dtype, fast=fast, seed=5)
    assert not report.passed
    assert report.failing_inputs == failing


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
    assert report32.atol > report64.atol and report32.rtol > report64.rtol
    for report in (report32, report64):
        assert default_tolerances(report.dtype) == {"atol": report.atol, "rtol": report.rtol}
    assert default_tolerances("float16") == default_tolerances("float32")
    with pytest.raises(TypeError):
        check_gradients(ndl.exp, [np.ones(3)], "float64")  # type: ignore[misc]


def test_tight_tolerance_turns_float32_rounding_into_failure():
    x = [rng.standard_normal((20, 20)), rng.standard_normal((20, 20))]
    assert check_gradients(ndl.matmul, x, dtype="float32").passed
    assert not check_gradients(ndl.matmul, x, dtype="float32", atol=1e-12, rtol=1e-12).passed


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


def test_check_module_refuses_a_parameter_it_cannot_swap():
    np.random.seed(0)
    with pytest.raises(UsageError, match=r"scales\.0 is held only in a list"):
        check_module(_Tied(scale_in_list=True), *_batch())
