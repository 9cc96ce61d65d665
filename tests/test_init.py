"""needle.init: constructors, initializers and gains.

Exactness tests re-seed numpy and rebuild the course's formula by hand; distribution tests
draw large samples and derive their tolerance from the sample size.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import needle as ndl
from needle import init
from needle.errors import UsageError


def _same_draws(make, reference, seed=7):
    """Run `make()` and `reference()` from the same seed; check they leave numpy's RNG in
    the same place (so `make` drew exactly what `reference` did) and return both results."""
    np.random.seed(seed)
    made = make()
    after_made = np.random.rand()
    np.random.seed(seed)
    expected = reference()
    after_expected = np.random.rand()
    assert after_made == after_expected, "consumed a different amount of randomness"
    return made, expected


# -- constructors ---------------------------------------------------------------------------


def test_rand_is_one_draw_scaled_in_float64_then_cast():
    made, expected = _same_draws(
        lambda: init.rand(3, 4, low=-2.0, high=5.0),
        lambda: (np.random.rand(3, 4) * 7.0 - 2.0).astype(np.float32),
    )
    assert made.dtype == np.float32 and made.shape == (3, 4)
    np.testing.assert_array_equal(made.numpy(), expected)
    assert made.requires_grad is False


def test_randn_is_one_draw_scaled_in_float64_then_cast():
    made, expected = _same_draws(
        lambda: init.randn(5, 2, mean=1.5, std=0.25, dtype="float64"),
        lambda: np.random.randn(5, 2) * 0.25 + 1.5,
    )
    assert made.dtype == np.float64
    np.testing.assert_array_equal(made.numpy(), expected)


def test_randb_is_rand_at_most_p(device):
    made, expected = _same_draws(
        lambda: init.randb(50, 3, p=0.3, device=device), lambda: np.random.rand(50, 3) <= 0.3
    )
    # NDArray devices store float32 and float64 only: the mask is 1.0/0.0 there.
    assert made.dtype == (np.bool_ if device == ndl.cpu_numpy() else np.float32)
    np.testing.assert_array_equal(made.numpy(), expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_constant_ones_zeros(dtype):
    c = init.constant(2, 3, c=-1.25, dtype=dtype, requires_grad=True)
    assert c.dtype == np.dtype(dtype) and c.requires_grad
    np.testing.assert_array_equal(c.numpy(), np.full((2, 3), -1.25))
    np.testing.assert_array_equal(init.ones(4, dtype=dtype).numpy(), np.ones(4))
    np.testing.assert_array_equal(init.zeros(1, 2, dtype=dtype).numpy(), np.zeros((1, 2)))
    assert init.ones(3).dtype == np.float32  # the default dtype


def test_constructors_draw_nothing():
    _same_draws(lambda: (init.ones(3), init.zeros(2), init.constant(2, c=3.0)), lambda: None)


def test_like_constructors_keep_shape_and_dtype():
    t = ndl.Tensor(np.arange(6, dtype=np.float64).reshape(2, 3))
    for made, value in ((init.zeros_like(t), 0.0), (init.ones_like(t), 1.0)):
        assert made.shape == (2, 3) and made.dtype == np.float64
        assert not made.requires_grad
        np.testing.assert_array_equal(made.numpy(), np.full((2, 3), value))
    assert ndl.zeros_like is init.zeros_like and ndl.ones is init.ones


@pytest.mark.parametrize("as_tensor", [False, True])
def test_one_hot_rows_of_identity(as_tensor):
    labels = np.array([2, 0, 3, 3], dtype=np.uint8)
    made = init.one_hot(5, ndl.Tensor(labels) if as_tensor else labels, dtype="float64")
    expected = np.zeros((4, 5))
    expected[np.arange(4), labels] = 1.0
    assert made.dtype == np.float64
    np.testing.assert_array_equal(made.numpy(), expected)


def test_one_hot_accepts_whole_floats_and_refuses_bad_labels():
    np.testing.assert_array_equal(init.one_hot(3, np.array([2.0, 0.0])).numpy(), np.eye(3)[[2, 0]])
    assert init.one_hot(3, np.array([], dtype=np.int64)).shape == (0, 3)
    with pytest.raises(UsageError, match=r"label -1 is outside \[0, 3\)"):
        init.one_hot(3, np.array([0, -1]))
    with pytest.raises(UsageError, match=r"label 3 is outside \[0, 3\)"):
        init.one_hot(3, ndl.Tensor(np.array([3, 1], dtype=np.uint8)))
    with pytest.raises(UsageError, match="whole numbers"):
        init.one_hot(3, np.array([0.5]))
    with pytest.raises(UsageError, match="whole numbers"):
        init.one_hot(3, np.array([True]))


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="device"):
        init.ones(2, device="cuda")


# -- the global RNG ---------------------------------------------------------------------------


def test_seeded_draws_as_np_random_seed_and_restores_the_stream():
    np.random.seed(11)
    expected_inside = np.random.rand(3)
    np.random.seed(5)
    expected_after = np.random.rand(2)
    np.random.seed(5)
    with init.seeded(11):
        inside = init.rand(3, dtype="float64").numpy()
    np.testing.assert_array_equal(inside, expected_inside)
    np.testing.assert_array_equal(np.random.rand(2), expected_after)


def test_rng_is_restored_when_the_block_raises():
    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    for context in (init.seeded(1), init.rng_restored()):
        with pytest.raises(KeyError), context:
            np.random.rand(4)
            raise KeyError
    assert np.random.rand() == expected


def test_rng_restored_keeps_the_stream_without_seeding():
    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    with init.rng_restored():
        init.kaiming_uniform(4, 3)
    assert np.random.rand() == expected


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3", None])
def test_seeded_refuses_what_is_not_a_seed(seed):
    with pytest.raises(UsageError, match="seed must be a non-negative integer"):
        with init.seeded(seed):
            pass


# -- initializers: exact against the course formulas ------------------------------------------

SQRT2 = math.sqrt(2)


def _uniform(shape, bound):
    """U(−bound, bound) the course's way: rand · (high − low) + low."""
    return np.random.rand(*shape) * (2 * bound) - bound


@pytest.mark.parametrize(
    "make, reference",
    [
        (
            lambda: init.xavier_uniform(6, 4, gain=1.5),
            lambda: _uniform((6, 4), 1.5 * math.sqrt(6 / 10)),
        ),
        (
            lambda: init.xavier_normal(6, 4, gain=0.5),
            lambda: np.random.randn(6, 4) * (0.5 * math.sqrt(2 / 10)),
        ),
        (
            lambda: init.kaiming_uniform(6, 4),
            lambda: _uniform((6, 4), SQRT2 * math.sqrt(3 / 6)),
        ),
        (
            lambda: init.kaiming_normal(6, 4),
            lambda: np.random.randn(6, 4) * (SQRT2 / math.sqrt(6)),
        ),
    ],
    ids=["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"],
)
def test_initializers_match_course_formulas_bit_for_bit(make, reference):
    made, expected = _same_draws(make, lambda: reference().astype(np.float32))
    assert made.shape == (6, 4) and made.dtype == np.float32
    np.testing.assert_array_equal(made.numpy(), expected)


def test_kaiming_defaults_are_relu_fan_in():
    default, explicit = _same_draws(
        lambda: init.kaiming_uniform(9, 5).numpy(),
        lambda: init.kaiming_uniform(9, 5, nonlinearity="relu", mode="fan_in").numpy(),
    )
    np.testing.assert_array_equal(default, explicit)


@pytest.mark.parametrize("nonlinearity", ["tanh", "leaky_relu", "selu", "linear", "sigmoid"])
def test_kaiming_fan_out_and_other_gains(nonlinearity):
    gain = init.calculate_gain(nonlinearity, 0.2 if nonlinearity == "leaky_relu" else None)
    b = gain * math.sqrt(3 / 5)
    made, expected = _same_draws(
        lambda: init.kaiming_uniform(9, 5, nonlinearity=nonlinearity, mode="fan_out", param=0.2),
        lambda: _uniform((9, 5), b).astype(np.float32),
    )
    np.testing.assert_array_equal(made.numpy(), expected)
    made, expected = _same_draws(
        lambda: init.kaiming_normal(9, 5, nonlinearity, mode="fan_out", param=0.2),
        lambda: (np.random.randn(9, 5) * (gain / math.sqrt(5))).astype(np.float32),
    )
    np.testing.assert_array_equal(made.numpy(), expected)


@pytest.mark.parametrize("name", sorted(init.INITIALIZERS))
def test_initializers_pass_kwargs_through(name):
    w = init.get_initializer(name)(3, 2, dtype="float64", requires_grad=True, device=ndl.cpu())
    assert w.dtype == np.float64 and w.requires_grad and w.shape == (3, 2)


# -- initializers: distributions --------------------------------------------------------------


def _check_moments(sample: np.ndarray, std: float, fourth_moment: float):
    """Mean ≈ 0 and variance ≈ std² within 6 standard errors for this sample size:
    se(mean) = std/√n, se(var) = √((μ₄ − std⁴)/n)."""
    x = sample.astype(np.float64).ravel()
    n = x.size
    assert abs(x.mean()) <= 6 * std / math.sqrt(n)
    assert abs(x.var() - std**2) <= 6 * math.sqrt((fourth_moment - std**4) / n)


FAN_IN, FAN_OUT = 400, 300  # 120,000 draws per initializer


@pytest.mark.parametrize(
    "name, kwargs, uniform_bound",
    [
        ("xavier_uniform", {"gain": 2.0}, 2.0 * math.sqrt(6 / (FAN_IN + FAN_OUT))),
        ("kaiming_uniform", {}, SQRT2 * math.sqrt(3 / FAN_IN)),
        ("kaiming_uniform", {"mode": "fan_out"}, SQRT2 * math.sqrt(3 / FAN_OUT)),
        ("xavier_normal", {"gain": 2.0}, None),
        ("kaiming_normal", {"nonlinearity": "tanh"}, None),
    ],
)
def test_initializer_distributions(name, kwargs, uniform_bound):
    np.random.seed(0)
    w = init.get_initializer(name)(FAN_IN, FAN_OUT, **kwargs).numpy()
    n = w.size
    if uniform_bound is not None:
        b = uniform_bound
        assert np.abs(w).max() <= np.float32(b)
        # P(no draw within b·δ of an end) = (1 − δ/2)ⁿ; with δ = 200/n that is e^-100.
        assert w.max() >= b * (1 - 200 / n) and w.min() <= -b * (1 - 200 / n)
        _check_moments(w, b / math.sqrt(3), b**4 / 5)  # U(−b, b): var b²/3, μ₄ b⁴/5
    else:
        if name == "xavier_normal":
            std = 2.0 * math.sqrt(2 / (FAN_IN + FAN_OUT))
        else:
            std = (5 / 3) / math.sqrt(FAN_IN)
        _check_moments(w, std, 3 * std**4)  # normal: μ₄ = 3σ⁴


@settings(max_examples=40, deadline=None)
@given(
    fan_in=st.integers(1, 40),
    fan_out=st.integers(1, 40),
    gain=st.floats(0.01, 10),
    seed=st.integers(0, 2**31 - 1),
)
def test_uniform_initializers_stay_inside_their_bound(fan_in, fan_out, gain, seed):
    np.random.seed(seed)
    w = init.xavier_uniform(fan_in, fan_out, gain=gain).numpy()
    assert w.shape == (fan_in, fan_out)
    assert np.abs(w).max() <= np.float32(gain * math.sqrt(6 / (fan_in + fan_out)))
    w = init.kaiming_uniform(fan_in, fan_out, mode="fan_out").numpy()
    assert np.abs(w).max() <= np.float32(SQRT2 * math.sqrt(3 / fan_out))


# -- gains, modes and the registry ------------------------------------------------------------


@pytest.mark.parametrize(
    "nonlinearity, param, expected",
    [
        ("linear", None, 1.0),
        ("identity", None, 1.0),
        ("conv2d", None, 1.0),
        ("conv_transpose3d", None, 1.0),
        ("sigmoid", None, 1.0),
        ("tanh", None, 5 / 3),
        ("relu", None, math.sqrt(2)),
        ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
        ("leaky_relu", 0.2, math.sqrt(2 / (1 + 0.2**2))),
        ("leaky_relu", 0, math.sqrt(2)),
        ("selu", None, 0.75),
    ],
)
def test_calculate_gain(nonlinearity, param, expected):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(expected, rel=1e-15)


def test_unknown_nonlinearity_suggests_the_close_one():
    with pytest.raises(UsageError, match="unknown nonlinearity 'rleu'; did you mean 'relu'"):
        init.calculate_gain("rleu")
    with pytest.raises(UsageError, match="nonlinearity 'softmax'; valid: .*tanh"):
        init.kaiming_normal(3, 3, "softmax")


def test_leaky_relu_slope_must_be_a_number():
    with pytest.raises(UsageError, match="leaky_relu"):
        init.calculate_gain("leaky_relu", True)
    with pytest.raises(UsageError, match="leaky_relu"):
        init.calculate_gain("leaky_relu", "0.1")


def test_unknown_mode():
    with pytest.raises(UsageError, match="unknown mode 'fan_inn'; did you mean 'fan_in'"):
        init.kaiming_uniform(3, 3, mode="fan_inn")


def test_registry():
    assert set(init.INITIALIZERS) == {
        "xavier_uniform",
        "xavier_normal",
        "kaiming_uniform",
        "kaiming_normal",
    }
    for name, fn in init.INITIALIZERS.items():
        assert init.get_initializer(name) is fn is getattr(init, name)
    with pytest.raises(UsageError, match="did you mean 'kaiming_uniform'"):
        init.get_initializer("kaiming_unifrom")
    with pytest.raises(UsageError, match="valid: kaiming_normal, kaiming_uniform"):
        init.get_initializer("orthogonal")


# -- the scale helpers: the formulas, and the initializers drawing through them -----------------


@settings(max_examples=60, deadline=None)
@given(
    fan_in=st.integers(1, 5000),
    fan_out=st.integers(1, 5000),
    gain=st.floats(0.01, 10),
    mode=st.sampled_from(init.FAN_MODES),
)
def test_scale_helpers_are_the_papers_formulas(fan_in, fan_out, gain, mode):
    fan = fan_in if mode == "fan_in" else fan_out
    assert init.fan(fan_in, fan_out, mode) == fan
    # Glorot: Var = 2·gain²/(fan_in + fan_out); He: Var = gain²/fan; U(−a, a) has Var a²/3.
    xavier_var, kaiming_var = 2 * gain**2 / (fan_in + fan_out), gain**2 / fan
    assert init.xavier_uniform_bound(fan_in, fan_out, gain) ** 2 / 3 == pytest.approx(xavier_var)
    assert init.xavier_normal_std(fan_in, fan_out, gain) ** 2 == pytest.approx(xavier_var)
    assert init.kaiming_uniform_bound(fan, gain) ** 2 / 3 == pytest.approx(kaiming_var)
    assert init.kaiming_normal_std(fan, gain) ** 2 == pytest.approx(kaiming_var)


@pytest.mark.parametrize(
    "name, kwargs, scale",
    [
        ("xavier_uniform", {"gain": 0.7}, lambda: init.xavier_uniform_bound(7, 3, 0.7)),
        ("xavier_normal", {"gain": 3.0}, lambda: init.xavier_normal_std(7, 3, 3.0)),
        (
            "kaiming_uniform",
            {"nonlinearity": "leaky_relu", "param": 0.3, "mode": "fan_out"},
            lambda: init.kaiming_uniform_bound(3, init.calculate_gain("leaky_relu", 0.3)),
        ),
        (
            "kaiming_normal",
            {"nonlinearity": "tanh"},
            lambda: init.kaiming_normal_std(7, init.calculate_gain("tanh")),
        ),
    ],
)
def test_initializers_draw_at_their_scale_helper_bit_for_bit(name, kwargs, scale):
    value = scale()
    if name.endswith("uniform"):
        reference = lambda: _uniform((7, 3), value)  # noqa: E731
    else:
        reference = lambda: np.random.randn(7, 3) * value  # noqa: E731
    made, expected = _same_draws(
        lambda: init.get_initializer(name)(7, 3, **kwargs),
        lambda: reference().astype(np.float32),
    )
    np.testing.assert_array_equal(made.numpy(), expected)


def test_leaky_relu_slope_defaults_and_refuses_what_is_not_a_number():
    assert init.leaky_relu_slope() == init.LEAKY_RELU_SLOPE == 0.01
    assert init.leaky_relu_slope(0) == 0.0 and init.leaky_relu_slope(0.25) == 0.25
    for bad in (True, "0.1", [0.1]):
        with pytest.raises(UsageError, match=r"leaky_relu: negative slope .* is not a number"):
            init.leaky_relu_slope(bad)


# -- shape: the one draw's shape, the bound from the fans --------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(1, 4),
    channels=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    name=st.sampled_from(sorted(init.INITIALIZERS)),
)
def test_shape_is_the_draw_and_the_fans_the_scale(k, channels, name):
    """A conv kernel (k, k, in, out) drawn with fans in·k², out·k²: the same numbers as one
    hand-made draw of that shape, scaled by the theoretical bound (or std) of those fans."""
    c_in, c_out = channels
    fan_in, fan_out, shape = c_in * k * k, c_out * k * k, (k, k, c_in, c_out)
    scale = {
        "kaiming_uniform": SQRT2 * math.sqrt(3 / fan_in),
        "xavier_uniform": math.sqrt(6 / (fan_in + fan_out)),
        "kaiming_normal": SQRT2 / math.sqrt(fan_in),
        "xavier_normal": math.sqrt(2 / (fan_in + fan_out)),
    }[name]

    def reference():
        if name.endswith("uniform"):
            return _uniform(shape, scale).astype(np.float32)
        return (np.random.randn(*shape) * scale).astype(np.float32)

    made, expected = _same_draws(
        lambda: init.get_initializer(name)(fan_in, fan_out, shape=shape), reference
    )
    assert made.shape == shape and made.dtype == np.float32
    np.testing.assert_array_equal(made.numpy(), expected)


def test_kaiming_uniform_takes_shape_third():
    # The course's hw4 signature: kaiming_uniform(fan_in, fan_out, shape=None, nonlinearity=...).
    made, expected = _same_draws(
        lambda: init.kaiming_uniform(12, 6, (2, 3, 2)),
        lambda: init.kaiming_uniform(12, 6, shape=(2, 3, 2)),
    )
    np.testing.assert_array_equal(made.numpy(), expected.numpy())
    tanh, expected = _same_draws(
        lambda: init.kaiming_uniform(12, 6, None, "tanh"),
        lambda: _uniform((12, 6), 5 / 3 * math.sqrt(3 / 12)).astype(np.float32),
    )
    np.testing.assert_array_equal(tanh.numpy(), expected)


def test_a_nonlinearity_where_shape_goes_names_the_keyword():
    with pytest.raises(UsageError, match=r"shape 'tanh' is not a shape.*nonlinearity='tanh'"):
        init.kaiming_uniform(9, 5, "tanh")
    with pytest.raises(UsageError, match=r"shape \(3, -1\) must be a tuple of non-negative"):
        init.xavier_normal(3, 3, shape=(3, -1))
