"""The layer registry: every registered type's shape rule and parameter count agree with the
module it builds; mismatches name both shapes; docs/config.md's table lists the registry."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle.errors import UsageError
from needle.train.build import build_model, plan_model
from needle.train.config import TrainConfig
from needle.train.layers import LAYER_TYPES, LayerSpec, Linear, batch_shape, register, sequence

ROOT = Path(__file__).resolve().parent.parent

# Layers of flat features; the sequence family (token ids, (seq_len, features)) has its own
# examples and shape tests in test_layers_sequence.py.
NON_SEQUENCE = [name for name, cls in LAYER_TYPES.items() if cls.__module__ != sequence.__name__]


def example(name: str, features: int) -> object:
    """A written layer of type `name` that takes `features` features and is valid there."""
    examples = {
        "linear": {"linear": 3},
        "dropout": {"dropout": 0.25},
        "batchnorm1d": {"batchnorm1d": {"dim": features}},
        "layernorm1d": "layernorm1d",
        "residual": {"residual": [{"linear": 4}, "relu", {"linear": features}]},
        "reshape": {"reshape": [features, 1]},
        "conv": {"conv": 3},
    }
    return examples.get(name, name)


# Layer types that take image samples (channels, height, width) only: planned on one.
IMAGE_LAYERS = {"conv", "batchnorm2d", "maxpool2d", "avgpool2d", "global_avgpool"}
IMAGE = (2, 5, 5)


def config(layers: list) -> TrainConfig:
    return TrainConfig.model_validate({"model": {"layers": layers}})


def refusal(caught: pytest.ExceptionInfo) -> str:
    """A refusal without its position (a config built in code has none to show)."""
    return str(caught.value).split(": ", 1)[1]


def test_every_layer_type_has_an_example_that_builds():
    # a new layer type falls back to its bare name, which must then be valid
    for name in NON_SEQUENCE:
        sample = IMAGE if name in IMAGE_LAYERS else (5,)
        plan_model(config([example(name, 5), "flatten", {"linear": 2}]), sample, 2)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(NON_SEQUENCE)),
    sample=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    batch=st.integers(2, 4),
)
def test_shape_rule_and_parameter_count_are_the_built_modules(name, sample, batch):
    """Planned on a sample shape, a layer either fits, and then its module puts out
    (batch, *out_shape) and holds `params` numbers, or is refused at its own position."""
    features = sample[0] if len(sample) == 1 else math.prod(sample)
    written = config([example(name, features), "flatten", {"linear": 2}])
    try:
        rows = plan_model(written, sample, 2)
    except UsageError as err:
        assert len(sample) > 1 or name in IMAGE_LAYERS, err  # flat samples fit the others
        assert str(err).split(": ", 1)[1].startswith("model.layers[0].")
        assert batch_shape(sample) in str(err)
        return
    np.random.seed(0)
    module = build_model(written, sample, 2).modules[0]
    x = ndl.Tensor(np.random.randn(batch, *sample).astype(np.float32))
    assert module(x).shape == (batch, *rows[0].out_shape)
    assert rows[0].params == sum(p.numpy().size for p in module.parameters())
    assert rows[0].out_features == math.prod(rows[0].out_shape)


def test_a_layer_of_flat_features_given_an_image_names_both_shapes():
    with pytest.raises(UsageError) as caught:
        plan_model(config([{"linear": 4}]), (1, 28, 28), 4)
    assert refusal(caught) == (
        "model.layers[0].linear: linear takes (batch, features) but is given "
        "(batch, 1, 28, 28); a flatten before it makes (batch, 784)"
    )


def test_a_residual_block_must_give_back_the_shape_it_takes():
    with pytest.raises(UsageError) as caught:
        plan_model(config([{"residual": ["flatten"]}, "flatten", {"linear": 2}]), (2, 3), 2)
    assert refusal(caught) == (
        "model.layers[0].residual: the block takes (batch, 2, 3) and puts out "
        "(batch, 6); a residual adds its input back, so the block must give back (batch, 2, 3)"
    )
    rows = plan_model(config([{"residual": ["relu"]}, "flatten", {"linear": 2}]), (2, 3), 2)
    assert [(r.index, r.out_shape) for r in rows] == [
        ("0", (2, 3)),
        ("0.0", (2, 3)),
        ("1", (6,)),
        ("2", (2,)),
    ]


def test_an_output_that_is_not_flat_is_refused_naming_its_shape():
    with pytest.raises(UsageError) as caught:
        plan_model(config(["relu"]), (2, 3), 3)
    assert refusal(caught) == (
        "model.layers: the model puts out (batch, 2, 3) but the data has 3 classes; "
        "the last layer must put out 3"
    )


def test_register_refuses_a_taken_name_and_a_short_form_of_no_field():
    with pytest.raises(ValueError, match="linear"):
        register(type("Again", (Linear,), {}))

    class Toy(LayerSpec):
        type: str = "toy_layer"
        short = "size"

    with pytest.raises(ValueError, match="size"):
        register(Toy)
    assert "toy_layer" not in LAYER_TYPES


# -- docs/config.md's layer table --------------------------------------------------------


def _layer_table() -> list[list[str]]:
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    section = text.split("### Layers", 1)[1]
    lines = [line for line in section.splitlines() if line.startswith("| `")]
    rows = []
    for line in lines:
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        rows.append([re.sub(r"^`(.*)`$", r"\1", cell) for cell in cells])
        if not section.split(line, 1)[1].lstrip("\n").startswith("| `"):
            break  # the table ends at its last row
    return rows


def test_the_docs_layer_table_lists_the_registry_with_each_short_form():
    rows = _layer_table()
    assert [row[0] for row in rows] == list(LAYER_TYPES)
    for name, short, sets, long, *_ in rows:
        cls = LAYER_TYPES[name]
        assert sets == (cls.short or "—"), name
        settings = set(cls.model_fields) - {"type"}
        if cls.short is None:
            assert short == name
        else:
            # the short form's value is what the long form writes under the field it sets
            assert yaml.safe_load(short) == {name: yaml.safe_load(long)[name][cls.short]}
        if long == "—":
            assert not settings, f"{name} has settings: {sorted(settings)}"
        else:
            assert set(yaml.safe_load(long)[name]) == settings, name
