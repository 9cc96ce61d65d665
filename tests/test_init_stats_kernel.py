"""init-stats for a conv kernel: the theory's fans are channels·K², the draws are the
(K, K, in, out) kernels nn.Conv draws, and a config's Conv layers are measured too."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from needle import init, nn
from needle.errors import UsageError
from needle.init_stats import config_layer_stats, draw, init_stats, survey, theory
from needle.train.config import parse_config
from needle_cli.app import app


@settings(max_examples=30, deadline=None)
@given(
    scheme=st.sampled_from(["kaiming_uniform", "kaiming_normal", "xavier_uniform"]),
    c_in=st.integers(1, 64),
    c_out=st.integers(1, 64),
    kernel=st.integers(1, 7),
)
def test_the_theory_of_a_kernel_is_that_of_its_fans_in_k2_out_k2(scheme, c_in, c_out, kernel):
    conv = theory(scheme, c_in, c_out, kernel=kernel)
    k2 = kernel * kernel
    dense = theory(scheme, c_in * k2, c_out * k2)
    assert (conv.fan_in, conv.fan_out) == (c_in * k2, c_out * k2)
    assert conv.scale.value == dense.scale.value and conv.std == dense.std
    assert conv.draw_shape == (kernel, kernel, c_in, c_out)
    if scheme == "kaiming_uniform":  # the bound itself, from the definition
        assert math.isclose(conv.scale.value, math.sqrt(2) * math.sqrt(3 / (c_in * k2)))
    fans = [formula.text for formula in conv.formulas[:2]]
    assert fans == [
        f"fan_in = in·K² = {c_in}·{kernel}² = {c_in * k2}",
        f"fan_out = out·K² = {c_out}·{kernel}² = {c_out * k2}",
    ]


def test_the_draws_are_the_kernels_nn_conv_draws():
    resolved = theory("kaiming_uniform", 3, 4, kernel=3)
    with init.seeded(5):
        drawn = draw(resolved, 3 * 3 * 3 * 4)
    with init.seeded(5):
        conv = nn.Conv(3, 4, 3, bias=False)
    np.testing.assert_array_equal(drawn, conv.weight.numpy().ravel().astype(np.float64))
    stats = init_stats("kaiming_uniform", 16, 32, kernel=3, samples=20_000)
    assert stats.ks.passed and stats.statistic("bound").measured <= resolved.scale.value + 1e-12


def test_kernel_refusals():
    with pytest.raises(UsageError, match=r"kernel must be a positive integer \(got 0\)"):
        theory("kaiming_uniform", 3, 4, kernel=0)
    with pytest.raises(UsageError, match="a depth stack is of Linear layers"):
        survey(["kaiming_uniform"], kernel=3, depth=4)


def test_a_configs_conv_layers_are_measured_with_their_kernels():
    config = parse_config(
        "seed: 0\ndata: {dataset: spirals, samples: 40}\nmodel:\n  init: xavier_uniform\n"
        "  layers: [{linear: 32}, {reshape: [2, 4, 4]}, {conv: 8}, global_avgpool, {linear: 3}]\n",
        "c.yaml",
    )
    layers = config_layer_stats(config)
    assert [layer.name for layer in layers] == [
        "model.layers[0]",
        "model.layers[2]",
        "model.layers[4]",
    ]
    conv = layers[1].stats.theory
    assert conv.kernel == 3 and conv.draw_shape == (3, 3, 2, 8)
    assert (conv.fan_in, conv.fan_out) == (2 * 9, 8 * 9)


def test_cli_kernel_shows_the_fans_and_the_kernel():
    result = CliRunner().invoke(
        app, ["init-stats", "kaiming_uniform", "--kernel", "3", "--fan-in", "16", "--fan-out", "32"]
    )
    assert result.exit_code == 0, result.output
    assert "kernel 3 × 3 × 16 × 32 · fan_in 144 · fan_out 288" in result.output
    assert "fan_in = in·K² = 16·3² = 144" in result.output
    assert "bound = gain·√(3/fan_in) = √2·√(3/144) = 0.2041" in result.output
