"""needle.init_stats: the theory derived here from the papers' formulas, the measurement checked
against it, and the Kolmogorov–Smirnov machinery checked on cases with known answers."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from needle import init
from needle.errors import UsageError
from needle.init_stats import (
    KS_ALPHA,
    MAX_DEPTH,
    MAX_STACK_VALUES,
    config_layer_stats,
    expected_signal,
    init_stats,
    ks_coefficient,
    ks_critical,
    ks_statistic,
    measure,
    normal_cdf,
    normal_quantile,
    propagate,
    stack_size,
    survey,
    theory,
    trend,
    uniform_cdf,
)

# -- theory ---------------------------------------------------------------------------------


def test_kaiming_uniform_formula_reads_as_in_the_issue():
    t = theory("kaiming_uniform", 256, 256)
    bound = math.sqrt(2) * math.sqrt(3 / 256)
    assert t.scale.value == pytest.approx(bound)
    assert t.scale.text == f"bound = gain·√(3/fan_in) = √2·√(3/256) = {bound:.4f}"
    assert t.std == pytest.approx(bound / math.sqrt(3))
    assert t.gain.text == "gain(relu) = √2 = 1.4142"


@pytest.mark.parametrize(
    "scheme, kwargs, quantity, value",
    [
        ("xavier_uniform", {}, "bound", math.sqrt(6 / (784 + 100))),
        ("xavier_uniform", {"gain": 1.5}, "bound", 1.5 * math.sqrt(6 / (784 + 100))),
        ("xavier_normal", {"gain": 2.0}, "std", 2.0 * math.sqrt(2 / (784 + 100))),
        ("kaiming_uniform", {"mode": "fan_out"}, "bound", math.sqrt(2) * math.sqrt(3 / 100)),
        ("kaiming_normal", {}, "std", math.sqrt(2) / math.sqrt(784)),
        ("kaiming_normal", {"nonlinearity": "tanh"}, "std", 5 / 3 / math.sqrt(784)),
        ("kaiming_uniform", {"nonlinearity": "selu"}, "bound", 0.75 * math.sqrt(3 / 784)),
        ("kaiming_uniform", {"nonlinearity": "linear"}, "bound", math.sqrt(3 / 784)),
        (
            "kaiming_normal",
            {"nonlinearity": "leaky_relu", "param": 0.2},
            "std",
            math.sqrt(2 / (1 + 0.2**2)) / math.sqrt(784),
        ),
    ],
)
def test_scales_follow_the_papers(scheme, kwargs, quantity, value):
    t = theory(scheme, 784, 100, **kwargs)
    assert t.scale.quantity == quantity and t.scale.value == pytest.approx(value)
    std = value / math.sqrt(3) if quantity == "bound" else value
    assert t.std == pytest.approx(std)
    assert t.distribution == ("uniform" if quantity == "bound" else "normal")
    assert t.scale.text.endswith(f"= {value:.4f}")


def test_substituted_formulas_show_the_numbers():
    assert theory("xavier_normal", 784, 100, gain=1.5).scale.substituted == "1.5·√(2/(784+100))"
    assert theory("kaiming_normal", 784, 100, mode="fan_out").scale.text == (
        f"std = gain/√fan_out = √2/√100 = {math.sqrt(2) / 10:.4f}"
    )
    leaky = theory("kaiming_uniform", 10, 10, nonlinearity="leaky_relu", param=0.2)
    assert leaky.gain.text == "gain(leaky_relu, a=0.2) = √(2/(1+a²)) = √(2/(1+0.2²)) = " + (
        f"{math.sqrt(2 / 1.04):.4f}"
    )


def test_formulas_read_gain_scale_and_a_uniform_schemes_std():
    uniform = theory("xavier_uniform", 30, 20)
    assert [f.quantity for f in uniform.formulas] == ["gain", "bound", "std"]
    std = uniform.formulas[2]
    assert std.value == uniform.std == pytest.approx(uniform.scale.value / math.sqrt(3))
    assert std.text == f"std = bound/√3 = {uniform.scale.value:.4f}/√3 = {std.value:.4f}"
    normal = theory("xavier_normal", 30, 20)
    assert normal.formulas == (normal.gain, normal.scale) and normal.std == normal.scale.value


def test_every_formula_in_the_json_carries_its_text():
    stats = init_stats("kaiming_uniform", samples=100)
    data = stats.to_dict()["theory"]
    assert data["gain"]["text"] == stats.theory.gain.text == "gain(relu) = √2 = 1.4142"
    assert data["scale"]["text"] == stats.theory.scale.text
    assert [f["text"] for f in data["formulas"]] == [f.text for f in stats.theory.formulas]
    stack = propagate("xavier_uniform", depth=1, width=4)
    assert stack.to_dict()["theory"]["scale"]["text"] == stack.theory.scale.text


def test_theory_gain_is_init_calculate_gain():
    for nonlinearity in ("relu", "tanh", "selu", "sigmoid", "leaky_relu"):
        t = theory("kaiming_uniform", 8, 8, nonlinearity=nonlinearity)
        assert t.gain.value == init.calculate_gain(nonlinearity)


@pytest.mark.parametrize(
    "scheme, kwargs, message",
    [
        ("kaiming_unifrom", {}, "did you mean 'kaiming_uniform'"),
        ("kaiming_uniform", {"fan_in": 0}, r"fan_in must be a positive integer \(got 0\)"),
        ("kaiming_uniform", {"fan_out": -1}, r"fan_out must be a positive integer \(got -1\)"),
        ("xavier_uniform", {"mode": "fan_in"}, "mode applies to kaiming schemes"),
        ("xavier_uniform", {"param": 0.1}, "param applies to kaiming schemes"),
        ("xavier_uniform", {"gain": 0.0}, "gain must be a positive number"),
        ("kaiming_normal", {"gain": 2.0}, "gain applies to xavier schemes"),
        ("kaiming_normal", {"param": 0.1}, "nonlinearity is relu"),
        ("kaiming_normal", {"mode": "fan_inn"}, "did you mean 'fan_in'"),
        ("kaiming_normal", {"nonlinearity": "rellu"}, "did you mean 'relu'"),
    ],
)
def test_theory_rejects_what_a_scheme_does_not_take(scheme, kwargs, message):
    with pytest.raises(UsageError, match=message):
        theory(scheme, **kwargs)


def test_a_slope_that_is_not_a_number_is_a_usage_error_not_a_crash():
    message = r"leaky_relu: negative slope '0\.1' is not a number"
    with pytest.raises(UsageError, match=message):
        theory("kaiming_uniform", nonlinearity="leaky_relu", param="0.1")
    with pytest.raises(UsageError, match=message):  # xavier: the slope is the stack's alone
        propagate("xavier_uniform", depth=1, width=4, nonlinearity="leaky_relu", param="0.1")


# -- the theory is init's own formulas, and what the initializers draw ---------------------------

# The function of needle.init that sets each scheme's scale: xavier's of (fan_in, fan_out, gain),
# kaiming's of (fan, gain).
SCALE_OF = {
    "xavier_uniform": init.xavier_uniform_bound,
    "xavier_normal": init.xavier_normal_std,
    "kaiming_uniform": init.kaiming_uniform_bound,
    "kaiming_normal": init.kaiming_normal_std,
}


@st.composite
def scheme_options(draw):
    """A scheme with fans and the options it takes, as both `theory` and the initializer take
    them."""
    scheme = draw(st.sampled_from(sorted(SCALE_OF)))
    fan_in, fan_out = draw(st.integers(1, 5000)), draw(st.integers(1, 5000))
    if scheme.startswith("xavier"):
        return scheme, fan_in, fan_out, {"gain": draw(st.floats(0.01, 10))}
    nonlinearity = draw(st.sampled_from(["relu", "tanh", "selu", "sigmoid", "leaky_relu"]))
    options = {"nonlinearity": nonlinearity, "mode": draw(st.sampled_from(init.FAN_MODES))}
    if nonlinearity == "leaky_relu":
        options["param"] = draw(st.none() | st.floats(0, 1))
    return scheme, fan_in, fan_out, options


@settings(max_examples=100, deadline=None)
@given(scheme_options())
def test_the_theorys_numbers_are_inits_functions_exactly(case):
    scheme, fan_in, fan_out, options = case
    t = theory(scheme, fan_in, fan_out, **options)
    if scheme.startswith("xavier"):
        gain = options["gain"]
        assert t.scale.value == SCALE_OF[scheme](fan_in, fan_out, gain)
    else:
        gain = init.calculate_gain(options["nonlinearity"], options.get("param"))
        fan = init.fan(fan_in, fan_out, options["mode"])
        assert t.scale.value == SCALE_OF[scheme](fan, gain)
        assert re.search(rf"[/√]{fan}\)?$", t.scale.substituted)  # the fan shown is init's
    assert t.gain.value == gain


def spread_mismatches(w: np.ndarray, t) -> list[str]:
    """How the draws `w` disagree with the theory `t`, each test at 6 standard errors for
    n = w.size draws (a false alarm about once in 10⁹): the mean within 6·σ/√n, the variance
    within 6·√((μ₄ − σ⁴)/n) of σ², with μ₄ = b⁴/5 for U(−b, b) and 3σ⁴ for N(0, σ²); and for a
    uniform scheme the bound b itself: no draw past it, and the largest |w| within b·40/n of
    it (missed with probability (1 − 40/n)ⁿ ≈ e⁻⁴⁰)."""
    x = w.astype(np.float64).ravel()
    n, std = x.size, t.std
    uniform = t.distribution == "uniform"
    fourth_moment = t.scale.value**4 / 5 if uniform else 3 * std**4
    wrong = []
    if abs(x.mean()) > 6 * std / math.sqrt(n):
        wrong.append(f"mean {x.mean():.3g}")
    if abs(x.var() - std**2) > 6 * math.sqrt((fourth_moment - std**4) / n):
        wrong.append(f"std {x.std():.6g}, theory {std:.6g}")
    if uniform:
        bound, largest = t.scale.value, float(np.abs(x).max())
        if not bound * (1 - 40 / n) <= largest <= np.float32(bound):
            wrong.append(f"max |w| {largest:.6g}, bound {bound:.6g}")
    return wrong


@pytest.mark.parametrize(
    "scheme, fan_in, fan_out, options",
    [
        ("xavier_uniform", 300, 500, {}),
        ("xavier_uniform", 784, 200, {"gain": 1.5}),
        ("xavier_normal", 400, 300, {"gain": 0.5}),
        ("kaiming_uniform", 400, 300, {}),
        ("kaiming_uniform", 200, 600, {"nonlinearity": "tanh", "mode": "fan_out"}),
        ("kaiming_uniform", 500, 250, {"nonlinearity": "leaky_relu", "param": 0.2}),
        ("kaiming_normal", 300, 400, {"mode": "fan_out"}),
        ("kaiming_normal", 600, 200, {"nonlinearity": "selu"}),
        (
            "kaiming_normal",
            250,
            500,
            {"nonlinearity": "leaky_relu", "param": 0.5, "mode": "fan_out"},
        ),
    ],
)
def test_the_theorys_scale_is_the_spread_the_initializer_draws(scheme, fan_in, fan_out, options):
    t = theory(scheme, fan_in, fan_out, **options)
    with init.seeded(0):
        w = init.get_initializer(scheme)(fan_in, fan_out, **options).numpy()
    assert spread_mismatches(w, t) == []
    # The tolerance is tight enough to see a scale 2 % off (4 % in variance): it can fail.
    assert spread_mismatches(w * 1.02, t) != []


# -- the distributions and the KS test ----------------------------------------------------------


def test_cdfs():
    assert uniform_cdf(np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]), 1.0).tolist() == [
        0.0,
        0.0,
        0.5,
        0.75,
        1.0,
        1.0,
    ]
    x = np.array([-1.96, 0.0, 1.96])
    assert normal_cdf(x * 2, 2.0) == pytest.approx([0.025, 0.5, 0.975], abs=1e-4)
    for p in (0.001, 0.3, 0.5, 0.9, 0.999):
        assert normal_cdf(np.array([normal_quantile(p)]), 1.0)[0] == pytest.approx(p, abs=1e-12)


def test_ks_statistic_of_an_exact_quantile_grid_is_half_a_step():
    # Draws at the midpoints (i − ½)/n of the CDF sit half a step off the empirical CDF.
    n = 200
    grid = (np.arange(1, n + 1) - 0.5) / n
    assert ks_statistic(grid * 2 - 1, lambda x: uniform_cdf(x, 1.0)) == pytest.approx(1 / (2 * n))


def test_ks_critical_value_is_the_asymptotic_one():
    assert ks_critical(10_000) == pytest.approx(math.sqrt(-math.log(KS_ALPHA / 2) / 2) / 100)
    assert ks_critical(10_000) == pytest.approx(1.36 / 100, rel=2e-3)
    # c(α) of the two-sided test: 1.224 at α = 0.10, 1.358 at 0.05, 1.628 at 0.01.
    for alpha, c in ((0.10, 1.224), (0.05, 1.358), (0.01, 1.628)):
        assert ks_coefficient(alpha) == pytest.approx(c, abs=5e-4)
    stats = init_stats("kaiming_uniform", samples=400)
    assert stats.ks.coefficient == pytest.approx(stats.ks.critical * 20)


def test_ks_rejects_about_five_percent_of_correct_draws():
    t = theory("kaiming_uniform", 50, 40)
    rng = np.random.default_rng(0)
    rejected = [
        not measure(t, rng.uniform(-t.scale.value, t.scale.value, 2000), seed=0).ks.passed
        for _ in range(200)
    ]
    assert 0.01 <= np.mean(rejected) <= 0.10


@pytest.mark.parametrize(
    "wrong",
    [
        lambda w, t: w * 1.05,  # a 5 % wrong scale
        lambda w, t: np.random.default_rng(1).standard_normal(w.shape) * t.std,  # normal
        lambda w, t: w + 0.1 * t.std,  # shifted
    ],
    ids=["scaled", "normal instead of uniform", "shifted"],
)
def test_ks_catches_a_wrong_distribution(wrong):
    stats = init_stats("kaiming_uniform", samples=65_536)
    assert stats.ks.passed
    broken = measure(stats.theory, wrong(draws("kaiming_uniform"), stats.theory), seed=0)
    assert not broken.ks.passed


def draws(scheme, **kwargs):
    np.random.seed(0)
    return init.get_initializer(scheme)(256, 256, **kwargs).numpy().ravel().astype(np.float64)


# -- measurement ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scheme", ["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"]
)
def test_measured_statistics_are_those_of_the_initializer_draws(scheme):
    stats = init_stats(scheme, samples=65_536, seed=0)
    w = draws(scheme)  # the same seed: the same draws, one 256×256 matrix
    assert stats.statistic("mean").measured == pytest.approx(w.mean())
    assert stats.statistic("std").measured == pytest.approx(w.std())
    assert stats.statistic("min").measured == w.min() and stats.statistic("max").measured == w.max()
    # ... and they agree with the theory: the mean within 4 standard errors, the std within 2 %.
    assert abs(w.mean()) < 4 * stats.theory.std / math.sqrt(w.size)
    assert stats.statistic("std").expected == pytest.approx(w.std(), rel=0.02)
    assert stats.ks.passed


def test_uniform_extremes_and_bound():
    stats = init_stats("kaiming_uniform", samples=65_536)
    a, n = stats.theory.scale.value, stats.samples
    assert stats.statistic("max").expected == pytest.approx(a * (n - 1) / (n + 1))
    assert stats.statistic("min").expected == pytest.approx(-a * (n - 1) / (n + 1))
    bound = stats.statistic("bound")
    assert bound.expected == a and bound.measured <= a * (1 + 1e-7)  # float32 rounding


def test_normal_extremes_use_blom():
    stats = init_stats("kaiming_normal", samples=10_000)
    n, std = stats.samples, stats.theory.std
    assert stats.statistic("max").expected == pytest.approx(
        std * normal_quantile((n - 0.375) / (n + 0.25))
    )
    assert stats.statistic("max").measured == pytest.approx(
        stats.statistic("max").expected, rel=0.2
    )


def test_samples_are_whole_matrices_truncated():
    stats = init_stats("xavier_uniform", 10, 7, samples=1000)
    assert stats.samples == 1000 and stats.ks.samples == 1000
    assert stats.ks.critical == pytest.approx(ks_critical(1000))


def test_histogram_is_a_density_over_the_support():
    for scheme in ("kaiming_uniform", "kaiming_normal"):
        stats = init_stats(scheme, samples=20_000, bins=30)
        h = stats.histogram
        width = np.diff(h.edges)
        assert len(h.counts) == 30 and sum(h.counts) + h.outside == 20_000
        assert np.sum(np.array(h.density) * width) == pytest.approx(1 - h.outside / 20_000)
        # The theoretical mass over ±bound is 1; over ±4σ it is erf(4/√2).
        mass = 1.0 if scheme.endswith("uniform") else math.erf(4 / math.sqrt(2))
        assert np.sum(np.array(h.expected) * width) == pytest.approx(mass)


def test_seeded_and_restores_the_global_rng():
    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    a = init_stats("kaiming_normal", samples=100, seed=3)
    assert np.random.rand() == expected
    assert init_stats("kaiming_normal", samples=100, seed=3) == a
    assert init_stats("kaiming_normal", samples=100, seed=4) != a


def test_a_broken_initializer_is_caught(monkeypatch):
    def too_wide(fan_in, fan_out, nonlinearity="relu", **kwargs):
        bound = 1.1 * init.calculate_gain(nonlinearity) * math.sqrt(3 / fan_in)
        return init.rand(fan_in, fan_out, low=-bound, high=bound)

    monkeypatch.setitem(init.INITIALIZERS, "kaiming_uniform", too_wide)
    stats = init_stats("kaiming_uniform")
    assert not stats.ks.passed
    assert stats.statistic("bound").measured > stats.theory.scale.value


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"samples": 1}, r"samples must be from 2 to 10000000 \(got 1\)"),
        ({"samples": 10_000_001}, r"samples must be from 2 to 10000000 \(got 10000001\)"),
        ({"samples": 0}, r"samples must be a positive integer \(got 0\)"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"fan_in": 100_000, "fan_out": 1000}, "at most 20000000"),
    ],
)
def test_init_stats_rejects_bad_arguments(kwargs, message):
    with pytest.raises(UsageError, match=message):
        init_stats("kaiming_uniform", **kwargs)


# -- depth propagation ----------------------------------------------------------------------------


def test_kaiming_keeps_a_relu_stack_steady_where_xavier_halves_the_variance():
    kaiming = propagate("kaiming_uniform", depth=8, width=256)
    xavier = propagate("xavier_uniform", depth=8, width=256)
    # Var(z_l) = Var(z_1)·(fan·Var(W)/2)^(l−1): a factor 1 per layer for Kaiming, 1/2 for
    # Xavier, so the std's geometric mean factor per layer is 1 and 1/√2. (Each layer is off
    # by a few percent at random, so the test takes the mean over the 7 steps.)
    assert kaiming.forward_gain ** (1 / 7) == pytest.approx(1, rel=0.03)
    assert kaiming.backward_gain ** (1 / 7) == pytest.approx(1, rel=0.03)
    assert xavier.forward_gain ** (1 / 7) == pytest.approx(1 / math.sqrt(2), rel=0.03)
    assert xavier.backward_gain ** (1 / 7) == pytest.approx(1 / math.sqrt(2), rel=0.03)
    assert kaiming.layers[0].forward_std == pytest.approx(math.sqrt(2), rel=0.05)
    assert xavier.layers[0].forward_std == pytest.approx(1, rel=0.05)


@pytest.mark.parametrize(
    "scheme, nonlinearity, param",
    [
        ("kaiming_normal", "relu", None),
        ("xavier_normal", "relu", None),
        ("kaiming_uniform", "leaky_relu", 0.3),
        ("xavier_uniform", "linear", None),
    ],
)
def test_measured_signal_follows_the_variance_argument(scheme, nonlinearity, param):
    p = propagate(scheme, depth=4, width=256, nonlinearity=nonlinearity, param=param)
    for signal in p.layers:
        assert signal.forward_std == pytest.approx(signal.expected_forward_std, rel=0.1)
        assert signal.backward_std == pytest.approx(signal.expected_backward_std, rel=0.1)


@pytest.mark.parametrize(
    "gain, verdict",
    [
        (0.49, "vanishing"),
        (0.5, "steady"),
        (1.0, "steady"),
        (2.0, "steady"),
        (2.01, "exploding"),
        (math.inf, "exploding"),
        (math.nan, "overflow"),
    ],
)
def test_trend_is_steady_within_a_factor_of_two(gain, verdict):
    assert trend(gain) == verdict


def test_expected_signal_formula():
    t = theory("kaiming_uniform", 100, 100)  # fan·Var(W) = gain² = 2
    expected = expected_signal(t, "relu", None, 3)
    assert [f for f, _ in expected] == pytest.approx([math.sqrt(2)] * 3)
    assert [b for _, b in expected] == pytest.approx([math.sqrt(0.5)] * 3)
    assert expected_signal(t, "tanh", None, 2) == [(None, None), (None, None)]


def test_an_overflowing_stack_is_a_result_not_a_crash_or_a_warning():
    # fan·Var(W)·E[relu(z)²]/Var(z) = 16·(40²·2/32)/2 = 800 per layer: past float64 within
    # ~110 layers of the prediction and ~220 of the measurement.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = propagate("xavier_normal", depth=300, width=16, gain=40)
    assert p.layers[0].expected_forward_std == pytest.approx(math.sqrt(16 * 40**2 * 2 / 32))
    assert p.layers[-1].expected_forward_std == math.inf
    assert p.layers[0].expected_backward_std == math.inf
    assert math.isnan(p.layers[-1].forward_std) and p.forward_trend == "overflow"


def test_propagate_options_and_errors():
    p = propagate("kaiming_uniform", depth=2, width=16, batch=32, nonlinearity="tanh", seed=1)
    assert (p.depth, p.width, p.batch, p.activation) == (2, 16, 32, "tanh")
    assert p.theory.gain.value == init.calculate_gain("tanh")
    assert p == propagate(
        "kaiming_uniform", depth=2, width=16, batch=32, nonlinearity="tanh", seed=1
    )
    selu = propagate("kaiming_normal", depth=2, width=16, nonlinearity="selu")
    assert all(math.isfinite(s.forward_std) and s.backward_std > 0 for s in selu.layers)
    with pytest.raises(UsageError, match="depth must be a positive integer"):
        propagate("kaiming_uniform", depth=0)
    with pytest.raises(UsageError, match="nonlinearity for a layer stack 'conv2d'"):
        propagate("kaiming_uniform", depth=2, nonlinearity="conv2d")


def test_stack_size_limits_depth_and_the_values_a_stack_holds():
    assert stack_size(MAX_DEPTH, 16) == (MAX_DEPTH, 16, 256)
    with pytest.raises(UsageError, match=rf"depth must be at most {MAX_DEPTH} \(got 1001\)"):
        stack_size(MAX_DEPTH + 1, 16)
    # The widest stack of depth 1 that fits, and one wider: w·(w + 256) against the limit.
    width = math.isqrt(MAX_STACK_VALUES + 128**2) - 128
    assert width * (width + 256) <= MAX_STACK_VALUES < (width + 1) * (width + 257)
    assert stack_size(1, width) == (1, width, 256)
    with pytest.raises(UsageError, match=rf"activations; at most {MAX_STACK_VALUES}"):
        stack_size(1, width + 1)
    with pytest.raises(UsageError, match=r"\(batch 100000\) .* = 20020000 weights and"):
        stack_size(2, 100, batch=100_000)
    with pytest.raises(UsageError, match=r"width must be a positive integer \(got 0\)"):
        propagate("kaiming_uniform", depth=2, width=0)
    with pytest.raises(UsageError, match=r"depth must be at most 1000 \(got 100000\)"):
        propagate("kaiming_uniform", depth=100_000, width=100_000)


def test_survey_refuses_a_stack_too_large_before_drawing(monkeypatch):
    def no_draws(*args, **kwargs):
        raise AssertionError("drew weights before refusing the stack")

    monkeypatch.setattr("needle.init_stats.measurement.draw", no_draws)
    with pytest.raises(UsageError, match="at most 20000000"):
        survey(["kaiming_uniform"], depth=10, width=10_000)


# -- several schemes side by side ---------------------------------------------------------------


def test_survey_is_init_stats_and_propagate_of_each_scheme():
    reports = survey(["xavier_normal", "kaiming_uniform"], samples=500, seed=2, depth=2, width=8)
    for report, scheme in zip(reports, ["xavier_normal", "kaiming_uniform"], strict=True):
        assert report.stats == init_stats(scheme, samples=500, seed=2)
        assert report.propagation == propagate(scheme, depth=2, width=8, seed=2)
        assert report.to_dict()["propagation"] == report.propagation.to_dict()
    (alone,) = survey(["kaiming_normal"], samples=100)
    assert alone.propagation is None and alone.to_dict()["propagation"] is None


def test_survey_routes_each_option_to_the_schemes_that_take_it():
    options = {"gain": 2.0, "mode": "fan_out", "samples": 100, "depth": 2, "width": 8}
    xavier, kaiming = survey(["xavier_uniform", "kaiming_uniform"], route_options=True, **options)
    assert xavier.stats.theory == theory("xavier_uniform", gain=2.0)
    assert kaiming.stats.theory == theory("kaiming_uniform", mode="fan_out")
    assert kaiming.propagation.theory == theory("kaiming_uniform", 8, 8, mode="fan_out")
    # Without routing, every option goes to every scheme, and one that does not apply fails.
    with pytest.raises(UsageError, match="mode applies to kaiming schemes"):
        survey(["xavier_uniform", "kaiming_uniform"], **options)


def test_survey_gives_a_leaky_relu_stack_its_slope_whatever_the_scheme():
    (xavier,) = survey(["xavier_normal"], nonlinearity="leaky_relu", param=0.3, depth=2, width=8)
    assert xavier.stats.theory == theory("xavier_normal")
    assert xavier.propagation == propagate(
        "xavier_normal", depth=2, width=8, nonlinearity="leaky_relu", param=0.3
    )
    with pytest.raises(UsageError, match="param applies to kaiming schemes"):
        survey(["xavier_normal"], nonlinearity="leaky_relu", param=0.3)  # no stack


@pytest.mark.parametrize(
    "schemes, options, message",
    [
        (["xavier_normal", "xavier_normal"], {}, "a scheme is listed twice"),
        (
            ["xavier_normal", "xavier_uniform"],
            {"mode": "fan_in"},
            r"mode applies to kaiming_\* schemes",
        ),
        (["xavier_normal"], {"param": 0.1}, r"param applies to kaiming_\* schemes"),
        (["kaiming_normal"], {"gain": 2.0}, r"gain applies to xavier_\* schemes, and none is"),
    ],
)
def test_survey_refuses_an_option_no_compared_scheme_takes(schemes, options, message):
    with pytest.raises(UsageError, match=message):
        survey(schemes, route_options=True, samples=100, **options)


# -- a config's Linear layers --------------------------------------------------------------------

CONFIG = """\
seed: 4
data: {dataset: blobs, samples: 100}
model:
  init: kaiming_normal
  init_args: {nonlinearity: tanh}
  layers:
    - linear: 32
    - tanh
    - residual:
        layers:
          - linear: 8
          - relu
          - linear: {out_features: 32, init: xavier_uniform, init_args: {gain: 2}}
    - linear: 3
"""


def test_config_layer_stats(tmp_path):
    from needle.train.build import build_model
    from needle.train.config import load_config
    from needle.train.datasets import load_data

    path = tmp_path / "model.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    layers = config_layer_stats(config)
    assert [layer.name for layer in layers] == [
        "model.layers[0]",
        "model.layers[2].residual.layers[0]",
        "model.layers[2].residual.layers[2]",
        "model.layers[3]",
    ]
    data = load_data(config)
    fans = [(data.in_features, 32), (32, 8), (8, 32), (32, data.num_classes)]
    assert [(s.stats.theory.fan_in, s.stats.theory.fan_out) for s in layers] == fans
    assert [s.stats.theory.scheme for s in layers] == ["kaiming_normal"] * 2 + [
        "xavier_uniform",
        "kaiming_normal",
    ]
    assert layers[0].stats.theory.std == pytest.approx(5 / 3 / math.sqrt(data.in_features))
    assert layers[2].stats.theory.scale.value == pytest.approx(2 * math.sqrt(6 / 40))
    # The weights measured are the model training builds (seeded with the config's seed).
    np.random.seed(config.seed)
    model = build_model(config, data.sample_shape, data.num_classes)
    assert layers[0].stats.statistic("std").measured == pytest.approx(
        model.modules[0].weight.numpy().std()
    )
    assert all(layer.stats.ks.passed for layer in layers)
