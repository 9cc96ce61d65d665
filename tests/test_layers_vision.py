"""The image layer types (conv, batchnorm2d, the pools, reshape): shapes, parameter counts
and FLOPs against the modules they build, mismatches naming both shapes, the configured
initializer with the conv fans, and the shipped CNN configs (ResNet9 draw for draw)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle import init, models, nn
from needle.errors import UsageError
from needle.train.build import build_model, plan_model, total_flops
from needle.train.config import TrainConfig, load_config

ROOT = Path(__file__).resolve().parent.parent


def config(layers: list, **model) -> TrainConfig:
    return TrainConfig.model_validate({"model": {"layers": layers, **model}})


def refusal(caught: pytest.ExceptionInfo) -> str:
    return str(caught.value).split(": ", 1)[1]


@settings(max_examples=30, deadline=None)
@given(
    channels=st.tuples(st.integers(1, 3), st.integers(1, 4)),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.one_of(st.none(), st.integers(0, 2)),
    bias=st.booleans(),
    size=st.tuples(st.integers(4, 7), st.integers(4, 7)),
)
def test_conv_shape_parameters_and_flops_are_the_built_modules(
    channels, kernel, stride, padding, bias, size
):
    c_in, c_out = channels
    written = {"out_channels": c_out, "kernel_size": kernel, "stride": stride, "bias": bias}
    if padding is not None:
        written["padding"] = padding
    layers = [{"conv": written}, "flatten", {"linear": 2}]
    sample = (c_in, *size)
    rows = plan_model(config(layers), sample, 2)
    np.random.seed(0)
    conv = build_model(config(layers), sample, 2).modules[0]
    out = conv(ndl.Tensor(np.random.randn(2, *sample).astype(np.float32)))
    assert out.shape == (2, *rows[0].out_shape)
    assert conv.padding == ((kernel - 1) // 2 if padding is None else padding)
    assert rows[0].params == sum(p.numpy().size for p in conv.parameters())
    # every output number: one multiply-add per kernel weight it reads, then its bias
    outputs = int(np.prod(rows[0].out_shape))
    per_output = 2 * conv.weight.numpy()[..., 0].size + bias
    assert rows[0].flops == per_output * outputs


@pytest.mark.parametrize("layer", ["maxpool2d", "avgpool2d"])
@pytest.mark.parametrize("kernel, stride", [(2, None), (3, 1), (2, 3)])
def test_pools_shape_and_flops_are_the_built_modules(layer, kernel, stride):
    written = {layer: {"kernel_size": kernel, "stride": stride}}
    layers = [written, "global_avgpool", {"linear": 2}]
    rows = plan_model(config(layers), (3, 7, 6), 2)
    np.random.seed(0)
    model = build_model(config(layers), (3, 7, 6), 2)
    x = ndl.Tensor(np.random.randn(2, 3, 7, 6).astype(np.float32))
    pooled = model.modules[0](x)
    assert pooled.shape == (2, *rows[0].out_shape) and rows[0].params == 0
    assert rows[0].flops == kernel * kernel * int(np.prod(rows[0].out_shape))
    assert model.modules[1](pooled).shape == (2, 3) and rows[1].flops == pooled.numpy()[0].size


def test_batchnorm2d_counts_two_parameters_per_channel_and_checks_dim():
    rows = plan_model(config(["batchnorm2d", "flatten", {"linear": 2}]), (3, 2, 2), 2)
    assert rows[0].params == 6 and rows[0].flops == 4 * 12
    with pytest.raises(UsageError) as caught:
        plan_model(config([{"batchnorm2d": {"dim": 4}}, "flatten", {"linear": 2}]), (3, 2, 2), 2)
    assert refusal(caught) == (
        "model.layers[0].batchnorm2d.dim: dim is 4 but the previous layer puts out 3 channels "
        "(batch, 3, 2, 2)"
    )


def test_the_total_flops_count_each_layer_once():
    layers = [{"conv": 4}, {"residual": [{"conv": 4}, "relu"]}, "global_avgpool", {"linear": 2}]
    rows = plan_model(config(layers), (2, 5, 5), 2)
    top = [row for row in rows if row.depth == 0]
    residual = next(row for row in rows if row.layer == "residual")
    inner_conv = next(row for row in rows if row.index == "1.0")
    assert residual.flops == inner_conv.flops + 4 * 25  # the block and the addition
    assert total_flops(rows) == sum(row.flops for row in top)


# -- mismatches: one line naming the layer and both shapes -------------------------------------


@pytest.mark.parametrize(
    "layers, sample, message",
    [
        (
            [{"conv": {"out_channels": 8, "kernel_size": 7, "padding": 0}}],
            (3, 4, 4),
            "model.layers[0].conv.kernel_size: conv: a 7×7 kernel does not fit the 4×4 map of "
            "(batch, 3, 4, 4)",
        ),
        (
            [{"conv": 8}, {"conv": {"out_channels": 8, "kernel_size": 7, "padding": 1}}],
            (8, 4, 4),
            "model.layers[1].conv.kernel_size: conv: a 7×7 kernel does not fit the 4×4 map of "
            "(batch, 8, 4, 4) padded by 1 (6×6)",
        ),
        (
            [{"conv": 8}],
            (784,),
            "model.layers[0].conv: conv takes images (batch, channels, height, width) but is "
            "given (batch, 784); a reshape: [C, H, W] before it makes images of flat features",
        ),
        (
            ["flatten", "global_avgpool"],
            (2, 3, 3),
            "model.layers[1].global_avgpool: global_avgpool takes images (batch, channels, "
            "height, width) but is given (batch, 18); a reshape: [C, H, W] before it makes "
            "images of flat features",
        ),
        (
            [{"maxpool2d": 3}],
            (2, 2, 5),
            "model.layers[0].maxpool2d.kernel_size: maxpool2d: a 3×3 kernel does not fit the "
            "2×5 map of (batch, 2, 2, 5)",
        ),
        (
            [{"residual": [{"conv": 16}]}],
            (8, 4, 4),
            "model.layers[0].residual: the block takes (batch, 8, 4, 4) and puts out "
            "(batch, 16, 4, 4); a residual adds its input back, so the block must give back "
            "(batch, 8, 4, 4)",
        ),
        (
            [{"reshape": [3, 5, 5]}],
            (2, 6, 6),
            "model.layers[0].reshape.shape: reshape to (batch, 3, 5, 5) needs 75 numbers per "
            "sample but is given (batch, 2, 6, 6), 72",
        ),
    ],
)
def test_a_layer_that_does_not_fit_names_both_shapes(layers, sample, message):
    with pytest.raises(UsageError) as caught:
        plan_model(config([*layers, "flatten", {"linear": 2}]), sample, 2)
    assert refusal(caught) == message


def test_the_docs_conv_mismatch_lines_are_what_needle_says():
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    seven = {"conv": {"out_channels": 8, "kernel_size": 7, "padding": 0}}
    for layers, sample in [([{"conv": 8}, {"conv": 8}, seven], (8, 4, 4)), ([{"conv": 8}], (784,))]:
        with pytest.raises(UsageError) as caught:
            plan_model(config(layers), sample, 2)
        assert f"{refusal(caught)}\n" in text


# -- initializers --------------------------------------------------------------------------------


def test_the_default_initializer_draws_what_nn_conv_draws():
    np.random.seed(3)
    built = build_model(config([{"conv": 5}, "flatten", {"linear": 2}]), (3, 4, 4), 2)
    np.random.seed(3)
    direct = nn.Conv(3, 5, 3)
    for ours, theirs in zip(built.modules[0].parameters(), direct.parameters(), strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize(
    "scheme, args", [("xavier_uniform", {"gain": 2.0}), ("kaiming_normal", {"mode": "fan_out"})]
)
def test_a_configured_initializer_draws_with_the_conv_fans(scheme, args):
    layers = [{"conv": {"out_channels": 5, "kernel_size": 3}}, "flatten", {"linear": 2}]
    np.random.seed(1)
    built = build_model(config(layers, init=scheme, init_args=args), (2, 4, 4), 2).modules[0]
    np.random.seed(1)
    weight = init.get_initializer(scheme)(2 * 9, 5 * 9, shape=(3, 3, 2, 5), **args)
    bound = 1 / np.sqrt(2 * 9)
    bias = init.rand(5, low=-bound, high=bound)
    np.testing.assert_array_equal(built.weight.numpy(), weight.numpy())
    np.testing.assert_array_equal(built.bias.numpy(), bias.numpy())


# -- shipped configs ----------------------------------------------------------------------------


def test_cifar10_resnet9_config_draws_the_weights_of_models_resnet9():
    written = load_config(ROOT / "configs" / "cifar10_resnet9.yaml")
    np.random.seed(written.seed)
    built = build_model(written, (3, 32, 32), 10)
    np.random.seed(written.seed)
    course = models.ResNet9()
    ours, theirs = built.parameters(), course.parameters()
    assert [p.shape for p in ours] == [p.shape for p in theirs]
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"parameter {i}")
    x = ndl.Tensor(np.random.randn(2, 3, 32, 32).astype(np.float32))
    built.eval()
    course.eval()
    np.testing.assert_allclose(built(x).numpy(), course(x).numpy(), rtol=1e-5, atol=1e-6)


def test_mnist_cnn_config_plans_to_ten_classes_from_mnist_images():
    written = load_config(ROOT / "configs" / "mnist_cnn.yaml")
    rows = plan_model(written, (1, 28, 28), 10)
    shapes = [row.out_shape for row in rows if row.layer == "conv"]
    assert shapes == [(16, 28, 28), (32, 14, 14), (64, 7, 7)]
    np.random.seed(0)
    model = build_model(written, (1, 28, 28), 10)
    assert model(ndl.Tensor(np.zeros((2, 1, 28, 28), dtype=np.float32))).shape == (2, 10)


def test_conv_layers_train_a_step_with_the_loss_falling():
    layers = [{"conv": 4}, "relu", {"maxpool2d": 2}, "global_avgpool", {"linear": 2}]
    np.random.seed(0)
    model = build_model(config(layers), (1, 6, 6), 2)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 1, 6, 6)).astype(np.float32)
    y = (X.mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    optimizer = ndl.optim.Adam(model.parameters(), lr=0.05)
    loss_fn, losses = nn.SoftmaxLoss(), []
    for _ in range(15):
        optimizer.reset_grad()
        loss = loss_fn(model(ndl.Tensor(X)), ndl.Tensor(y))
        loss.backward()
        optimizer.step()
        losses.append(float(loss.numpy()))
    assert losses[-1] < losses[0]


def test_mnist_cnn_dry_runs_on_an_mnist_folder_with_its_flops(tmp_path):
    from test_datasets import make_mnist
    from typer.testing import CliRunner

    from needle_cli.app import app

    make_mnist(tmp_path / "mnist")
    path = ROOT / "configs" / "mnist_cnn.yaml"
    result = CliRunner().invoke(
        app, ["train", str(path), "--dry-run", "--json", "--set", f"data.path={tmp_path / 'mnist'}"]
    )
    assert result.exit_code == 0, result.output
    import json

    summary = json.loads(result.stdout.strip().splitlines()[-1])
    rows = plan_model(load_config(path), (1, 28, 28), 10)
    assert summary["flops"] == total_flops(rows) and summary["flops"] > 0
    assert [layer["flops"] for layer in summary["layers"]] == [row.flops for row in rows]
