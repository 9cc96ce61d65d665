"""The dataset registry is the one list of datasets: DataConfig's defaults and refusals, the
JSON Schema and the tables in docs/config.md all agree with it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from needle.errors import UsageError
from needle.train.config import parse_config
from needle.train.datasets import DATASET_TYPES, GENERATOR, DatasetType, load_data, names
from needle.train.datasets.registry import REQUIRED, SETTINGS, defaults_text, register
from needle.train.schema import json_schema

DOCS = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def data_section(text: str) -> str:
    return text.split("## `data`", 1)[1].split("\n## ", 1)[0]


def table(section: str, header: str) -> list[list[str]]:
    """The rows of the markdown table whose header row starts with `header`, as cells."""
    lines = section[section.index(header) :].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def settings_cell(dataset: DatasetType) -> str:
    """How the docs write a dataset's settings: `key: default`, `path` (required)."""
    cells = []
    for key, default in dataset.settings.items():
        if default is REQUIRED:
            cells.append(f"`{key}` (required)")
        else:
            only = " (only)" if key == "classes" and dataset.exact_classes else ""
            cells.append(f"`{key}: {default}`{only}")
    return ", ".join(cells)


# A value of the right type and range for each setting, so only "not used" can be wrong.
VALID = {"samples": 10, "classes": 2, "noise": 0.5, "path": "x", "label_column": "x"}
VALID.update(val_fraction=0.5, bptt=8, tokens="char")


def minimal(name: str) -> dict[str, str]:
    """The fewest `data:` settings naming dataset `name` validly."""
    required = [key for key, d in DATASET_TYPES[name].settings.items() if d is REQUIRED]
    return {"dataset": name, **{key: "x" for key in required}}


def parse_data(settings: dict) -> object:
    inline = ", ".join(f"{key}: {value}" for key, value in settings.items())
    return parse_config(f"data: {{{inline}}}\nmodel: {{layers: [relu]}}\n", "c.yaml").data


def test_the_docs_dataset_table_is_the_registry():
    rows = table(data_section(DOCS.read_text()), "| dataset | kind |")
    assert [row[0] for row in rows] == [f"`{name}`" for name in names()]
    for (_, kind, settings, summary), name in zip(rows, names(), strict=True):
        dataset = DATASET_TYPES[name]
        assert (kind, settings, summary) == (dataset.kind, settings_cell(dataset), dataset.summary)


def test_the_docs_key_table_shows_the_registry_defaults():
    rows = {row[0].strip("`"): row[1] for row in table(data_section(DOCS.read_text()), "| key |")}
    assert set(rows) == {"dataset", "normalize", "augment", *SETTINGS}
    for key in SETTINGS:
        # a default that differs between datasets is shown in the dataset table only
        shown = defaults_text(key) if ";" not in defaults_text(key) else "per dataset (below)"
        assert rows[key].replace("`", "") == (shown or "—"), key


def test_the_schema_lists_every_dataset_and_the_defaults():
    data = json_schema()["$defs"]["DataConfig"]["properties"]
    assert data["dataset"]["enum"] == list(names())
    for name in names():
        assert name in data["dataset"]["description"]
    for key in SETTINGS:
        assert defaults_text(key) in data[key]["description"], key


@pytest.mark.parametrize("name", names())
def test_each_dataset_gets_its_defaults_and_refuses_what_it_does_not_take(name):
    dataset = DATASET_TYPES[name]
    filled = parse_data(minimal(name))
    for key in SETTINGS:
        default = dataset.settings.get(key, REQUIRED)
        expected = "x" if key in minimal(name) else default
        assert getattr(filled, key) == expected, key
    for key in set(SETTINGS) - set(dataset.settings):
        with pytest.raises(UsageError) as err:
            parse_data({**minimal(name), key: VALID[key]})
        assert str(err.value).endswith(
            f"data.{key}: not used with dataset '{name}': {dataset.why_not(key)}"
        )


@pytest.mark.parametrize("name", [n for n in names(GENERATOR) if not DATASET_TYPES[n].text])
def test_generated_data_carries_its_sample_shape_and_classes(name):
    data = load_data(
        parse_config(
            f"data: {{dataset: {name}, samples: 60}}\nmodel: {{layers: [relu]}}\n", "c.yaml"
        )
    )
    assert data.sample_shape == data.train.sample_shape == data.val.sample_shape == (2,)
    assert data.in_features == math.prod(data.sample_shape) == 2
    assert data.num_classes == DATASET_TYPES[name].settings["classes"]
    assert data.train.X.shape == (len(data.train), *data.sample_shape)


@pytest.mark.parametrize(
    ("written", "kept"),
    [((6,), (6,)), ((2, 3), (1, 2, 3)), ((3, 4, 5), (3, 4, 5)), ((2, 2, 2, 2), (2, 2, 2, 2))],
)
def test_file_data_keeps_its_sample_shape(tmp_path, written, kept):
    """An npz's X keeps its shape; (N, H, W) is grey images, given their one channel."""
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, *written))
    np.savez(path, X=X, y=np.arange(10) % 3)
    data = load_data(
        parse_config(
            f"data: {{dataset: npz, path: '{path}', val_fraction: 0.5}}\n"
            "model: {layers: [relu]}\n",
            "c.yaml",
        )
    )
    assert data.sample_shape == data.train.sample_shape == data.val.sample_shape == kept
    assert data.in_features == math.prod(written)
    # the same values, sample for sample, in the order the hold-out chose
    both = np.concatenate([data.train.X, data.val.X]).reshape(10, -1)
    assert sorted(map(tuple, both)) == sorted(map(tuple, X.astype(np.float32).reshape(10, -1)))


def test_a_name_registers_once_and_only_with_known_settings():
    spirals = DATASET_TYPES["spirals"]
    with pytest.raises(ValueError, match="registered twice"):
        register(spirals)
    odd = DatasetType("odd", GENERATOR, "", {"colour": 1}, spirals.load)
    with pytest.raises(ValueError, match="no data setting"):
        register(odd)
    assert "odd" not in DATASET_TYPES
