"""Config loading: every mistake is one line with file:line:col, key path, problem and value;
overrides are validated like the file; YAML is loaded safely; the schema and the shipped
configs agree."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import yaml

from needle.errors import UsageError
from needle.train import session
from needle.train.config import (
    DataConfig,
    OptimizerConfig,
    TrainConfig,
    TrainSettings,
    config_to_yaml,
    load_config,
    parse_config,
)
from needle.train.datasets import GENERATOR, names
from needle.train.datasets.augment import AugmentConfig
from needle.train.layers import LAYER_TYPES, ModelConfig
from needle.train.optimizers import OPTIMIZERS
from needle.train.schema import json_schema
from needle.train.source import read_yaml

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").glob("*.yaml"))

TINY = """\
seed: 0
data:
  dataset: spirals
  samples: 90
model:
  layers:
    - linear: 8
    - relu
    - linear: 3
"""


def error_of(text: str, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(UsageError) as caught:
        parse_config(text, "c.yaml", overrides)
    return str(caught.value)


# Each case: the config text and the exact message. Columns count from 1, as editors do.
CASES = {
    "negative size": (
        "model:\n  layers:\n    - linear: 64\n    - relu\n    - linear: -3\n",
        "c.yaml:5:15: model.layers[2].linear.out_features: must be a positive integer (got -3)",
    ),
    "zero size, long form": (
        "model:\n  layers:\n    - linear: {out_features: 0}\n",
        "c.yaml:3:30: model.layers[0].linear.out_features: must be a positive integer (got 0)",
    ),
    "unknown layer": (
        "model:\n  layers:\n    - lineer: 64\n",
        "c.yaml:3:7: model.layers[0]: unknown layer type 'lineer'; did you mean 'linear'?",
    ),
    "unknown bare layer": (
        "model:\n  layers:\n    - relo\n",
        "c.yaml:3:7: model.layers[0]: unknown layer type 'relo'; did you mean 'relu'?",
    ),
    "unknown layer key": (
        "model:\n  layers:\n    - linear: {out_features: 3, bais: true}\n",
        "c.yaml:3:33: model.layers[0].linear.bais: unknown key 'bais'; did you mean 'bias'?",
    ),
    "unknown section": (
        "modle:\n  layers: [relu]\n",
        "c.yaml:1:1: modle: unknown key 'modle'; did you mean 'model'?",
    ),
    "missing model": ("seed: 1\n", "c.yaml:1:1: model: required key is missing"),
    "not a mapping": (
        "- a\n- b\n",
        "c.yaml:1:1: the config must be a mapping of keys (seed, data, model, train) (got a list)",
    ),
    "syntax": (
        "model:\n  layers: [relu\n",
        "c.yaml:3:1: YAML syntax error: expected ',' or ']', but got '<stream end>'",
    ),
    "lr <= 0": (
        "model: {layers: [relu]}\ntrain:\n  optimizer: {name: adam, lr: 0}\n",
        "c.yaml:3:31: train.optimizer.lr: must be greater than 0 (got 0)",
    ),
    "unknown optimizer": (
        "model: {layers: [relu]}\ntrain:\n  optimizer: addam\n",
        "c.yaml:3:14: train.optimizer.name: unknown optimizer 'addam'; did you mean 'adam'?",
    ),
    "setting of the other optimizer": (
        "model: {layers: [relu]}\ntrain:\n  optimizer: {name: sgd, beta1: 0.9}\n",
        "c.yaml:3:26: train.optimizer.beta1: sgd has no setting beta1 (it belongs to adam, adamw)",
    ),
    "batch size 0": (
        "model: {layers: [relu]}\ntrain:\n  batch_size: 0\n",
        "c.yaml:3:15: train.batch_size: must be a positive integer (got 0)",
    ),
    "batch size as a string": (
        "model: {layers: [relu]}\ntrain:\n  batch_size: '64'\n",
        "c.yaml:3:15: train.batch_size: must be an integer (got '64')",
    ),
    "dropout p >= 1": (
        "model:\n  layers:\n    - dropout: 1.5\n",
        "c.yaml:3:16: model.layers[0].dropout.p: must be in [0, 1) (got 1.5)",
    ),
    "dropout p < 0": (
        "model:\n  layers:\n    - dropout: {p: -0.1}\n",
        "c.yaml:3:20: model.layers[0].dropout.p: must be in [0, 1) (got -0.1)",
    ),
    "val_fraction outside (0, 1)": (
        "data: {val_fraction: 0}\nmodel: {layers: [relu]}\n",
        "c.yaml:1:22: data.val_fraction: must be in (0, 1) (got 0)",
    ),
    "beta2 of 1": (
        "model: {layers: [relu]}\ntrain:\n  optimizer: {name: adam, beta2: 1}\n",
        "c.yaml:3:34: train.optimizer.beta2: must be in [0, 1) (got 1)",
    ),
    "unknown initializer": (
        "model:\n  init: kaiming_unifrom\n  layers: [relu]\n",
        "c.yaml:2:9: model.init: unknown initializer 'kaiming_unifrom'; did you mean "
        "'kaiming_uniform'?",
    ),
    "unknown nonlinearity": (
        "model:\n  init_args: {nonlinearity: rleu}\n  layers: [relu]\n",
        "c.yaml:2:29: model.init_args.nonlinearity: unknown nonlinearity 'rleu'; did you mean "
        "'relu'?",
    ),
    "unknown mode": (
        "model:\n  init_args: {mode: fan_inn}\n  layers: [relu]\n",
        "c.yaml:2:21: model.init_args.mode: unknown mode 'fan_inn'; did you mean 'fan_in'?",
    ),
    "a name with a newline stays on one line": (
        'model:\n  init: "kaiming\\nuniform"\n  layers: [relu]\n',
        "c.yaml:2:9: model.init: unknown initializer 'kaiming\\nuniform'; did you mean "
        "'kaiming_uniform'?",
    ),
    "misspelled initializer argument": (
        "model:\n  init_args: {nonlinearty: relu}\n  layers: [relu]\n",
        "c.yaml:2:15: model.init_args.nonlinearty: kaiming_uniform takes no argument "
        "'nonlinearty'; did you mean 'nonlinearity'?",
    ),
    "nonlinearity not a name": (
        "model:\n  init_args: {nonlinearity: 3}\n  layers: [relu]\n",
        "c.yaml:2:29: model.init_args.nonlinearity: must be a nonlinearity name (got 3)",
    ),
    "mode not a name": (
        "model:\n  init_args: {mode: 1}\n  layers: [relu]\n",
        "c.yaml:2:21: model.init_args.mode: must be fan_in or fan_out (got 1)",
    ),
    "gain of 0": (
        "model:\n  init: xavier_uniform\n  init_args: {gain: 0}\n  layers: [relu]\n",
        "c.yaml:3:21: model.init_args.gain: must be a finite number > 0 (got 0)",
    ),
    "infinite leaky_relu slope": (
        "model:\n  init_args: {param: .inf}\n  layers: [relu]\n",
        "c.yaml:2:22: model.init_args.param: must be a finite number (got inf)",
    ),
    "argument the initializer does not take": (
        "model:\n  layers:\n    - linear: {out_features: 3, init: xavier_uniform, "
        "init_args: {nonlinearity: relu}}\n",
        "c.yaml:3:67: model.layers[0].linear.init_args.nonlinearity: xavier_uniform takes no "
        "argument 'nonlinearity'; valid: gain",
    ),
    "unknown dataset": (
        "data: {dataset: spiral}\nmodel: {layers: [relu]}\n",
        "c.yaml:1:17: data.dataset: unknown dataset 'spiral'; did you mean 'spirals'?",
    ),
    "unknown normalization": (
        "data: {normalize: min_max}\nmodel: {layers: [relu]}\n",
        "c.yaml:1:19: data.normalize: unknown normalization 'min_max'; did you mean 'minmax'?",
    ),
    "file dataset without a path": (
        "data: {dataset: npz}\nmodel: {layers: [relu]}\n",
        "c.yaml:1:7: data.path: dataset 'npz' reads a file: set data.path",
    ),
    "generator setting on a file dataset": (
        "data:\n  dataset: npz\n  path: x.npz\n  samples: 5\nmodel: {layers: [relu]}\n",
        "c.yaml:4:3: data.samples: not used with dataset 'npz': it applies to the generators "
        f"({', '.join(names(GENERATOR))}) only",
    ),
    "path for a generator": (
        "data: {path: x.npz}\nmodel: {layers: [relu]}\n",
        "c.yaml:1:8: data.path: not used with dataset 'spirals': 'spirals' is generated, it "
        "reads no file",
    ),
    "label_column for npz": (
        "data: {dataset: npz, path: x.npz, label_column: y}\nmodel: {layers: [relu]}\n",
        "c.yaml:1:35: data.label_column: not used with dataset 'npz': it applies to csv files only",
    ),
    "too few samples to split": (
        "data: {samples: 5}\nmodel: {layers: [relu]}\n",
        "c.yaml:1:17: data.samples: 5 samples is too few for 3 classes and a validation split "
        "(need at least 6)",
    ),
    "moons with 3 classes": (
        "data: {dataset: moons, classes: 3}\nmodel: {layers: [relu]}\n",
        "c.yaml:1:33: data.classes: 'moons' makes exactly 2 classes (got 3)",
    ),
    "a key that is not a name": (
        "? [a]\n: 1\nmodel: {layers: [relu]}\n",
        "c.yaml:1:3: keys must be plain names",
    ),
    "duplicate key": (
        "seed: 1\nseed: 2\nmodel: {layers: [relu]}\n",
        "c.yaml:2:1: seed: duplicate key (first written on line 1)",
    ),
    "inside a residual block": (
        "model:\n  layers:\n    - residual:\n        - linear: {out_features: 0}\n",
        "c.yaml:4:34: model.layers[0].residual[0].linear.out_features: must be a positive "
        "integer (got 0)",
    ),
    "nan": (
        "model: {layers: [relu]}\ntrain:\n  optimizer: {lr: .nan}\n",
        "c.yaml:3:19: train.optimizer.lr: must be a finite number (got nan)",
    ),
    "two layer types in one item": (
        "model:\n  layers:\n    - {linear: 3, relu: null}\n",
        "c.yaml:3:7: model.layers[0]: a layer is one key, its type, such as {linear: 64} "
        "(got keys: linear, relu)",
    ),
    "a number as a layer": (
        "model:\n  layers:\n    - 5\n",
        "c.yaml:3:7: model.layers[0]: a layer is a name such as relu, or one key such as "
        "{linear: 64} (got 5)",
    ),
    "settings for a layer that has none": (
        "model:\n  layers:\n    - relu: 3\n",
        "c.yaml:3:13: model.layers[0].relu: relu takes a mapping of settings or nothing (got 3)",
    ),
    "no layers": ("model:\n  layers: []\n", "c.yaml:2:11: model.layers: must not be empty"),
    "negative seed": (
        "seed: -1\nmodel: {layers: [relu]}\n",
        "c.yaml:1:7: seed: must be at least 0 (got -1)",
    ),
    "a type key in settings": (
        "model:\n  layers:\n    - linear: {out_features: 3, type: relu}\n",
        "c.yaml:3:33: model.layers[0].linear.type: unknown key 'type'",
    ),
    "python tag": (
        "model: !!python/object/apply:os.system ['echo hi']\n",
        "c.yaml:1:8: YAML tag '!!python/object/apply:os.system' is not allowed: configs are "
        "plain data (mappings, lists, numbers, strings, true/false, null)",
    ),
    "val_fraction with mnist": (
        "data: {dataset: mnist, path: d, val_fraction: 0.1}\nmodel: {layers: [relu]}\n",
        "c.yaml:1:33: data.val_fraction: not used with dataset 'mnist': 'mnist' has its own "
        "validation split (the t10k files)",
    ),
}


@pytest.mark.parametrize("text, message", CASES.values(), ids=CASES.keys())
def test_each_mistake_is_one_positioned_line(text, message):
    assert error_of(text) == message


def test_several_mistakes_are_each_reported_in_file_order():
    # One line each, with no `error:` written by the library: the CLI adds its own.
    text = "train: {epochs: 0}\nseed: -1\nmodel: {layers: [relu]}\n"
    assert error_of(text) == (
        "c.yaml:1:17: train.epochs: must be a positive integer (got 0)\n"
        "c.yaml:2:7: seed: must be at least 0 (got -1)"
    )


def test_empty_config():
    assert error_of("") == (
        "c.yaml: the config is empty; it needs at least a model: section "
        "(see configs/reference.yaml)"
    )


def test_python_tag_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    text = f"model: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(UsageError):
        parse_config(text, "c.yaml")
    assert not marker.exists()


def test_alias_cycle_is_refused():
    with pytest.raises(UsageError, match="alias refers to the mapping or list it is in"):
        read_yaml("a: &x [1, *x]\n", "c.yaml")


def test_aliases_cannot_blow_a_small_file_up():
    text = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\n"
    for name, previous in zip("bcdef", "abcde", strict=True):
        text += f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]\n"  # 9**6 values
    with pytest.raises(UsageError) as caught:
        read_yaml(text, "laughs.yaml")
    assert str(caught.value) == "laughs.yaml:1:11: the config has more than 100000 values"


def test_merge_keys_and_yaml12_floats():
    text = "base: &opt {name: sgd, lr: 1e-3}\n"
    data, _ = read_yaml(text + "x: {<<: *opt, momentum: 0.9}\n", "c.yaml")
    assert data["x"] == {"name": "sgd", "lr": 0.001, "momentum": 0.9}
    config = parse_config(TINY + "train:\n  optimizer: {name: adam, lr: 3e-4}\n", "c.yaml")
    assert config.train.optimizer.lr == 3e-4


# -- overrides -------------------------------------------------------------------------------

OVERRIDE_ERRORS = {
    "unknown key": (
        ("train.epoch=5",),
        "--set train.epoch=5: train.epoch: unknown key 'epoch'; did you mean 'epochs'?",
    ),
    "bad value": (
        ("model.layers[0].linear=-1",),
        "--set model.layers[0].linear=-1: model.layers[0].linear.out_features: must be a "
        "positive integer (got -1)",
    ),
    "index out of range": (
        ("model.layers[9]=relu",),
        "--set model.layers[9]=relu: model.layers has 3 entries (0 to 2), not 9",
    ),
    "not a number": (
        ("train.optimizer.lr=abc",),
        "--set train.optimizer.lr=abc: train.optimizer.lr: must be a number (got 'abc')",
    ),
    "path through a scalar": (
        ("seed.x=1",),
        "--set seed.x=1: seed is not a mapping (got 0)",
    ),
    "name into a list": (
        ("model.layers.x=1",),
        "--set model.layers.x=1: model.layers is not a mapping (got a list) (use an index, such "
        "as [0])",
    ),
    "index into a scalar": (("seed[0]=1",), "--set seed[0]=1: seed is not a list (got 0)"),
    "key path ending with a dot": (("train.=1",), "--set train.=1: the key path ends with '.'"),
    "no equals sign": (
        ("train.epochs",),
        "--set train.epochs: expected key.path=value, such as train.epochs=5",
    ),
    "bad YAML in the value": (
        ("train.epochs=[1",),
        "--set train.epochs=[1: column 3 of the value: YAML syntax error: expected ',' or ']', "
        "but got '<stream end>'",
    ),
    "duplicate key in the value": (
        ("train={epochs: 1, epochs: 2}",),
        "--set train={epochs: 1, epochs: 2}: column 13 of the value: epochs: duplicate key "
        "(first written at column 2)",
    ),
    "python tag in the value": (
        ("model=!!python/object/apply:os.system ['true']",),
        "--set model=!!python/object/apply:os.system ['true']: column 1 of the value: YAML tag "
        "'!!python/object/apply:os.system' is not allowed: configs are plain data (mappings, "
        "lists, numbers, strings, true/false, null)",
    ),
    "bad key path": (
        ("a..b=1",),
        "--set a..b=1: cannot read the key path at '.b' (write names and list indices, such "
        "as model.layers[2].linear)",
    ),
}


@pytest.mark.parametrize("overrides, message", OVERRIDE_ERRORS.values(), ids=OVERRIDE_ERRORS)
def test_override_errors_name_the_override(overrides, message):
    assert error_of(TINY, overrides) == message


def test_overrides_apply_in_order_and_create_sections():
    config = parse_config(
        TINY,
        "c.yaml",
        [
            "train.epochs=5",
            "train.epochs=7",
            "model.layers.0=tanh",
            "train.optimizer=sgd",
            "data.noise=0.5",
        ],
    )
    assert config.train.epochs == 7
    assert config.model.layers[0].type == "tanh"
    assert config.train.optimizer.name == "sgd"
    assert config.train.optimizer.momentum == 0.0  # sgd's defaults, filled in
    assert config.data.noise == 0.5


# -- defaults, round trip, schema ------------------------------------------------------------


def test_defaults_are_filled_in():
    config = parse_config(TINY, "c.yaml")
    assert (config.data.samples, config.data.classes, config.data.val_fraction) == (90, 3, 0.2)
    assert config.train.optimizer.name == "adam"
    assert config.train.optimizer.arguments() == {
        "lr": 0.01,
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.0,
    }


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_optimizer_name_builds_its_class_with_the_library_s_defaults(name):
    config = parse_config(TINY + f"train:\n  optimizer: {name}\n", "c.yaml")
    built = session.prepare(config).optimizer
    assert type(built) is OPTIMIZERS[name]
    defaults = {
        key: p.default
        for key, p in inspect.signature(type(built)).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    assert config.train.optimizer.arguments() == defaults
    assert {key: getattr(built, key) for key in defaults} == defaults


def test_short_and_long_forms_mean_the_same():
    short = parse_config(
        "model:\n  layers: [{linear: 4}, {dropout: 0.2}, {residual: [relu]}, batchnorm1d]\n",
        "c.yaml",
    )
    long = parse_config(
        "model:\n  layers:\n    - linear: {out_features: 4}\n    - dropout: {p: 0.2}\n"
        "    - residual: {layers: [relu]}\n    - batchnorm1d: {}\n",
        "c.yaml",
    )
    assert short.model_dump() == long.model_dump()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_configs_load_and_round_trip(path):
    config = load_config(path)
    again = parse_config(config_to_yaml(config), "resolved.yaml")
    assert again.model_dump() == config.model_dump()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_schema_accepts_the_shipped_configs(path):
    jsonschema = pytest.importorskip("jsonschema")
    data, _ = read_yaml(path.read_text(), str(path))
    jsonschema.validate(data, json_schema())


def test_schema_rejects_an_unknown_layer_and_knows_every_layer():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"model": {"layers": ["relo"]}}, schema)
    assert set(schema["$defs"]["Layer"]["anyOf"][0]["enum"]) == set(LAYER_TYPES)


def test_reference_config_uses_every_layer_type_and_key():
    text = (ROOT / "configs" / "reference.yaml").read_text()
    data = yaml.safe_load(text)
    # Sequence layers and text keys cannot follow reference.yaml's flat points: they are in
    # configs/reference_text.yaml, a language model, checked together with it.
    lm = yaml.safe_load((ROOT / "configs" / "reference_text.yaml").read_text())
    used = set()

    def collect(layers):
        for layer in layers:
            name = layer if isinstance(layer, str) else next(iter(layer))
            used.add(name)
            if name == "residual":
                inner = layer["residual"]
                collect(inner["layers"] if isinstance(inner, dict) else inner)

    collect(data["model"]["layers"])
    collect(lm["model"]["layers"])
    assert used == set(LAYER_TYPES)
    # every key, but for those of another dataset kind (files) or optimizer (sgd)
    assert set(data) == set(TrainConfig.model_fields)
    # the keys the reference's spirals refuses are there as comments, with every setting;
    # the text keys are in the language model's reference
    unused = {"path", "label_column", "augment"}
    text_keys = {"bptt", "tokens"}
    assert set(data["data"]) == set(DataConfig.model_fields) - unused - text_keys
    assert all(f"  # {key}: " in text for key in unused)
    written = re.search(r"# augment: (\{.*\})", text).group(1)
    assert set(yaml.safe_load(written)) == set(AugmentConfig.model_fields)
    assert text_keys - {"tokens"} <= set(lm["data"])  # tokens: `text` files only
    assert set(data["model"]) == set(ModelConfig.model_fields)
    assert set(data["train"]) == set(TrainSettings.model_fields)
    assert set(data["train"]["optimizer"]) == set(OptimizerConfig.model_fields) - {"momentum"}


# -- files -----------------------------------------------------------------------------------


def test_file_problems(tmp_path):
    with pytest.raises(UsageError, match=r"^config file '.*nope.yaml' not found$"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(UsageError, match="is a folder, not a YAML file"):
        load_config(tmp_path)
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UsageError, match="is not UTF-8 text"):
        load_config(binary)
