"""Datasets: generators are deterministic and well-formed; files are read or refused with a
message naming the file, the line and the problem."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from needle.data import write_idx
from needle.errors import UsageError
from needle.train.config import parse_config
from needle.train.datasets import DATASET_TYPES, GENERATOR, IDX_FILES, load_data, load_path, names
from needle.train.normalize import Normalization

MODEL = "model: {layers: [relu]}\n"


def config_for(data: str, seed: int = 0):
    return parse_config(f"seed: {seed}\ndata: {data}\n{MODEL}", "c.yaml")


# Generators whose labels come from where uniform points fall, so classes are not balanced.
LABELS_FROM_POSITION = {"xor"}


# The point generators; `counting`, a generated token stream, is tested in test_text_data.py.
POINTS = [name for name in names(GENERATOR) if not DATASET_TYPES[name].text]


@pytest.mark.parametrize("name", POINTS)
def test_generators_are_deterministic_balanced_and_split(name):
    a = load_data(config_for(f"{{dataset: {name}, samples: 200}}"))
    b = load_data(config_for(f"{{dataset: {name}, samples: 200}}"))
    c = load_data(config_for(f"{{dataset: {name}, samples: 200}}", seed=1))
    np.testing.assert_array_equal(a.train.X, b.train.X)
    np.testing.assert_array_equal(a.val.y, b.val.y)
    assert not np.array_equal(a.train.X, c.train.X)
    assert (len(a.train), len(a.val)) == (160, 40)
    assert a.train.X.dtype == np.float32 and a.train.y.dtype == np.int64
    assert a.in_features == 2 and a.train.X.shape == (160, 2)
    labels = np.concatenate([a.train.y, a.val.y])
    counts = np.bincount(labels)
    assert len(counts) == a.num_classes
    if name not in LABELS_FROM_POSITION:
        assert counts.max() - counts.min() <= 1


def test_generators_leave_the_global_rng_alone():
    np.random.seed(5)
    expected = np.random.rand(3)
    np.random.seed(5)
    load_data(config_for("{dataset: spirals, samples: 50}"))
    np.testing.assert_array_equal(np.random.rand(3), expected)


def test_spirals_take_any_number_of_classes():
    data = load_data(config_for("{dataset: spirals, samples: 100, classes: 5}"))
    assert data.num_classes == 5


# -- npz -------------------------------------------------------------------------------------


def npz_config(path):
    return config_for(f"{{dataset: npz, path: '{path}', val_fraction: 0.25}}")


def test_npz_is_read_and_split(tmp_path):
    path = tmp_path / "d.npz"
    X = np.arange(40, dtype=np.float64).reshape(20, 2)
    y = np.arange(20) % 4
    np.savez(path, X=X, y=y)
    data = load_data(npz_config(path))
    assert (len(data.train), len(data.val), data.num_classes, data.in_features) == (15, 5, 4, 2)
    rows = np.concatenate([data.train.X, data.val.X])
    np.testing.assert_array_equal(np.sort(rows[:, 0]), X[:, 0])  # a permutation of the rows


def uint8_images(path, n=40, features=6, seed=0):
    """An npz of `n` samples whose features are raw 0..255 pixels; feature 0 is constant."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (n, features), dtype=np.uint8)
    X[:, 0] = 7
    np.savez(path, X=X, y=np.arange(n) % 2)
    return path


@pytest.mark.parametrize("kind", ["minmax", "standard"])
def test_normalize_uses_statistics_of_the_training_split_only(tmp_path, kind):
    path = uint8_images(tmp_path / "d.npz")
    raw = load_data(config_for(f"{{dataset: npz, path: '{path}'}}"))
    data = load_data(config_for(f"{{dataset: npz, path: '{path}', normalize: {kind}}}"))
    X = raw.train.X.astype(np.float64)  # the same rows: the split does not depend on scaling
    if kind == "minmax":
        shift, scale = X.min(axis=0), X.max(axis=0) - X.min(axis=0)
    else:
        shift, scale = X.mean(axis=0), X.std(axis=0)
    scale[0] = 1.0  # the constant feature: its spread is 0
    for split, normalized in ((raw.train, data.train), (raw.val, data.val)):
        expected = (split.X.astype(np.float64) - shift) / scale
        np.testing.assert_allclose(normalized.X, expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(normalized.y, split.y)
        assert normalized.X.dtype == np.float32
    np.testing.assert_array_equal(data.train.X[:, 0], 0.0)
    assert data.normalization.kind == kind
    np.testing.assert_array_equal(data.normalization.shift, shift)


@settings(max_examples=50, deadline=None)
@given(
    X=hnp.arrays(
        np.float32,
        st.tuples(st.integers(2, 12), st.integers(1, 4)),
        elements=st.floats(-1e4, 1e4, width=32),
    )
)
def test_normalized_training_features_are_in_unit_range_or_standard(X):
    """On the split it was fitted to: minmax spans [0, 1] exactly per varying feature, standard
    has mean 0 and standard deviation 1; a constant feature becomes 0 either way."""
    varying = X.max(axis=0) > X.min(axis=0)
    scaled = Normalization.fit("minmax", X).apply(X).astype(np.float64)
    assert np.isfinite(scaled).all()
    np.testing.assert_allclose(scaled.min(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(scaled.max(axis=0)[varying], 1.0, rtol=1e-5)
    np.testing.assert_array_equal(scaled[:, ~varying], 0.0)
    standard = Normalization.fit("standard", X).apply(X).astype(np.float64)
    np.testing.assert_allclose(standard.mean(axis=0), 0.0, atol=1e-4)
    spread = X.astype(np.float64).std(axis=0) > 1e-3 * np.abs(X).max(axis=0, initial=1.0)
    np.testing.assert_allclose(standard.std(axis=0)[spread], 1.0, rtol=1e-4)


def test_normalize_none_leaves_every_bit_of_the_features(tmp_path):
    path = uint8_images(tmp_path / "d.npz")
    data = load_data(config_for(f"{{dataset: npz, path: '{path}', normalize: none}}"))
    assert data.normalization is None
    whole = np.load(path)["X"].astype(np.float32)
    rows = np.concatenate([data.train.X, data.val.X])
    np.testing.assert_array_equal(np.sort(rows, axis=0), np.sort(whole, axis=0))


NPZ_CASES = {
    "missing y": (dict(X=np.zeros((3, 2))), "has no array 'y' (it holds: X)"),
    "length mismatch": (
        dict(X=np.zeros((3, 2)), y=np.zeros(2)),
        "X has 3 samples but y has 2 labels",
    ),
    "nan feature": (
        dict(X=np.array([[0.0, 1.0], [np.nan, 2.0], [np.inf, 0.0]]), y=np.zeros(3)),
        "X has 2 values that are NaN or infinite, the first at sample 1, feature 0 (got nan)",
    ),
    "fractional label": (
        dict(X=np.zeros((2, 2)), y=np.array([0.0, 1.5])),
        "y[1]: a label must be a class number 0, 1, 2, ... (got 1.5)",
    ),
    "negative label": (
        dict(X=np.zeros((2, 2)), y=np.array([0, -1])),
        "y[1]: a label must be a class number 0, 1, 2, ... (got -1)",
    ),
    "label past int64": (  # was cast to a negative class, with a numpy warning
        dict(X=np.zeros((2, 2)), y=np.array([0, 1e30])),
        "y[1]: a label must be a class number 0, 1, 2, ... (got 1e+30)",
    ),
    "1-d features": (dict(X=np.zeros(3), y=np.zeros(3)), "X must be (samples, features)"),
}


@pytest.mark.parametrize("arrays, problem", NPZ_CASES.values(), ids=NPZ_CASES)
def test_npz_problems_name_file_and_problem(tmp_path, arrays, problem):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(UsageError) as caught:
        load_data(npz_config(path))
    assert str(caught.value).startswith(f"'{path}'")
    assert problem in str(caught.value)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2))
    with pytest.raises(UsageError) as caught:
        load_data(npz_config(path))
    assert str(caught.value) == (
        f"'{path}' holds pickled objects (array 'X'), which needle never loads"
    )


def test_npz_that_is_not_a_zip(tmp_path):
    path = tmp_path / "d.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UsageError, match=r"is truncated or damaged \(File is not a zip file\)"):
        load_data(npz_config(path))


def test_missing_file_points_at_the_config(tmp_path):
    path = tmp_path / "none.npz"
    text = f"data:\n  dataset: npz\n  path: '{path}'\n{MODEL}"
    with pytest.raises(UsageError) as caught:
        load_data(parse_config(text, "c.yaml"))
    assert str(caught.value) == f"c.yaml:3:9: data.path: file '{path}' not found"


# -- csv -------------------------------------------------------------------------------------


def csv_config(path, label="label"):
    return config_for(f"{{dataset: csv, path: '{path}', label_column: {label}}}")


def test_csv_is_read(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,label,b\n1,0,2\n3,1,4\n\n5,2,6\n7,1,8\n")
    data = load_data(csv_config(path))
    assert (data.in_features, data.num_classes, len(data.train) + len(data.val)) == (2, 3, 4)
    rows = {tuple(r) for r in np.concatenate([data.train.X, data.val.X]).tolist()}
    assert rows == {(1.0, 2.0), (3.0, 4.0), (5.0, 6.0), (7.0, 8.0)}


CSV_CASES = {
    "ragged row": ("a,label\n1,0\n2,1,3\n", "{path}:3: the row has 3 cells but the header has 2"),
    "non-numeric cell": ("a,label\n1,0\nx7,1\n", "{path}:3: column 'a': 'x7' is not a number"),
    "nan feature": ("a,label\n1,0\nnan,1\n", "{path}:3: column 'a': nan is not a finite number"),
    "inf feature": ("a,label\ninf,0\n", "{path}:2: column 'a': inf is not a finite number"),
    "empty": ("", "'{path}' is empty; expected a header row, then one row per sample"),
    "no rows": ("a,label\n", "'{path}' has a header but no rows"),
    "fractional label": (
        "a,label\n1,0\n2,0.5\n",
        "{path}: row 2, 'label': a label must be a class number 0, 1, 2, ... (got 0.5)",
    ),
}


@pytest.mark.parametrize("text, message", CSV_CASES.values(), ids=CSV_CASES)
def test_csv_problems_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        load_data(csv_config(path))
    assert str(caught.value) == message.format(path=path)


def test_a_single_sample_cannot_be_split_and_the_file_is_named(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("a,label\n1,0\n")
    text = f"data:\n  dataset: csv\n  path: '{path}'\n{MODEL}"
    with pytest.raises(UsageError) as caught:
        load_data(parse_config(text, "c.yaml"))
    assert str(caught.value) == (
        f"c.yaml:3:9: data.path: '{path}' holds 1 sample; at least 2 are needed to hold some "
        "out for validation"
    )


def test_csv_without_the_label_column_points_at_label_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,0\n")
    text = f"data:\n  dataset: csv\n  path: '{path}'\n  label_column: target\n{MODEL}"
    with pytest.raises(UsageError) as caught:
        load_data(parse_config(text, "c.yaml"))
    assert str(caught.value) == (
        f"c.yaml:4:17: data.label_column: '{path}' has no column 'target' (columns: a, b); "
        "set data.label_column"
    )


def test_a_folder_where_a_file_belongs_points_at_the_config(tmp_path):
    text = f"data:\n  dataset: npz\n  path: '{tmp_path}'\n{MODEL}"
    with pytest.raises(UsageError) as caught:
        load_data(parse_config(text, "c.yaml"))
    assert str(caught.value) == (
        f"c.yaml:3:9: data.path: '{tmp_path}' is a folder; dataset 'npz' reads one .npz file"
    )


def test_load_path_without_a_config_names_only_the_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,0\n")
    with pytest.raises(UsageError) as caught:
        load_path(path, label_column="target")
    assert str(caught.value) == (
        f"'{path}' has no column 'target' (columns: a, b); give the label column's header "
        "with --label-column"
    )


# -- MNIST-format folders --------------------------------------------------------------------


def make_mnist(folder, n_train=12, n_val=5, gzip=True, rng=None):
    rng = rng or np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "val_images": rng.integers(0, 256, (n_val, 28, 28), dtype=np.uint8),
        "val_labels": (np.arange(n_val) % 10).astype(np.uint8),
    }
    for role, array in arrays.items():
        write_idx(folder / (IDX_FILES[role] + (".gz" if gzip else "")), array, gzip=gzip)
    return arrays


@pytest.mark.parametrize("gzip", [True, False])
def test_mnist_folder_t10k_is_the_validation_split(tmp_path, gzip):
    arrays = make_mnist(tmp_path / "m", gzip=gzip)
    data = load_data(config_for(f"{{dataset: mnist, path: '{tmp_path / 'm'}'}}"))
    assert (len(data.train), len(data.val), data.in_features) == (12, 5, 784)
    assert data.sample_shape == (1, 28, 28)  # images keep their shape: one grey channel
    np.testing.assert_array_equal(data.val.y, arrays["val_labels"])
    np.testing.assert_allclose(data.val.X[0, 0], arrays["val_images"][0] / 255.0)
    assert data.train.X.dtype == np.float32


def test_mnist_missing_file_says_how_to_get_it(tmp_path):
    make_mnist(tmp_path / "m")
    (tmp_path / "m" / "t10k-labels-idx1-ubyte.gz").unlink()
    text = f"data:\n  dataset: fashion_mnist\n  path: '{tmp_path / 'm'}'\n{MODEL}"
    with pytest.raises(UsageError) as caught:
        load_data(parse_config(text, "c.yaml"))
    folder = tmp_path / "m"
    assert str(caught.value) == (
        f"c.yaml:3:9: data.path: file '{folder}/t10k-labels-idx1-ubyte[.gz]' not found; get "
        f"the files with: needle data download fashion_mnist --to {folder}"
    )


def test_mnist_missing_folder_says_how_to_get_it(tmp_path):
    folder = tmp_path / "nowhere"
    text = f"data:\n  dataset: mnist\n  path: '{folder}'\n{MODEL}"
    with pytest.raises(UsageError) as caught:
        load_data(parse_config(text, "c.yaml"))
    assert str(caught.value) == (
        f"c.yaml:3:9: data.path: folder '{folder}' not found; get the files with: needle data "
        f"download mnist --to {folder}"
    )


def test_mnist_label_count_mismatch_and_truncation(tmp_path):
    arrays = make_mnist(tmp_path / "m")
    write_idx(tmp_path / "m" / "train-labels-idx1-ubyte.gz", arrays["train_labels"][:-1], gzip=True)
    with pytest.raises(UsageError, match="has 11 labels but .* has 12 images"):
        load_data(config_for(f"{{dataset: mnist, path: '{tmp_path / 'm'}'}}"))
    raw = tmp_path / "r"
    make_mnist(raw, gzip=False)
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(UsageError, match="is truncated"):
        load_data(config_for(f"{{dataset: mnist, path: '{raw}'}}"))


def test_mnist_file_that_is_not_idx(tmp_path):
    make_mnist(tmp_path / "m", gzip=False)
    (tmp_path / "m" / "t10k-images-idx3-ubyte").write_bytes(b"<html>not found</html>")
    with pytest.raises(UsageError, match="has magic number 0x3c68746d, which is not idx"):
        load_data(config_for(f"{{dataset: mnist, path: '{tmp_path / 'm'}'}}"))


def test_load_path_reads_any_kind(tmp_path):
    make_mnist(tmp_path / "m")
    assert len(load_path(tmp_path / "m")) == 5
    np.savez(tmp_path / "d.npz", X=np.zeros((4, 3)), y=np.zeros(4))
    assert load_path(tmp_path / "d.npz").X.shape == (4, 3)
    with pytest.raises(UsageError, match="cannot tell what"):
        (tmp_path / "d.txt").write_text("x")
        load_path(tmp_path / "d.txt")
    with pytest.raises(UsageError, match="not found"):
        load_path(tmp_path / "nope.npz")
