"""The optimizer registry: settings read from needle.optim's constructors, refused where they
do not belong, and docs/config.md's table agreeing with the signatures."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import yaml

from needle import optim
from needle.errors import UsageError
from needle.train.config import parse_config
from needle.train.constructors import Constructors, Setting, choice_model
from needle.train.fields import PositiveFloat
from needle.train.optimizers import OPTIMIZERS, SETTINGS, OptimizerConfig

ROOT = Path(__file__).resolve().parents[1]
MODEL = "model: {layers: [relu]}\n"


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def test_every_library_optimizer_is_registered():
    library = {c for c in _subclasses(optim.Optimizer) if c.__module__ == "needle.optim"}
    assert set(OPTIMIZERS.values()) == library


def test_settings_are_the_constructors_keyword_arguments():
    for name, cls in OPTIMIZERS.items():
        params = list(inspect.signature(cls).parameters.values())
        assert params[0].name == "params"
        assert OPTIMIZERS.settings(name) == {p.name: p.default for p in params[1:]}
    # every row of the table is some optimizer's setting, and every setting has a row
    assert list(OPTIMIZERS.settings_table) == list(SETTINGS)
    assert set(OptimizerConfig.model_fields) == {"name", *SETTINGS}


@pytest.mark.parametrize("key", sorted(SETTINGS))
def test_a_setting_is_taken_by_its_optimizers_and_refused_by_the_others(key):
    for name in OPTIMIZERS:
        text = MODEL + f"train:\n  optimizer: {{name: {name}, {key}: 0.5}}\n"
        if key in OPTIMIZERS.settings(name):
            config = parse_config(text, "c.yaml")
            assert config.train.optimizer.arguments()[key] == 0.5
            continue
        with pytest.raises(UsageError) as caught:
            parse_config(text, "c.yaml")
        users = [n for n in OPTIMIZERS if key in OPTIMIZERS.settings(n)]
        assert str(caught.value) == (
            f"c.yaml:3:{23 + len(name)}: train.optimizer.{key}: {name} has no setting {key} "
            f"(it belongs to {', '.join(users)})"
        )


def test_a_new_optimizer_needs_only_its_class_and_its_registry_line():
    class Lion(optim.Optimizer):
        def __init__(self, params, lr: float = 1e-4, beta1: float = 0.9) -> None:
            super().__init__(params)
            self.lr, self.beta1 = lr, beta1

    family = Constructors("optimizer", {**OPTIMIZERS, "lion": Lion}, SETTINGS)
    model = choice_model("Trial", family, default="lion", doc="")
    assert model().arguments() == {"lr": 1e-4, "beta1": 0.9}
    assert model.model_validate({"name": "sgd", "lr": 0.5}).arguments()["lr"] == 0.5
    assert "lion" in model.model_json_schema()["properties"]["name"]["enum"]


def test_a_constructor_setting_the_table_lacks_is_refused_on_import():
    def rmsprop(params, lr: float = 0.01, rho: float = 0.99) -> None: ...

    with pytest.raises(TypeError, match="takes rho, which its Setting table lacks"):
        Constructors("optimizer", {"rmsprop": rmsprop}, {"lr": Setting(PositiveFloat, "lr")})

    def no_default(params, lr: float) -> None: ...

    with pytest.raises(TypeError, match="setting lr needs a default"):
        Constructors("optimizer", {"bare": no_default}, {"lr": Setting(PositiveFloat, "lr")})


def _docs_table() -> set[tuple[str, str, object]]:
    """(optimizer, setting, default) for every row of docs/config.md's optimizer table."""
    text = (ROOT / "docs" / "config.md").read_text()
    section = text.split("Optimizer settings", 1)[1].split("\n\n", 2)[1]
    rows = set()
    for line in section.splitlines()[2:]:  # past the header and its rule
        names, setting, default = (cell.strip() for cell in line.strip("|").split("|")[:3])
        users = list(OPTIMIZERS) if names == "all" else re.findall(r"`(\w+)`", names)
        for name in users:
            rows.add((name, setting.strip("`"), yaml.safe_load(default.strip("`"))))
    return rows


def test_the_docs_table_lists_every_setting_with_its_default():
    from_signatures = {
        (name, key, default)
        for name in OPTIMIZERS
        for key, default in OPTIMIZERS.settings(name).items()
    }
    assert _docs_table() == from_signatures
