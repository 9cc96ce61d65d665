"""Config mistakes raise ConfigError with their parts right (file, line, column, key path,
message), and the CLI's line is what those parts lay out to.

Positions are found by searching the text each test writes, never typed in.
"""

from __future__ import annotations

import pickle

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from needle.errors import ConfigError, UsageError
from needle.train.config import load_config, parse_config
from needle.train.datasets import load_data
from needle.train.session import prepare
from needle_cli.app import app
from needle_cli.errors import config_error_lines

runner = CliRunner()


def position_of(text: str, token: str, *, after: str = "") -> tuple[int, int]:
    """1-based (line, column) of the first `token` in `text` that comes after `after`."""
    offset = text.index(token, text.index(after) + len(after) if after else 0)
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def raised(text: str, overrides: tuple[str, ...] = ()) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml", overrides)
    return caught.value


def parts(err: ConfigError) -> tuple:
    return err.source, err.line, err.column, err.key


def laid_out(err: ConfigError) -> str:
    """The one-line layout, written here from the parts, independently of needle."""
    if err.line is not None:
        where = f"{err.source}:{err.line}:{err.column}"
    elif err.column is not None:
        where = f"{err.source}: column {err.column} of the value"
    else:
        where = err.source
    return where + (f": {err.key}" if err.key else "") + f": {err.message}"


# -- the parts of each kind of mistake ---------------------------------------------------------


def test_a_yaml_syntax_error_is_placed_where_the_parser_stopped():
    text = "seed: 1\ntrain: epochs: 3\nmodel: {layers: [relu]}\n"
    err = raised(text)
    # a second `:` on one line: PyYAML stops at it
    assert parts(err) == ("c.yaml", *position_of(text, ":", after="train: epochs"), None)
    assert err.message.startswith("YAML syntax error: mapping values are not allowed")
    assert str(err) == laid_out(err)


def test_a_schema_violation_deep_in_a_layer_names_its_key_path_and_value():
    text = (
        "model:\n  layers:\n    - linear: 8\n    - residual:\n"
        "        - relu\n        - linear: {out_features: -3}\n"
    )
    err = raised(text)
    key = "model.layers[1].residual[1].linear.out_features"
    assert parts(err) == ("c.yaml", *position_of(text, "-3"), key)
    assert err.message == "must be a positive integer (got -3)"
    assert str(err) == laid_out(err) and err.others == ()


def test_an_unknown_key_is_placed_on_the_key():
    text = "model: {layers: [relu]}\ntrain:\n  epochs: 2\n  bacth_size: 4\n"
    err = raised(text)
    assert parts(err) == ("c.yaml", *position_of(text, "bacth_size"), "train.bacth_size")
    assert err.message == "unknown key 'bacth_size'; did you mean 'batch_size'?"


def test_a_set_value_that_breaks_the_schema_names_the_set_and_the_key():
    err = raised("model: {layers: [relu]}\n", ("train.epochs=0",))
    assert parts(err) == ("--set train.epochs=0", None, None, "train.epochs")
    assert err.message == "must be a positive integer (got 0)"
    assert str(err) == laid_out(err)


def test_a_set_value_with_a_syntax_error_has_a_column_of_the_value_only():
    value = "{lr: 0.1"
    err = raised("model: {layers: [relu]}\n", (f"train.optimizer={value}",))
    assert err.source == f"--set train.optimizer={value}" and err.line is None
    # PyYAML stops at the end of the unclosed mapping: one past its last character
    assert err.column == len(value) + 1 and err.key is None
    assert str(err) == laid_out(err)


@pytest.mark.parametrize(
    "override, says",
    [
        ("train..epochs=3", "the key path"),
        ("train.epochs", "expected key.path=value"),
        ("model.layers[9]=relu", "has 1 entries"),
    ],
)
def test_a_set_that_cannot_be_applied_names_the_set(override, says):
    err = raised("model: {layers: [relu]}\n", (override,))
    assert parts(err) == (f"--set {override}", None, None, None)
    assert says in err.message and str(err) == laid_out(err)


def test_a_missing_data_file_is_placed_at_data_path(tmp_path):
    missing = tmp_path / "nowhere.npz"
    text = f"data: {{dataset: npz, path: '{missing}'}}\nmodel: {{layers: [relu]}}\n"
    config = parse_config(text, "c.yaml")
    with pytest.raises(ConfigError) as caught:
        load_data(config)
    err = caught.value
    assert parts(err) == ("c.yaml", *position_of(text, f"'{missing}'"), "data.path")
    assert err.message == f"file '{missing}' not found"


def test_several_mistakes_are_one_error_whose_problems_come_in_file_order():
    text = "train: {epochs: 0}\nseed: -1\nmodel: {layers: [relu]}\n"
    err = raised(text)
    found = [(p.line, p.column, p.key) for p in err.problems]
    assert found == [
        (*position_of(text, "0"), "train.epochs"),
        (*position_of(text, "-1"), "seed"),
    ]
    assert all(p.others == () for p in err.problems)
    assert str(err) == "\n".join(laid_out(p) for p in err.problems)
    assert "error:" not in str(err)  # the library writes no `error:`; the CLI adds it


@settings(max_examples=30, deadline=None)
@given(
    blank=st.lists(st.sampled_from(["", "# a comment", "seed: 3"]), max_size=4, unique=True),
    indent=st.integers(1, 6),
    epochs=st.integers(-50, 0),
)
def test_the_position_follows_the_value_wherever_it_is_written(blank, indent, epochs):
    pad = " " * indent
    text = "\n".join([*blank, "model: {layers: [relu]}", "train:", f"{pad}epochs: {epochs}", ""])
    err = raised(text)
    assert (err.line, err.column, err.key) == (
        *position_of(text, str(epochs), after="epochs:"),
        "train.epochs",
    )


def test_a_config_error_is_a_usage_error_and_survives_pickling():
    err = raised("train: {epochs: 0}\nseed: -1\nmodel: {layers: [relu]}\n")
    assert isinstance(err, UsageError) and err.exit_code == 2
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and [parts(p) for p in back.problems] == [
        parts(p) for p in err.problems
    ]


# -- the CLI lays the parts out -----------------------------------------------------------------


def cli_failure(tmp_path, text: str, *extra: str) -> tuple[ConfigError, str]:
    """The ConfigError the library raises for `text`, and what `needle train` prints for it."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    sets = tuple(extra[i + 1] for i, arg in enumerate(extra) if arg == "--set")
    with pytest.raises(ConfigError) as caught:
        prepare(load_config(path, sets))
    result = runner.invoke(app, ["train", str(path), "--dry-run", *extra])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return caught.value, result.stderr


@pytest.mark.parametrize(
    "text, extra",
    [
        ("train: epochs: 3\nmodel: {layers: [relu]}\n", ()),
        ("model:\n  layers:\n    - residual: [{linear: {out_features: -3}}]\n", ()),
        ("model: {layers: [relu]}\ntrain: {bacth_size: 4}\n", ()),
        ("model: {layers: [relu]}\n", ("--set", "train.epochs=0")),
        ("model: {layers: [relu]}\n", ("--set", "train.optimizer={lr: 0.1")),
        ("train: {epochs: 0}\nseed: -1\nmodel: {layers: [relu]}\n", ()),
        ("data: {dataset: npz, path: nowhere.npz}\nmodel: {layers: [relu]}\n", ()),
    ],
    ids=["syntax", "deep in a layer", "unknown key", "--set", "--set syntax", "two", "no file"],
)
def test_the_cli_prints_one_error_line_per_problem_laid_out_from_its_parts(
    tmp_path, monkeypatch, text, extra
):
    monkeypatch.chdir(tmp_path)  # `nowhere.npz` is looked for here
    err, stderr = cli_failure(tmp_path, text, *extra)
    assert stderr == "".join(f"error: {laid_out(p)}\n" for p in err.problems)


def test_on_a_terminal_the_position_is_bold_and_the_rest_unchanged():
    err = raised("model: {layers: [relu]}\ntrain: {epochs: 0}\n")
    where = f"{err.source}:{err.line}:{err.column}"
    plain = config_error_lines(err)
    assert plain == [f"error: {laid_out(err)}"]
    bold = config_error_lines(err, color=True)
    assert bold == [plain[0].replace(where, typer.style(where, bold=True))]


def test_no_color_keeps_a_terminal_plain(monkeypatch):
    from needle_cli import errors

    monkeypatch.setattr(errors.sys.stderr, "isatty", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert errors._stderr_has_color()
    monkeypatch.setenv("NO_COLOR", "1")
    assert not errors._stderr_has_color()


def test_running_out_of_memory_keeps_its_position_and_fails_with_exit_1(monkeypatch):
    from needle.train import session

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate")

    monkeypatch.setattr(session, "build_model", no_memory)
    text = "data: {dataset: spirals, samples: 60}\nmodel: {layers: [{linear: 9}, {linear: 3}]}\n"
    with pytest.raises(ConfigError) as caught:
        prepare(parse_config(text, "m.yaml"))
    err = caught.value
    assert err.exit_code == 1  # the same config may fit a bigger machine
    # at the largest layer: 9·3 + 3 weights against the first's 2·9 + 9
    assert err.key == "model.layers[1].linear.out_features"
    assert (err.line, err.column) == position_of(text, "3", after="{linear: 9}, {linear: ")


def test_a_resume_that_changes_the_model_is_refused_at_its_set(tmp_path):
    from needle.train.runner import resume, train

    text = "data: {dataset: spirals, samples: 60}\nmodel: {layers: [{linear: 3}]}\n"
    run = train(parse_config(text, "r.yaml", ["train.epochs=1"]), out=tmp_path)
    with pytest.raises(ConfigError) as caught:
        resume(run.run_dir, ["model.layers.0.linear=4"])
    assert caught.value.source == "--set model.layers.0.linear=4"
    assert (caught.value.line, caught.value.column, caught.value.key) == (None, None, None)
