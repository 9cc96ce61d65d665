"""needle.schedule: every schedule's rates against its formula written out here, step by step;
the SCHEDULES registry read from the constructors; `train.schedule` in a config, its refusals
as positioned lines; and needle.optim.clip_grad_norm against numpy."""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle import optim, schedule
from needle.errors import UsageError
from needle.train.config import config_to_yaml, parse_config
from needle.train.schedules import SCHEDULES, SETTINGS, ScheduleConfig, epoch_rates

EPOCHS, STEPS = 7, 5
POSITIONS = [(e, s) for e in range(EPOCHS) for s in range(STEPS)]


def _rates(chosen: schedule.Schedule) -> list[float]:
    return [chosen.lr_at(e, s) for e, s in POSITIONS]


def test_constant_is_lr_throughout():
    assert _rates(schedule.Constant(0.3, EPOCHS, STEPS)) == [0.3] * len(POSITIONS)


def test_step_multiplies_by_gamma_every_step_size_epochs():
    chosen = schedule.StepLR(0.2, EPOCHS, STEPS, step_size=3, gamma=0.5)
    expected = []
    for e, _ in POSITIONS:
        rate = 0.2
        for done in range(1, e + 1):  # one multiplication after each third epoch
            if done % 3 == 0:
                rate *= 0.5
        expected.append(rate)
    np.testing.assert_allclose(_rates(chosen), expected, rtol=1e-15)
    assert chosen.lr_at(2) == 0.2 and chosen.lr_at(3) == 0.1 and chosen.lr_at(6) == 0.05


def test_multistep_multiplies_by_gamma_at_each_milestone():
    chosen = schedule.MultiStepLR(1.0, EPOCHS, STEPS, milestones=(2, 5), gamma=0.1)
    by_epoch = [1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01]  # epochs 1–2, 3–5, 6–7 (1-based)
    np.testing.assert_allclose(_rates(chosen), [by_epoch[e] for e, _ in POSITIONS], rtol=1e-12)


@pytest.mark.parametrize(("warmup_epochs", "warmup_steps"), [(0, 0), (1, 0), (0, 3), (1, 2)])
def test_cosine_warms_up_linearly_then_follows_half_a_cosine(warmup_epochs, warmup_steps):
    lr, min_lr = 0.4, 0.01
    chosen = schedule.CosineLR(
        lr,
        EPOCHS,
        STEPS,
        warmup_epochs=warmup_epochs,
        warmup_steps=warmup_steps,
        min_lr=min_lr,
    )
    total, warm = EPOCHS * STEPS, warmup_epochs * STEPS + warmup_steps
    expected = []
    for t in range(total):
        if t < warm:
            expected.append(lr * (t + 1) / warm)
        else:
            angle = math.pi * (t - warm) / (total - warm)
            expected.append(min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(angle)))
    np.testing.assert_allclose(_rates(chosen), expected, rtol=1e-12)
    assert chosen.lr_at(0, warm) == lr  # the warm-up ends at lr itself


def test_onecycle_rises_to_max_lr_then_falls_to_its_floor():
    max_lr, pct, div, final = 0.5, 0.25, 10.0, 100.0
    chosen = schedule.OneCycleLR(
        0.01, EPOCHS, STEPS, max_lr=max_lr, pct_start=pct, div_factor=div, final_div_factor=final
    )
    total = EPOCHS * STEPS
    start, floor = max_lr / div, max_lr / div / final
    peak = pct * total - 1
    expected = []
    for t in range(total):
        if t <= peak:
            a, b, x = start, max_lr, t / peak
        else:
            a, b, x = max_lr, floor, (t - peak) / (total - 1 - peak)
        expected.append(b + (a - b) * (math.cos(math.pi * x) + 1) / 2)
    rates = _rates(chosen)
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    assert rates[0] == pytest.approx(start) and rates[-1] == pytest.approx(floor)
    assert max(rates) <= max_lr
    # max_lr defaults to the optimizer's rate
    assert schedule.OneCycleLR(0.3, EPOCHS, STEPS).lr_at(0) == pytest.approx(0.3 / 25)


@settings(max_examples=40, deadline=None)
@given(
    epochs=st.integers(1, 6),
    steps=st.integers(1, 6),
    warmup=st.integers(0, 8),
    pct=st.floats(0.05, 0.95),
)
def test_per_step_schedules_stay_between_their_floor_and_their_peak(epochs, steps, warmup, pct):
    cosine = schedule.CosineLR(0.1, epochs, steps, warmup_steps=warmup, min_lr=0.001)
    onecycle = schedule.OneCycleLR(0.1, epochs, steps, pct_start=pct)
    for e in range(epochs):
        for s in range(steps + 1):  # the position after an epoch's last step too
            assert 0.001 <= cosine.lr_at(e, s) <= 0.1
            assert 0.1 / 25 / 1e4 - 1e-15 <= onecycle.lr_at(e, s) <= 0.1 + 1e-15


def test_a_schedule_refuses_a_run_it_cannot_cover():
    with pytest.raises(UsageError, match="epochs ≥ 1"):
        schedule.CosineLR(0.1, 0, 5)


# -- the registry and the config -------------------------------------------------------------


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def test_every_library_schedule_is_registered_with_its_signature_as_settings():
    library = {c for c in _subclasses(schedule.Schedule) if c.__module__ == "needle.schedule"}
    assert set(SCHEDULES.values()) == library
    for name, cls in SCHEDULES.items():
        params = list(inspect.signature(cls).parameters.values())
        assert [p.name for p in params[:3]] == ["lr", "epochs", "steps"]
        assert SCHEDULES.settings(name) == {p.name: p.default for p in params[3:]}
    assert list(SCHEDULES.settings_table) == list(SETTINGS)
    assert set(ScheduleConfig.model_fields) == {"name", *SETTINGS}


MODEL = "model: {layers: [relu]}\n"


def _train(text: str):
    return parse_config(MODEL + "train:\n  " + text + "\n", "c.yaml").train


def test_a_schedule_is_a_name_or_a_mapping_and_written_back_resolved():
    assert _train("epochs: 3").schedule.name == "constant"  # the default
    assert _train("schedule: cosine").schedule.arguments() == {
        "warmup_epochs": 0,
        "warmup_steps": 0,
        "min_lr": 0.0,
    }
    chosen = _train("schedule: {name: multistep, milestones: [2, 4], gamma: 0.5}")
    assert chosen.schedule.arguments() == {"milestones": [2, 4], "gamma": 0.5}
    config = parse_config(
        MODEL + "train: {schedule: {name: multistep, milestones: [2, 4]}}\n", "c.yaml"
    )
    assert "schedule: {name: multistep, milestones: [2, 4], gamma: 0.1}" in config_to_yaml(config)
    again = parse_config(config_to_yaml(config), "again.yaml")
    assert again.model_dump() == config.model_dump()


def test_epoch_rates_are_the_schedules_rate_at_each_epochs_first_step():
    train = _train("epochs: 4\n  schedule: {name: step, step_size: 2, gamma: 0.5}")
    assert epoch_rates(train, 10) == [0.01, 0.01, 0.005, 0.005]


@pytest.mark.parametrize(
    ("written", "error"),
    [
        (
            "schedule: cosin",
            "c.yaml:3:13: train.schedule.name: unknown schedule 'cosin'; did you mean 'cosine'?",
        ),
        (
            "schedule: multistep",
            "c.yaml:3:13: train.schedule: multistep needs milestones, the epochs after which "
            "lr is multiplied by gamma (such as [30, 60])",
        ),
        (
            "schedule: {name: multistep, milestones: [3, 2]}",
            "c.yaml:3:43: train.schedule.milestones: must be increasing epoch counts (got [3, 2])",
        ),
        (
            "schedule: {name: step, milestones: [1]}",
            "c.yaml:3:26: train.schedule.milestones: step has no setting milestones (it "
            "belongs to multistep)",
        ),
        (
            "schedule: {name: cosine, warmup_epochs: 10}",
            "c.yaml:3:43: train.schedule.warmup_epochs: the warm-up must end before the run "
            "does: train.epochs is 10 (got 10)",
        ),
        (
            "schedule: {name: cosine, min_lr: 0.5}",
            "c.yaml:3:36: train.schedule.min_lr: must be below train.optimizer.lr (0.01), "
            "where the cosine starts (got 0.5)",
        ),
        (
            "schedule: {name: onecycle, pct_start: 1.5}",
            "c.yaml:3:41: train.schedule.pct_start: must be in (0, 1) (got 1.5)",
        ),
        ("clip_grad_norm: 0", "c.yaml:3:19: train.clip_grad_norm: must be greater than 0 (got 0)"),
    ],
)
def test_schedule_and_clipping_mistakes_are_one_positioned_line(written, error):
    with pytest.raises(UsageError) as caught:
        _train(written)
    assert str(caught.value) == error


# -- clipping --------------------------------------------------------------------------------


def _params_with_grads(grads):
    params = []
    for g in grads:
        p = ndl.Tensor(np.zeros(g.shape, dtype=np.float32))
        p.grad = ndl.Tensor(g.astype(np.float32), requires_grad=False)
        params.append(p)
    return params


@settings(max_examples=30, deadline=None)
@given(
    shapes=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=4),
    max_norm=st.floats(0.01, 10.0),
    seed=st.integers(0, 2**16),
)
def test_clip_grad_norm_scales_every_gradient_together_to_max_norm(shapes, max_norm, seed):
    rng = np.random.default_rng(seed)
    grads = [rng.standard_normal(shape) * 3 for shape in shapes]
    params = _params_with_grads(grads)
    before = [p.grad for p in params]
    norm = optim.clip_grad_norm(params, max_norm)
    flat = np.concatenate([g.astype(np.float32).astype(np.float64).ravel() for g in grads])
    expected_norm = np.sqrt(np.sum(flat**2))
    assert norm == pytest.approx(expected_norm, rel=1e-5)
    scale = max_norm / (expected_norm + 1e-6) if expected_norm > max_norm else 1.0
    for p, g, old in zip(params, grads, before, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), g * scale, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(old.numpy(), g.astype(np.float32))  # never written into
    after = np.sqrt(sum(np.sum(p.grad.numpy().astype(np.float64) ** 2) for p in params))
    assert after <= max_norm * (1 + 1e-5)


def test_clip_grad_norm_skips_parameters_without_a_gradient_and_refuses_a_bad_norm():
    with_grad, without = _params_with_grads([np.array([3.0, 4.0])])[0], ndl.Tensor([1.0])
    assert optim.clip_grad_norm([with_grad, without], 1.0) == pytest.approx(5.0)
    assert without.grad is None
    np.testing.assert_allclose(with_grad.grad.numpy(), [0.6, 0.8], rtol=1e-5)
    with pytest.raises(UsageError, match=r"max_norm must be > 0 \(got 0\)"):
        optim.clip_grad_norm([with_grad], 0)


def test_the_docs_table_lists_every_schedule_with_its_settings_and_defaults():
    text = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    table = text.split("### Learning-rate schedules", 1)[1].split("| name | per |", 1)[1]
    documented = {}
    for line in table.split("\n\n", 1)[0].splitlines()[2:]:
        name, _, written = (cell.strip() for cell in line.strip("|").split("|")[:3])
        settings = {}
        for key, default in re.findall(r"`(\w+)` \(([^)]*)\)", written):
            if default.startswith("required"):
                settings[key] = ()
            elif default.startswith("the optimizer"):
                settings[key] = None
            else:
                settings[key] = yaml.safe_load(default)
        documented[name.strip("`")] = settings
    assert documented == {name: SCHEDULES.settings(name) for name in SCHEDULES}


@pytest.mark.parametrize(
    ("train", "valid"),
    [
        ({"schedule": "cosine", "early_stopping": "val_accuracy", "clip_grad_norm": 1.0}, True),
        ({"schedule": {"name": "step", "gamma": 0.5}, "early_stopping": {"patience": 2}}, True),
        ({"schedule": "cosin"}, False),
        ({"early_stopping": "val_los"}, False),
        ({"clip_grad_norm": 0}, False),
    ],
)
def test_the_json_schema_knows_the_written_forms_of_the_new_keys(train, valid):
    jsonschema = pytest.importorskip("jsonschema")
    from needle.train.schema import json_schema

    config = {"model": {"layers": ["relu"]}, "train": train}
    if valid:
        jsonschema.validate(config, json_schema())
        parse_config(yaml.safe_dump(config), "c.yaml")  # and the config agrees
    else:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(config, json_schema())
