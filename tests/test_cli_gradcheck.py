"""`needle gradcheck` through CliRunner: options from the registry, numbers in the output,
exit codes, and gradients broken on purpose that must exit 1."""

from __future__ import annotations

import dataclasses
import functools
import json
import shlex

import numpy as np
import pytest
import typer.main
from broken_ops import (
    AddWithoutReduction,
    DetachedTanh,
    DivScalarForgettingTheScalar,
    ExpIgnoringOutGrad,
    MatMulForgettingTranspose,
    ScaledExp,
    ScaledLog,
    ScaledTanh,
    SumIgnoringOutGrad,
    TransposedMatMul,
    scaled_gradient,
)
from cli_contract import one_line_error
from typer.testing import CliRunner

import needle as ndl
from needle.gradcheck import check_op, default_tolerances
from needle.ops import REGISTRY
from needle_cli.app import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


# -- every command's help ----------------------------------------------------------------


def _commands(group, path=()):
    for name, command in getattr(group, "commands", {}).items():
        yield path + (name,)
        yield from _commands(command, path + (name,))


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_gradcheck_is_registered():
    assert ("gradcheck",) in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_help_exits_0(path):
    result = run(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: needle " + " ".join(path) in result.stdout


def test_gradcheck_help_explains_op_options_with_examples():
    text = run("gradcheck", "--help").output
    for phrase in ("--list", "--axes 0,1", "--scalar -1.5", "--input-shape", "--fast", "--all"):
        assert phrase in text


# -- one op ------------------------------------------------------------------------------


def test_logsumexp_passes_and_prints_the_table():
    result = run("gradcheck", "logsumexp", "--axes", "1")
    assert result.exit_code == 0, result.output
    assert "gradcheck logsumexp(a, axes=1)" in result.stdout
    assert "(3, 4)" in result.stdout and "12" in result.stdout
    assert "✓ pass" in result.stdout


def test_json_report_has_every_number():
    data = run_json("gradcheck", "logsumexp", "--axes", "1")
    assert data["passed"] is True and data["label"] == "logsumexp"
    assert data["params"] == {"axes": 1} and data["input_names"] == ["a"]
    (item,) = data["inputs"]
    assert item["shape"] == [3, 4] and item["checked"] == 12 and item["passed"]
    assert item["max_abs_error"] < 1e-7 and len(item["worst_index"]) == 2
    assert item["analytic"] == pytest.approx(item["numerical"], rel=1e-6)
    assert data["rtol"] == default_tolerances("float64")["rtol"] and data["seed"] == 0
    assert data["reproduce"] == "needle gradcheck logsumexp --axes 1 --shape 3,4 --seed 0"


@pytest.mark.parametrize(
    "text, axes", [("1", 1), ("0,1", (0, 1)), ("-1", -1), ("none", None), ("(0, 1)", (0, 1))]
)
def test_axes_forms(text, axes):
    data = run_json("gradcheck", "logsumexp", "--axes", text)
    assert data["passed"] and data["params"] == {"axes": json.loads(json.dumps(axes))}
    # The same check as the library's with these axes: same inputs, same numbers.
    expected = json.loads(json.dumps(check_op("logsumexp", {"axes": axes}).to_dict()))
    assert data["inputs"] == expected["inputs"]


def test_option_equals_form_and_op_after_its_options():
    a = run_json("gradcheck", "summation", "--axes=0,1")
    b = run_json("gradcheck", "--axes", "0,1", "summation")
    assert a["params"] == b["params"] == {"axes": [0, 1]}
    assert a["inputs"] == b["inputs"]


def test_power_scalar_negative_exponent():
    data = run_json("gradcheck", "power_scalar", "--scalar", "-1.5")
    assert data["passed"] and data["params"] == {"scalar": -1.5}
    assert "--scalar -1.5" in data["reproduce"]


def test_shape_overrides_one_per_input():
    data = run_json("gradcheck", "add", "--shape", "3,4", "--shape", "4")
    assert [item["shape"] for item in data["inputs"]] == [[3, 4], [4]]
    assert [item["checked"] for item in data["inputs"]] == [12, 4]
    data = run_json("gradcheck", "summation", "--axes", "0,2", "--shape", "2,3,4")
    assert data["passed"] and data["inputs"][0]["checked"] == 24


def test_a_trailing_comma_is_a_one_tuple():
    # "(3,)" is how the report's table prints a 1-d shape: pasting it back must work.
    data = run_json("gradcheck", "exp", "--shape", "(3,)")
    assert data["inputs"][0]["shape"] == [3]
    data = run_json("gradcheck", "summation", "--axes", "1,", "--shape", "3,4,")
    assert data["params"] == {"axes": 1} and data["inputs"][0]["shape"] == [3, 4]


def test_reshape_and_broadcast_take_their_target_from_shape():
    data = run_json("gradcheck", "reshape", "--shape", "4,3", "--input-shape", "2,6")
    assert data["params"] == {"shape": [4, 3]} and data["inputs"][0]["shape"] == [2, 6]
    assert data["reproduce"].endswith("--shape 4,3 --input-shape 2,6 --seed 0")
    data = run_json("gradcheck", "broadcast_to", "--shape", "3,4", "--input-shape", "()")
    assert data["passed"] and data["inputs"][0]["shape"] == []
    assert "--input-shape '()'" in data["reproduce"]


def test_float32_uses_float32_tolerances():
    data = run_json("gradcheck", "matmul", "--dtype", "float32")
    assert data["passed"] and data["dtype"] == "float32"
    assert (data["atol"], data["rtol"]) == tuple(default_tolerances("float32").values())
    assert data["reproduce"].endswith("--dtype float32")


def test_order_two_checks_the_gradient_of_the_gradient():
    data = run_json("gradcheck", "tanh", "--order", "2")
    assert data["passed"] and data["order"] == 2
    assert "--order 2" in data["reproduce"]


def test_scale_probes_large_magnitudes_and_is_reproduced():
    data = run_json("gradcheck", "logsumexp", "--axes", "1", "--scale", "1e30")
    assert data["passed"] and data["scale"] == 1e30
    assert (
        data["reproduce"]
        == "needle gradcheck logsumexp --axes 1 --shape 3,4 --seed 0 --scale 1e+30"
    )
    again = runner.invoke(app, shlex.split(data["reproduce"])[1:] + ["--json"])
    assert json.loads(again.stdout)["inputs"] == data["inputs"]
    assert "scale 1e+30" in run("gradcheck", "logsumexp", "--axes", "1", "--scale", "1e30").stdout
    data = run_json("gradcheck", "--all", "--scale", "10")
    assert all(check["scale"] == 10 for check in data["checks"])


def test_logsoftmax_at_large_magnitude_in_float32():
    result = run("gradcheck", "logsoftmax", "--scale", "1e4", "--dtype", "float32")
    assert result.exit_code == 0, result.output


def test_scale_does_not_hide_a_wrong_gradient(monkeypatch):
    _register_broken(monkeypatch, "log_scaled", "log", ScaledLog)
    for scale in ("1e-3", "1e6"):
        assert run("gradcheck", "log_scaled", "--scale", scale).exit_code == 1


def test_fast_checks_three_projections_per_input():
    data = run_json("gradcheck", "matmul", "--shape", "200,300", "--shape", "300,100", "--fast")
    assert data["passed"] and data["fast"]
    assert [item["checked"] for item in data["inputs"]] == [3, 3]
    assert "projection" in run("gradcheck", "exp", "--fast").stdout


def test_elementwise_check_of_a_large_input_points_to_fast():
    result = run("gradcheck", "exp", "--shape", "200,200")
    assert result.exit_code == 2
    assert "40000 input elements" in result.stderr and "--fast" in result.stderr
    assert run("gradcheck", "exp", "--shape", "200,200", "--fast").exit_code == 0


def test_seed_reproduces_and_changes_the_inputs():
    a, b = run_json("gradcheck", "exp", "--seed", "3"), run_json("gradcheck", "exp", "--seed", "3")
    c = run_json("gradcheck", "exp", "--seed", "4")
    del a["seconds"], b["seconds"], c["seconds"]
    assert a == b
    assert a["inputs"][0]["analytic"] != c["inputs"][0]["analytic"]


def test_tolerances_and_step_are_passed_and_reproduced():
    data = run_json("gradcheck", "exp", "--eps", "1e-5", "--atol", "1e-3", "--rtol", "0.01")
    assert (data["eps"], data["atol"], data["rtol"]) == (1e-5, 1e-3, 0.01)
    assert data["reproduce"].endswith("--eps 1e-05 --atol 0.001 --rtol 0.01")


def test_zero_tolerances_leave_the_rounding_floor(monkeypatch):
    # With atol = rtol = 0, what rounding alone explains still passes; a gradient that is a
    # millionth off does not, even with the default tolerances.
    assert run("gradcheck", "exp", "--atol", "0", "--rtol", "0").exit_code == 0
    _register_broken(monkeypatch, "exp_off", "exp", scaled_gradient(ndl.ops.Exp, 1 + 1e-6))
    result = run("gradcheck", "exp_off")
    assert result.exit_code == 1 and "✗ FAIL" in result.stdout


# -- kinks ---------------------------------------------------------------------------------


def _integers(rng, shape):
    return rng.integers(-1, 2, shape).astype(np.float64)  # many exact zeros: relu's kink


def test_kinks_are_reported_not_failed(monkeypatch):
    spec = dataclasses.replace(REGISTRY["relu"], name="relu_on_integers", draws=(_integers,))
    monkeypatch.setitem(REGISTRY, spec.name, spec)
    data = run_json("gradcheck", spec.name, "--shape", "4,5", "--seed", "1")
    zeros = np.argwhere(_integers(np.random.default_rng(1), (4, 5)) == 0)
    assert data["passed"] and len(zeros) > 0
    assert data["inputs"][0]["nondifferentiable"] == zeros.tolist()
    result = run("gradcheck", spec.name, "--shape", "4,5", "--seed", "1")
    assert result.exit_code == 0
    assert (
        f"({len(zeros)} kinks skipped)" in result.stdout
        and "not differentiable at" in result.stdout
    )


# -- gradients broken on purpose -----------------------------------------------------------


# name: (registered op it imitates, broken op class, op options, shapes, failing input)
BROKEN = {
    "exp_times_1_01": ("exp", ScaledExp, [], ["3,4"], "a"),
    "matmul_transposed": ("matmul", TransposedMatMul, [], ["3,3", "3,3"], "a"),
    "add_no_reduction": ("add", AddWithoutReduction, [], ["3,4", "4"], "b"),
    "exp_no_out_grad": ("exp", ExpIgnoringOutGrad, [], ["3,4"], "a"),
    "sum_no_out_grad": ("summation", SumIgnoringOutGrad, ["--axes", "1"], ["3,4"], "a"),
}


def _register_broken(monkeypatch, name: str, base: str, op_class: type) -> None:
    spec = REGISTRY[base]

    @functools.wraps(spec.function)  # keeps the signature: inputs named a, b
    def function(*tensors, **params):
        return op_class(**params)(*tensors)

    monkeypatch.setitem(
        REGISTRY, name, dataclasses.replace(spec, name=name, op_class=op_class, function=function)
    )


@pytest.mark.parametrize("fast", [False, True], ids=["elementwise", "fast"])
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_gradient_exits_1_and_reproduces(monkeypatch, name, fast):
    base, op_class, options, shapes, failing = BROKEN[name]
    _register_broken(monkeypatch, name, base, op_class)
    args = ["gradcheck", name, *options, *[w for s in shapes for w in ("--shape", s)]]
    args += ["--seed", "5"] + (["--fast"] if fast else [])
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert f"the gradient of input {failing} disagrees" in result.stdout
    reproduce = result.stdout.split("reproduce: ")[1].strip()
    assert "--seed 5" in reproduce and ("--fast" in reproduce) == fast
    again = runner.invoke(app, shlex.split(reproduce)[1:] + ["--json"])
    assert again.exit_code == 1
    report = json.loads(again.stdout)
    assert [item["passed"] for item in report["inputs"]].count(False) == 1


def test_scaled_gradient_shows_a_one_percent_error(monkeypatch):
    _register_broken(monkeypatch, "exp_times_1_01", "exp", ScaledExp)
    data = run_json("gradcheck", "exp_times_1_01")
    (item,) = data["inputs"]
    assert item["max_rel_error"] == pytest.approx(0.01 / 1.01, rel=1e-5)
    assert item["analytic"] == pytest.approx(1.01 * item["numerical"], rel=1e-6)


def test_missing_reduction_names_the_shapes(monkeypatch):
    _register_broken(monkeypatch, "add_no_reduction", "add", AddWithoutReduction)
    result = run("gradcheck", "add_no_reduction", "--shape", "3,4", "--shape", "4")
    assert result.exit_code == 1
    assert "b: gradient has shape (3, 4), input has shape (4,)" in result.stdout


def test_detached_gradient_passes_order_1_and_fails_order_2(monkeypatch):
    _register_broken(monkeypatch, "tanh_detached", "tanh", DetachedTanh)
    assert run("gradcheck", "tanh_detached").exit_code == 0
    result = run("gradcheck", "tanh_detached", "--order", "2")
    assert result.exit_code == 1 and "--order 2" in result.stdout
    assert "✗ FAIL: the second derivatives of input a disagree" in result.stdout


@pytest.mark.parametrize(
    "name, base, op_class, options",
    [
        ("log_scaled", "log", ScaledLog, []),
        (
            "divide_scalar_forgetful",
            "divide_scalar",
            DivScalarForgettingTheScalar,
            ["--scalar", "4"],
        ),
    ],
)
def test_order_two_also_checks_the_first_order(monkeypatch, name, base, op_class, options):
    _register_broken(monkeypatch, name, base, op_class)
    result = run("gradcheck", name, *options, "--order", "2")
    assert result.exit_code == 1, result.output
    assert "the gradient of input a disagrees" in result.stdout
    data = run_json("gradcheck", name, *options, "--order", "2")
    assert [item["order"] for item in data["inputs"]] == [1] and not data["inputs"][0]["passed"]
    assert [item["order"] for item in data["second_order"]] == [2]
    assert data["second_order"][0]["passed"]  # consistent with itself: order 2 alone passed it
    result = run("gradcheck", "--all", "--order", "2")
    assert result.exit_code == 1, result.output
    assert f"reproduce: needle gradcheck {name}" in result.stdout


def test_a_backward_that_raises_fails_the_check_with_exit_1(monkeypatch):
    _register_broken(monkeypatch, "matmul_raising", "matmul", MatMulForgettingTranspose)
    result = run("gradcheck", "matmul_raising")
    assert result.exit_code == 1, result.output
    assert (
        "a: backward raised UsageError in MatMulForgettingTranspose.gradient: matmul shapes do "
        "not fit: (3, 5) @ (4, 5)" in result.stdout
    )
    assert "the gradient of input a disagrees" in result.stdout and "reproduce:" in result.stdout
    result = run("gradcheck", "--all")
    assert result.exit_code == 1, result.output
    assert "matmul_raising" in result.stdout and "logsoftmax" in result.stdout  # the table goes on
    assert "matmul_raising a: backward raised UsageError" in result.stdout
    assert "reproduce: needle gradcheck matmul_raising --shape 3,4 --shape 4,5" in result.stdout


def test_all_fails_when_one_op_is_broken(monkeypatch):
    _register_broken(monkeypatch, "exp_times_1_01", "exp", ScaledExp)
    result = run("gradcheck", "--all")
    assert result.exit_code == 1
    assert "reproduce: needle gradcheck exp_times_1_01 --shape 3,4 --seed 0" in result.stdout


# -- --all and --list ----------------------------------------------------------------------


N_CHECKS = sum(len(spec.settings) for spec in REGISTRY.values())


def test_all_checks_every_op_and_setting():
    result = run("gradcheck", "--all")
    assert result.exit_code == 0, result.output
    assert f"{N_CHECKS} checks over {len(REGISTRY)} ops" in result.stdout
    for name in REGISTRY:
        assert name in result.stdout


def test_all_json_float32_order_2():
    data = run_json("gradcheck", "--all", "--dtype", "float32", "--order", "2")
    assert data["passed"] and len(data["checks"]) == N_CHECKS
    assert {check["label"] for check in data["checks"]} == set(REGISTRY)
    assert all(check["dtype"] == "float32" and check["order"] == 2 for check in data["checks"])


def test_list_shows_every_op_with_its_options():
    text = run("gradcheck", "--list").stdout
    for name, spec in REGISTRY.items():
        assert name in text
        for param in spec.params:
            assert "--" + param.name in text
    data = run_json("gradcheck", "--list")
    assert [entry["op"] for entry in data] == list(REGISTRY)
    lse = next(entry for entry in data if entry["op"] == "logsumexp")
    assert lse["inputs"] == ["a"] and lse["options"][0]["option"] == "--axes"
    assert lse["options"][0]["default"] is None and not lse["options"][0]["required"]


# -- usage errors: one line on stderr, exit 2 ----------------------------------------------


USAGE_ERRORS = [
    (["logsumexpp"], "unknown op 'logsumexpp'; did you mean 'logsumexp'?"),
    (["logsumexp", "--axis", "1"], "no option '--axis'; did you mean '--axes'?"),
    (["logsumexp", "--axes", "5"], "axis 5 is out of range for an input with 2 axes"),
    (["logsumexp", "--axes", "0,0"], "repeat an axis"),
    (["logsumexp", "--axes", "x"], "--axes expects comma-separated integers"),
    (["logsumexp", "--axes"], "--axes needs a value"),
    (["logsumexp", "--axes", "1", "--axes", "0"], "--axes given twice"),
    (["transpose", "--axes", "0"], "--axes expects two axes like 0,2"),
    (["power_scalar"], "needs --scalar"),
    (["power_scalar", "--scalar", "abc"], "--scalar expects a number (got 'abc')"),
    (["power_scalar", "--scalar", "inf"], "--scalar expects a finite number"),
    (["add", "--shape", "3,4", "--shape", "5"], "cannot take inputs of shape (3, 4), (5,)"),
    (["add", "--shape", "3,4"], "takes 2 input(s), got 1 shape(s)"),
    (["add", "--shape", "0,4", "--shape", "4"], "--shape sizes must be at least 1 (got '0,4')"),
    (["exp", "--shape", "3,-1"], "--shape sizes must be at least 1 (got '3,-1')"),
    (
        ["exp", "--shape", "3,,4"],
        "--shape expects comma-separated integers, none empty (got '3,,4')",
    ),
    (["exp", "--shape", ",3"], "--shape expects comma-separated integers, none empty (got ',3')"),
    (["exp", "--shape", "3,4,,"], "none empty (got '3,4,,')"),
    (
        ["exp", "--input-shape", "(3,,4)"],
        "--input-shape expects comma-separated integers, none empty",
    ),
    (["reshape", "--shape", "4,,3", "--input-shape", "12"], "--shape expects comma-separated"),
    (["logsumexp", "--axes", "0,,1"], "--axes expects comma-separated integers, none empty"),
    (
        ["broadcast_to", "--shape", "0,3", "--input-shape", "3"],
        "the output has shape (0, 3), with no elements to check",
    ),
    (["matmul", "--shape", "3,4", "--shape", "5,6"], "matmul shapes do not fit"),
    (["logsoftmax", "--shape", "3"], "logsoftmax takes a 2-D input"),
    (["reshape", "--shape", "5", "--input-shape", "3,4"], "cannot reshape an input of shape"),
    (["reshape", "--shape", "4,3", "--shape", "12"], "give input shapes with --input-shape"),
    (["exp", "--shape", "3", "--input-shape", "3"], "not both"),
    (["exp", "--dtype", "float16"], "unknown dtype 'float16'; did you mean 'float64'?"),
    (["exp", "--order", "3"], "--order must be 1 or 2 (got 3)"),
    (["exp", "--eps", "0"], "eps must be a number in (0, 1) (got 0.0)"),
    (["exp", "--eps", "1"], "eps must be a number in (0, 1) (got 1.0)"),
    (["exp", "--eps", "-1e-6"], "eps must be a number in (0, 1) (got -1e-06)"),
    (["exp", "--eps", "inf"], "eps must be a number in (0, 1) (got inf)"),
    (["exp", "--eps", "nan"], "eps must be a number in (0, 1) (got nan)"),
    (["exp", "--atol", "inf"], "atol must be a finite number ≥ 0 (got inf)"),
    (["exp", "--atol", "nan"], "atol must be a finite number ≥ 0 (got nan)"),
    (["exp", "--atol", "-1e-9"], "atol must be a finite number ≥ 0 (got -1e-09)"),
    (["exp", "--rtol", "inf"], "rtol must be a finite number ≥ 0 (got inf)"),
    (["exp", "--rtol", "-1"], "rtol must be a finite number ≥ 0 (got -1.0)"),
    (["--all", "--rtol", "inf"], "rtol must be a finite number ≥ 0 (got inf)"),
    # Refused before the config is read: the missing file is not what the message is about.
    (["--config", "missing.yaml", "--atol", "inf"], "atol must be a finite number ≥ 0 (got inf)"),
    (["exp", "--seed", "-1"], "seed must be a non-negative integer (got -1)"),
    (["exp", "--scale", "0"], "scale must be a finite number > 0 (got 0.0)"),
    (["exp", "--scale", "-2"], "scale must be a finite number > 0 (got -2.0)"),
    (["exp", "--scale", "inf"], "scale must be a finite number > 0 (got inf)"),
    (["--config", "missing.yaml", "--scale", "2"], "--scale applies to an OP or --all"),
    (["exp", "--fsat"], "did you mean '--fast'?"),
    (["exp", "log"], "give one OP (got 2: 'exp', 'log')"),
    ([], "give an OP to check"),
    (["exp", "--all"], "give one of OP, --op, --all, --list, --config (got --all and OP)"),
    (["--all", "--axes", "1"], "--axes is an op option"),
    (["--all", "--shape", "3"], "apply to one OP"),
    (["--list", "--bogus", "1"], "unknown option '--bogus' for --list"),
    (["rnn_layer", "--nonlinearity", "sigmoid"], "expects one of tanh, relu (got 'sigmoid')"),
    (["rnn_layer", "--nonlinearity"], "needs a value, e.g. --nonlinearity tanh"),
]


def test_a_choice_parameter_is_checked_and_reproduced():
    data = run_json("gradcheck", "rnn_layer", "--nonlinearity", "relu", "--order", "2")
    assert data["passed"] and data["params"] == {"nonlinearity": "relu"}
    assert "--nonlinearity relu" in data["reproduce"]


@pytest.mark.parametrize("args, message", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_errors_are_one_line_with_exit_2(args, message):
    assert message in one_line_error(run("gradcheck", *args), 2)


# -- --config: every parameter of a config's model ------------------------------------------

MODEL = """\
seed: 1
data: {dataset: spirals, samples: 60}
model:
  layers:
    - linear: 6
    - batchnorm1d
    - tanh
    - dropout: 0.2
    - linear: 3
"""


def _model_config(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text(MODEL)
    return str(path)


def test_config_checks_every_parameter(tmp_path):
    path = _model_config(tmp_path)
    data = run_json("gradcheck", "--config", path)
    assert data["passed"] and not data["fast"]  # 2·6+6 + 6+6 + 6·3+3 = 51 elements
    assert data["input_names"] == [
        "modules.0.weight",
        "modules.0.bias",
        "modules.1.weight",
        "modules.1.bias",
        "modules.4.weight",
        "modules.4.bias",
    ]
    assert [item["checked"] for item in data["inputs"]] == [12, 6, 6, 6, 18, 3]
    # The bias before BatchNorm has no gradient: zero within rounding, no relative error.
    assert [item["zeros"] for item in data["inputs"]] == [0, 6, 0, 0, 0, 0]
    assert data["inputs"][1]["max_rel_error"] is None
    text = run("gradcheck", "--config", path).stdout
    assert "modules.0.bias: every element's gradient is 0 within rounding" in text
    assert data["reproduce"] == f"needle gradcheck --config {path} --seed 0"
    assert run_json("gradcheck", "--config", path, "--fast")["inputs"][0]["checked"] == 3


def test_config_catches_a_broken_layer(tmp_path, monkeypatch):
    path = _model_config(tmp_path)
    monkeypatch.setattr(ndl.nn.Tanh, "forward", lambda self, x: ScaledTanh()(x))
    result = run("gradcheck", "--config", path)
    assert result.exit_code == 1
    # Everything before the tanh gets a wrong gradient, but the last Linear does not, and
    # the bias before BatchNorm has none at all (the batch mean removes it).
    assert (
        "the gradients of inputs modules.0.weight, modules.1.weight, modules.1.bias disagree"
        in result.stdout
    )
    assert f"reproduce: needle gradcheck --config {path} --seed 0" in result.stdout


def test_config_takes_set_overrides_like_train(tmp_path):
    path = _model_config(tmp_path)
    data = run_json("gradcheck", "--config", path, "--set", "model.layers[0].linear=4")
    assert data["passed"] and data["inputs"][0]["shape"] == [2, 4]
    assert data["reproduce"] == (
        f"needle gradcheck --config {path} --set 'model.layers[0].linear=4' --seed 0"
    )
    again = runner.invoke(app, shlex.split(data["reproduce"])[1:] + ["--json"])
    assert json.loads(again.stdout)["inputs"] == data["inputs"]
    result = run("gradcheck", "--config", path, "--set", "model.layers[9].linear=4")
    assert "--set model.layers[9].linear=4" in one_line_error(result, 2)
    assert "--set overrides a value of --config" in one_line_error(
        run("gradcheck", "exp", "--set", "seed=1"), 2
    )


def test_config_errors_are_usage_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  layers: [{linear: 3}, relu, {linera: 3}]\n")
    result = run("gradcheck", "--config", str(bad))
    assert result.exit_code == 2 and "linera" in result.stderr
    assert run("gradcheck", "--config", str(tmp_path / "none.yaml")).exit_code == 2
    result = run("gradcheck", "--config", str(bad), "--shape", "3")
    assert result.exit_code == 2 and "apply to one OP" in result.stderr


# -- --op FILE.py:ClassName: an op class from the user's own file --------------------------

MY_OPS = '''
import numpy as np

from needle.autograd import TensorOp


class MyLog(TensorOp):
    """log(x), written by hand."""

    def compute(self, x):
        return np.log(x)

    def gradient(self, out_grad, node):
        return out_grad / node.inputs[0]


class MyLogSlightlyOff(MyLog):
    def gradient(self, out_grad, node):
        return out_grad / node.inputs[0] * 1.001


class Affine(TensorOp):
    def __init__(self, factor, offset=0.0):
        self.factor, self.offset = factor, offset

    def compute(self, x):
        return x * self.factor + self.offset

    def gradient(self, out_grad, node):
        return out_grad * self.factor


class NotAnOp:
    pass


def my_exp(x):
    return np.exp(x)
'''


@pytest.fixture
def my_ops(tmp_path):
    path = tmp_path / "my_ops.py"
    path.write_text(MY_OPS)
    return str(path)


def test_op_from_a_file_is_checked_like_a_registered_one(my_ops):
    result = run("gradcheck", "--op", f"{my_ops}:MyLog", "--draw", "positive")
    assert result.exit_code == 0, result.output
    assert "gradcheck MyLog(x)" in result.stdout and "✓ pass" in result.stdout
    data = run_json("gradcheck", "--op", f"{my_ops}:MyLog", "--draw", "positive", "--order", "2")
    assert data["passed"] and data["label"] == "MyLog" and data["input_names"] == ["x"]
    assert data["reproduce"] == (
        f"needle gradcheck --op {my_ops}:MyLog --shape 3,4 --seed 0 --order 2 --draw positive"
    )


def test_a_wrong_gradient_in_a_file_fails_and_reproduces(my_ops):
    result = run("gradcheck", "--op", f"{my_ops}:MyLogSlightlyOff", "--draw", "positive")
    assert result.exit_code == 1, result.output
    assert "the gradient of input x disagrees" in result.stdout
    reproduce = result.stdout.split("reproduce: ")[1].strip()
    assert runner.invoke(app, shlex.split(reproduce)[1:]).exit_code == 1


def test_constructor_arguments_become_options(my_ops):
    data = run_json(
        "gradcheck", "--op", f"{my_ops}:Affine", "--factor", "2.5", "--offset=-1", "--shape", "2,5"
    )
    assert data["passed"] and data["params"] == {"factor": 2.5, "offset": -1}
    assert data["inputs"][0]["shape"] == [2, 5]
    assert "--factor 2.5 --offset -1 --shape 2,5" in data["reproduce"]
    data = run_json("gradcheck", "--op", f"{my_ops}:Affine", "--factor", "(2.0)")
    assert data["params"] == {"factor": 2.0, "offset": 0.0}


OP_FILE_ERRORS = [
    (["--op", "{file}"], "--op expects FILE.py:ClassName, e.g. my_ops.py:MyExp"),
    (["--op", "{dir}/nothere.py:MyLog"], "nothere.py' not found"),
    (["--op", "{dir}:MyLog"], "is a folder"),
    (["--op", "{file}:MyLg"], "has no class 'MyLg'; did you mean 'MyLog'?"),
    (["--op", "{file}:Missing"], "its TensorOp classes: Affine, MyLog, MyLogSlightlyOff"),
    (["--op", "{file}:NotAnOp"], "'NotAnOp' in '{file}' is a class, not a subclass of needle's"),
    (["--op", "{file}:my_exp"], "'my_exp' in '{file}' is a function, not a subclass"),
    (["--op", "{broken}:MyLog"], "broken.py' raised SyntaxError: "),
    (["--op", "{raises}:MyLog"], "raises.py' raised ZeroDivisionError: division by zero when"),
    (["--op", "{file}:Affine"], "op 'Affine' needs --factor"),
    (["--op", "{file}:Affine", "--factor", "abc"], "--factor expects a Python literal"),
    (["--op", "{file}:Affine", "--fctor", "1"], "no option '--fctor'; did you mean '--factor'?"),
    (["--op", "{file}:MyLog", "exp"], "give one of OP, --op, --all, --list, --config"),
    (["--op", "{file}:MyLog", "--draw", "postive"], "unknown draw 'postive'; did you mean"),
    (["--all", "--draw", "positive"], "--draw applies to one OP or --op, not to --all"),
]


@pytest.mark.parametrize(
    "args, message", OP_FILE_ERRORS, ids=[" ".join(a) for a, _ in OP_FILE_ERRORS]
)
def test_op_file_errors_are_one_line_with_exit_2(tmp_path, my_ops, args, message):
    (tmp_path / "broken.py").write_text("class MyLog(:\n")
    (tmp_path / "raises.py").write_text("x = 1 / 0\n")
    names = {
        "file": my_ops,
        "dir": str(tmp_path),
        "broken": str(tmp_path / "broken.py"),
        "raises": str(tmp_path / "raises.py"),
    }
    args = [arg.format(**names) for arg in args]
    assert message.format(**names) in one_line_error(run("gradcheck", *args), 2)


CONV_MODEL = """\
seed: 0
data: {dataset: spirals, samples: 40, classes: 3}
model:
  layers:
    - linear: 8
    - reshape: [2, 2, 2]
    - conv: {out_channels: 3, kernel_size: 2, padding: 1}
    - relu
    - maxpool2d: {kernel_size: 2, stride: 1}
    - conv: {out_channels: 2, kernel_size: 1}
    - batchnorm2d
    - avgpool2d: 1
    - global_avgpool
    - linear: 3
"""


def test_config_checks_a_conv_model_in_float64(tmp_path, monkeypatch):
    path = tmp_path / "conv.yaml"
    path.write_text(CONV_MODEL)
    data = run_json("gradcheck", "--config", str(path))
    assert data["passed"] and data["dtype"] == "float64" and not data["fast"]
    # linear 2·8+8, conv 2²·2·3+3, conv 3·2+2, batchnorm2d 2+2, linear 2·3+3 numbers
    assert [item["checked"] for item in data["inputs"]] == [16, 8, 24, 3, 6, 2, 2, 2, 6, 3]
    # A max pool that routes every gradient to the wrong entry is caught in the first conv.
    from needle.ops import pool

    monkeypatch.setattr(
        pool.MaxPoolScatter,
        "maximum_masks",
        lambda self, a: list(reversed(pool.PoolOp.maximum_masks(self, a))),
    )
    broken = run("gradcheck", "--config", str(path))
    assert broken.exit_code == 1 and "modules.2.weight" in broken.stdout
