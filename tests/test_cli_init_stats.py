"""`needle init-stats` through CliRunner: the theory's numbers derived here from the formulas,
the KS verdicts, the depth table and the exit codes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from cli_contract import one_line_error
from typer.testing import CliRunner

from needle import init
from needle.init_stats import ks_critical, propagate
from needle_cli.app import app
from needle_cli.charts import tick_label

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["init-stats", *args])


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def statistic(data: dict, name: str) -> dict:
    return next(s for s in data["statistics"] if s["name"] == name)


def test_help_lists_every_option_with_an_example():
    text = runner.invoke(app, ["init-stats", "--help"]).output
    for option in (
        "--fan-in",
        "--fan-out",
        "--nonlinearity",
        "--param",
        "--mode",
        "--gain",
        "--samples",
        "--seed",
        "--depth",
        "--width",
        "--compare",
        "--config",
        "--json",
    ):
        assert option in text
    assert text.count("e.g.") >= 13


def test_default_kaiming_uniform_theory_beside_measurement():
    result = run("kaiming_uniform")
    assert result.exit_code == 0, result.output
    bound = math.sqrt(2) * math.sqrt(3 / 256)
    assert f"bound = gain·√(3/fan_in) = √2·√(3/256) = {bound:.4f}" in result.stdout
    assert f"std = bound/√3 = {bound:.4f}/√3 = {bound / math.sqrt(3):.4f}" in result.stdout
    assert f"U(−{bound:.4f}, {bound:.4f})" in result.stdout
    assert "✓ consistent with" in result.stdout
    assert f"1.358/√65536 = {ks_critical(65536):.4f}" in result.stdout
    assert "E[extreme of n draws]" in result.stdout  # library notes are not eaten as markup
    histogram = run_json("kaiming_uniform")["stats"]["histogram"]
    rows = histogram_rows(result.stdout, histogram)
    # a uniform's bars stand over the whole support: its lowest row is bars edge to edge
    assert set(rows[-1].split("┤")[1].rstrip("│")) == {"█"}


def histogram_rows(stdout: str, histogram: dict) -> list[str]:
    """The rows of the histogram under its title, after checking its axes: the top tick is
    the highest density (measured or theoretical), the x ticks are the edges."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "density of the draws (bars)" in line)
    end = next(i for i in range(start, len(lines)) if lines[i].lstrip().startswith("└"))
    rows = lines[start + 2 : end]
    top = max(max(histogram["density"]), max(histogram["expected"]))
    assert [r for r in rows if "┤" in r][0].split("┤")[0].strip() == tick_label(top)
    x_labels = lines[end + 1].split()
    assert x_labels[0] == tick_label(histogram["edges"][0])
    assert x_labels[-1] == tick_label(histogram["edges"][-1])
    return rows


def test_a_normals_histogram_is_a_bell():
    result = run("kaiming_normal")
    assert result.exit_code == 0, result.output
    rows = histogram_rows(result.stdout, run_json("kaiming_normal")["stats"]["histogram"])
    canvas = [row.split("┤" if "┤" in row else "│", 1)[1].rstrip("│") for row in rows]
    bars = [row.count("█") for row in canvas]
    # the bars widen from the top down, and at half height cover under half the ±4σ support
    assert bars[-1] > bars[len(bars) // 2] > bars[1]
    assert bars[len(bars) // 2] < len(canvas[0]) / 2


def test_json_has_every_number_theoretical_and_measured():
    data = run_json("kaiming_uniform")["stats"]
    bound = math.sqrt(2) * math.sqrt(3 / 256)
    theory = data["theory"]
    assert theory["scale"]["value"] == pytest.approx(bound)
    assert theory["std"] == pytest.approx(bound / math.sqrt(3))
    assert theory["gain"]["value"] == pytest.approx(math.sqrt(2))
    assert data["samples"] == 65536 and data["seed"] == 0
    assert statistic(data, "std")["expected"] == pytest.approx(bound / math.sqrt(3))
    assert statistic(data, "bound")["measured"] <= bound * (1 + 1e-7)
    assert data["ks"]["passed"] is True
    assert data["ks"]["critical"] == pytest.approx(1.3581 / 256, rel=1e-4)
    assert data["ks"]["statistic"] < data["ks"]["critical"]
    h = data["histogram"]
    assert sum(h["counts"]) + h["outside"] == 65536 and len(h["edges"]) == len(h["counts"]) + 1
    # The measured numbers are those of the initializer's own draws.
    np.random.seed(0)
    w = init.kaiming_uniform(256, 256).numpy().astype(np.float64)
    assert statistic(data, "std")["measured"] == pytest.approx(w.std())
    assert statistic(data, "max")["measured"] == pytest.approx(w.max())


@pytest.mark.parametrize(
    "args, quantity, value",
    [
        (["xavier_uniform", "--fan-in", "784", "--fan-out", "100"], "bound", math.sqrt(6 / 884)),
        (["xavier_normal", "--gain", "1.5"], "std", 1.5 * math.sqrt(2 / 512)),
        (["kaiming_normal", "--nonlinearity", "tanh"], "std", 5 / 3 / 16),
        (
            ["kaiming_uniform", "--nonlinearity", "leaky_relu", "--param", "0.2"],
            "bound",
            math.sqrt(2 / 1.04) * math.sqrt(3 / 256),
        ),
        (["kaiming_normal", "--mode", "fan_out", "--fan-out", "64"], "std", math.sqrt(2) / 8),
    ],
)
def test_options_change_the_theory(args, quantity, value):
    data = run_json(*args)["stats"]
    scale = data["theory"]["scale"]
    assert scale["quantity"] == quantity and scale["value"] == pytest.approx(value)
    assert data["ks"]["passed"]
    assert f"= {value:.4f}" in run(*args).stdout


def test_samples_and_seed():
    data = run_json("xavier_normal", "--samples", "1000", "--seed", "3")["stats"]
    assert data["samples"] == 1000 and data["seed"] == 3
    assert data["ks"]["critical"] == pytest.approx(ks_critical(1000))
    again = run_json("xavier_normal", "--samples", "1000", "--seed", "3")["stats"]
    other = run_json("xavier_normal", "--samples", "1000", "--seed", "4")["stats"]
    assert again["statistics"] == data["statistics"]
    assert other["statistics"] != data["statistics"]


def test_a_broken_initializer_shows_as_not_fitting(monkeypatch):
    def too_narrow(fan_in, fan_out, gain=1.0, **kwargs):
        a = 0.9 * gain * math.sqrt(6 / (fan_in + fan_out))
        return init.rand(fan_in, fan_out, low=-a, high=a, **kwargs)

    monkeypatch.setitem(init.INITIALIZERS, "xavier_uniform", too_narrow)
    assert run_json("xavier_uniform")["stats"]["ks"]["passed"] is False
    assert "✗ not U(" in run("xavier_uniform").stdout


def test_depth_table_kaiming_steady():
    data = run_json("kaiming_uniform", "--depth", "6", "--width", "128")
    p = data["propagation"]
    assert p["depth"] == 6 and p["width"] == 128 and p["activation"] == "relu"
    assert len(p["layers"]) == 6
    for layer in p["layers"]:
        # relu stack, fan·Var(W) = 2: Var(z) = 2, Var(∂L/∂z) = 1/2 at every layer.
        assert layer["expected_forward_std"] == pytest.approx(math.sqrt(2))
        assert layer["expected_backward_std"] == pytest.approx(math.sqrt(0.5))
    # The measured columns are the library's; the first layer's std varies by < 1 % with the
    # seed, deeper ones drift more (how well they follow the theory: test_init_stats.py).
    stack = propagate("kaiming_uniform", depth=6, width=128)
    assert [layer["forward_std"] for layer in p["layers"]] == [s.forward_std for s in stack.layers]
    assert [layer["backward_std"] for layer in p["layers"]] == [
        s.backward_std for s in stack.layers
    ]
    assert p["layers"][0]["forward_std"] == pytest.approx(math.sqrt(2), rel=0.05)
    text = run("kaiming_uniform", "--depth", "6", "--width", "128").stdout
    assert "depth 6 · width 128" in text and "steady" in text


def test_xavier_given_a_nonlinearity_without_a_stack_says_what_it_sets():
    result = run("xavier_uniform", "--nonlinearity", "tanh")
    assert result.exit_code == 0, result.output
    note = "note: xavier schemes take --gain; --nonlinearity only sets the activation"
    assert note in result.stdout
    assert note not in run("xavier_uniform", "--nonlinearity", "tanh", "--depth", "2").stdout
    assert note not in run("kaiming_uniform", "--nonlinearity", "tanh").stdout


def test_an_overflowing_stack_is_shown_not_a_crash():
    result = run("xavier_normal", "--gain", "40", "--depth", "300", "--width", "16")
    assert result.exit_code == 0, result.output
    assert "forward, layer 1 → 300: overflow" in result.stdout
    assert result.stderr == ""  # no numpy warnings either
    layers = run_json("xavier_normal", "--gain", "40", "--depth", "300", "--width", "16")
    last = layers["propagation"]["layers"][-1]
    assert last["forward_std"] is None and last["expected_forward_std"] is None  # inf, nan


def test_compare_shows_xavier_vanishing_and_kaiming_steady():
    data = run_json("--compare", "xavier_uniform,kaiming_uniform")
    xavier, kaiming = data["schemes"]
    assert xavier["stats"]["theory"]["scheme"] == "xavier_uniform"
    assert xavier["propagation"]["depth"] == 10  # the default depth of --compare
    # Xavier halves the variance per relu layer: ×2^(−9/2) over 10 layers.
    assert xavier["propagation"]["forward_gain"] == pytest.approx(2**-4.5, rel=0.25)
    assert 0.7 < kaiming["propagation"]["forward_gain"] < 1.4
    text = run("kaiming_normal", "--compare", "xavier_normal", "--depth", "5").stdout
    assert "kaiming_normal: forward" in text and "steady" in text
    assert "xavier_normal: forward" in text and "vanishing" in text


def test_compare_routes_each_option_to_the_schemes_that_take_it():
    data = run_json(
        "--compare",
        "xavier_uniform,kaiming_uniform",
        "--gain",
        "2",
        "--mode",
        "fan_out",
        "--fan-out",
        "64",
        "--depth",
        "2",
    )
    xavier, kaiming = (entry["stats"]["theory"] for entry in data["schemes"])
    assert xavier["gain"]["value"] == 2 and xavier["mode"] is None
    assert kaiming["mode"] == "fan_out"
    assert kaiming["scale"]["value"] == pytest.approx(math.sqrt(2) * math.sqrt(3 / 64))


CONFIG = """\
seed: 2
data: {dataset: moons, samples: 100}
model:
  init: xavier_normal
  init_args: {gain: 1.5}
  layers: [{linear: 16}, tanh, {linear: {out_features: 2, init: kaiming_uniform}}]
"""


def test_config_layers(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text(CONFIG)
    data = run_json("--config", str(path))
    first, last = data["layers"]
    assert first["name"] == "model.layers[0]" and last["name"] == "model.layers[2]"
    assert first["theory"]["scheme"] == "xavier_normal"
    assert first["theory"]["std"] == pytest.approx(1.5 * math.sqrt(2 / (2 + 16)))
    assert last["theory"]["scale"]["value"] == pytest.approx(math.sqrt(2) * math.sqrt(3 / 16))
    assert first["ks"]["passed"] and last["ks"]["passed"]
    text = run("--config", str(path)).stdout
    assert "2 Linear and Conv layers" in text and "layers[2]" in text and "✓ fits" in text


def test_config_takes_set_overrides_like_train(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text(CONFIG)
    data = run_json(
        "--config",
        str(path),
        "--set",
        "model.layers[0].linear=32",
        "--set",
        "model.init_args.gain=1.0",
    )
    first = data["layers"][0]["theory"]
    assert first["fan_out"] == 32 and first["std"] == pytest.approx(math.sqrt(2 / (2 + 32)))
    message = one_line_error(run("--config", str(path), "--set", "model.layers[9].linear=3"), 2)
    assert "--set model.layers[9].linear=3" in message


ERRORS = [
    (["kaiming_unifrom"], "unknown initializer 'kaiming_unifrom'; did you mean 'kaiming_uniform'?"),
    (["kaiming_uniform", "--fan-in", "0"], "fan_in must be a positive integer (got 0)"),
    (["kaiming_uniform", "--fan-out", "-4"], "fan_out must be a positive integer (got -4)"),
    (["xavier_normal", "--fan-in", "0"], "fan_in must be a positive integer (got 0)"),
    (["kaiming_uniform", "--mode", "fan_inn"], "unknown mode 'fan_inn'; did you mean 'fan_in'?"),
    (["kaiming_uniform", "--nonlinearity", "rellu"], "did you mean 'relu'?"),
    (["kaiming_uniform", "--gain", "2"], "gain applies to xavier schemes"),
    (["xavier_uniform", "--mode", "fan_in"], "mode applies to kaiming schemes"),
    (["kaiming_uniform", "--param", "0.1"], "nonlinearity is relu"),
    (["xavier_uniform", "--gain", "-1"], "gain must be a positive number (got -1.0)"),
    (["kaiming_normal", "--nonlinearity", "leaky_relu", "--param", "inf"], "(got inf)"),
    (["kaiming_uniform", "--samples", "1"], "samples must be from 2 to 10000000 (got 1)"),
    (
        ["kaiming_uniform", "--samples", "1000000000000"],
        "samples must be from 2 to 10000000 (got 1000000000000)",
    ),
    (["kaiming_uniform", "--samples", "0"], "samples must be a positive integer (got 0)"),
    (["kaiming_uniform", "--seed", "-1"], "seed must be a non-negative integer (got -1)"),
    (["kaiming_uniform", "--depth", "0"], "depth must be a positive integer (got 0)"),
    (["kaiming_uniform", "--depth", "2", "--width", "0"], "width must be a positive integer"),
    (
        ["kaiming_uniform", "--depth", "100000", "--width", "100000"],
        "depth must be at most 1000 (got 100000)",
    ),
    (
        ["kaiming_uniform", "--depth", "10", "--width", "100000"],
        "a stack of depth 10 and width 100000 (batch 256) holds depth × width × (width + batch) "
        "= 100256000000 weights and activations; at most 20000000",
    ),
    (
        ["--compare", "xavier_uniform,kaiming_uniform", "--width", "100000"],
        "a stack of depth 10 and width 100000 (batch 256) holds",
    ),
    (["kaiming_uniform", "--width", "8"], "give --depth L too"),
    (["kaiming_uniform", "--depth", "2", "--nonlinearity", "conv1d"], "for a layer stack"),
    (["kaiming_uniform", "--fan-in", "100000", "--fan-out", "1000"], "at most 20000000"),
    ([], "give a SCHEME"),
    (["--compare", ","], "--compare expects schemes"),
    (["--compare", "kaiming_uniform,kaiming_uniform"], "listed twice"),
    (["--compare", "xavier_uniform,xavier_normal", "--mode", "fan_in"], "none is compared"),
    (["--compare", "xavier_uniform,kaiming_unform"], "did you mean 'kaiming_uniform'?"),
    (["kaiming_uniform", "--config", "x.yaml"], "SCHEME does not apply"),
    (["--config", "missing.yaml"], "missing.yaml"),
    (["kaiming_uniform", "--set", "seed=3"], "--set overrides a value of --config"),
    (["--config", "x.yaml", "--set", "seed"], "x.yaml"),
]


@pytest.mark.parametrize("args, message", ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_errors_are_one_line_with_exit_2(args, message):
    assert message in one_line_error(run(*args), 2)
