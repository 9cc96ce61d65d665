"""init-stats for a conv kernel: the theory's fans are channels·K², the draws are the
(K, K, in, out) kernels nn.Conv draws, and a config's Conv layers are measured too."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from needle import init, nn
from needle.errors import UsageError
from needle.init_stats import (
    CONV_INTERIOR,
    config_layer_stats,
    conv_image,
    draw,
    expected_signal,
    init_stats,
    propagate,
    survey,
    theory,
)
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
    with pytest.raises(UsageError, match=r"needs an odd kernel \(got 4\)"):
        survey(["kaiming_uniform"], kernel=4, depth=4)
    with pytest.raises(UsageError, match=r"a conv stack \(kernel 3\) has fan_in \(16\) channels"):
        survey(["kaiming_uniform"], fan_in=16, kernel=3, depth=4, width=8)
    with pytest.raises(UsageError, match=r"conv stack of depth 10, 512 channels .* at most"):
        propagate("kaiming_uniform", depth=10, width=512, kernel=3)


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


# -- a conv stack: depth propagation -------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(
    scheme=st.sampled_from(["kaiming_uniform", "kaiming_normal", "xavier_normal"]),
    channels=st.integers(1, 6),
    kernel=st.sampled_from([1, 3, 5]),
    depth=st.integers(1, 3),
    nonlinearity=st.sampled_from(["relu", "linear"]),
)
def test_a_conv_stacks_prediction_is_the_dense_one_with_fan_channels_k2(
    scheme, channels, kernel, depth, nonlinearity
):
    stack = propagate(
        scheme, depth=depth, width=channels, kernel=kernel, nonlinearity=nonlinearity, batch=1
    )
    fan = channels * kernel**2
    options = {"nonlinearity": nonlinearity} if scheme.startswith("kaiming") else {}
    dense = expected_signal(theory(scheme, fan, fan, **options), nonlinearity, None, depth)
    predicted = [(s.expected_forward_std, s.expected_backward_std) for s in stack.layers]
    assert predicted == dense
    assert (stack.theory.fan_in, stack.theory.fan_out) == (fan, fan)
    assert stack.image == CONV_INTERIOR + 2 * depth * (kernel // 2) == conv_image(depth, kernel)


def test_a_conv_stack_draws_nn_convs_kernels_and_measures_where_no_padding_reaches():
    stack = propagate("kaiming_uniform", depth=2, width=3, kernel=3, batch=2, seed=4)
    assert stack.theory.draw_shape == (3, 3, 3, 3) and stack.batch == 2
    # the input and the cotangent are drawn first, then each layer's kernel as nn.Conv draws it
    side = stack.image
    with init.seeded(4):
        x = np.random.randn(2, side, side, 3)
        np.random.randn(2, side, side, 3)
        first = nn.Conv(3, 3, 3, bias=False).weight.numpy().astype(np.float64)
    z = np.zeros((2, side, side, 3))
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    for i in range(3):
        for j in range(3):
            z += padded[:, i : i + side, j : j + side, :] @ first[i, j]
    inner = z[:, 2 : side - 2, 2 : side - 2, :]  # two layers of padding 1 reach 2 pixels in
    assert stack.layers[0].forward_std == pytest.approx(inner.std(), rel=1e-6)


@pytest.mark.parametrize("scheme", ["kaiming_normal", "xavier_uniform"])
def test_a_linear_conv_stack_measures_the_predicted_stds(scheme):
    # A conv layer's units are its channels (the positions share weights), so the measured
    # std wanders more than a dense stack's; over 12 seeds at 16 channels the spread was
    # ≤ 5 % rms per layer: 15 % is three of those.
    stack = propagate(scheme, depth=4, width=16, kernel=3, nonlinearity="linear")
    for signal in stack.layers:
        assert signal.forward_std == pytest.approx(signal.expected_forward_std, rel=0.15)
        assert signal.backward_std == pytest.approx(signal.expected_backward_std, rel=0.15)


def test_a_relu_conv_stack_follows_the_prediction_over_seeds():
    # relu's positive mean makes each channel an offset of its own, so one stack of 64
    # channels strays up to ~10 % rms by layer 4; the mean over 6 seeds is within 8 %.
    stacks = [propagate("kaiming_uniform", depth=4, width=64, kernel=3, seed=s) for s in range(6)]
    for layer in range(4):
        signals = [stack.layers[layer] for stack in stacks]
        forward = np.mean([s.forward_std / s.expected_forward_std for s in signals])
        backward = np.mean([s.backward_std / s.expected_backward_std for s in signals])
        assert forward == pytest.approx(1, abs=0.08) and backward == pytest.approx(1, abs=0.08)
    xavier = propagate("xavier_uniform", depth=4, width=64, kernel=3)
    assert xavier.forward_gain ** (1 / 3) == pytest.approx(1 / math.sqrt(2), rel=0.1)


def test_cli_kernel_depth_shows_the_conv_stack():
    args = ["init-stats", "kaiming_uniform", "--kernel", "3", "--fan-in", "8", "--depth", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    side = conv_image(2, 3)
    assert f"depth 2 · conv 3×3 · 8 channels · 8 images {side}×{side}" in result.output
    assert f"std over the central {CONV_INTERIOR}×{CONV_INTERIOR}" in result.output
    data = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)["propagation"]
    assert data["kernel"] == 3 and data["width"] == 8 and data["image"] == side
    expected = propagate("kaiming_uniform", depth=2, width=8, kernel=3).to_dict()
    assert data == json.loads(json.dumps(expected))
    refused = CliRunner().invoke(app, [*args, "--width", "16"])
    assert refused.exit_code == 2 and "has fan_in (8) channels" in refused.output
