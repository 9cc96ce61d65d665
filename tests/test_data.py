"""needle.data: idx files (written here with write_idx, never downloaded), their validation,
MNISTDataset, the transforms against re-seeded draws, and the DataLoader's batching order."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import needle as ndl
from needle import data
from needle.errors import UsageError

# -- idx files ------------------------------------------------------------------------------

IDX_DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    array=st.sampled_from(IDX_DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5))
    ),
    compress=st.booleans(),
)
def test_idx_round_trip(tmp_path, array, compress):
    path = tmp_path / "array.idx"
    data.write_idx(path, array, gzip=compress)
    back = data.read_idx(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_idx_layout_is_big_endian_with_the_standard_header(tmp_path):
    path = tmp_path / "labels"
    data.write_idx(path, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16))
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0B, 2])
    assert raw[4:12] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    assert raw[12:] == b"".join(v.to_bytes(2, "big") for v in range(1, 7))


def test_gzip_is_detected_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    data.write_idx(tmp_path / "plain.gz", array)
    data.write_idx(tmp_path / "packed.idx", array, gzip=True)
    assert (tmp_path / "packed.idx").read_bytes()[:2] == b"\x1f\x8b"
    for name in ("plain.gz", "packed.idx"):
        np.testing.assert_array_equal(data.read_idx(tmp_path / name), array)


def test_write_idx_refuses_dtypes_idx_cannot_hold(tmp_path):
    with pytest.raises(UsageError, match="idx cannot store dtype int64"):
        data.write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


def _valid_bytes():
    header = bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    return header + bytes(range(6))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "has 0 bytes, too few for the 4-byte magic number"),
        (b"\x00\x00\x08", "has 3 bytes, too few for the 4-byte magic number"),
        (b"\x01\x00\x08\x01" + bytes(8), "magic number 0x01000801, which is not idx"),
        (
            b"\x00\x00\x07\x01" + bytes(8),
            r"magic number 0x00000701, which is not idx: the first two bytes must be 00, the "
            r"third a type code \(08, 09, 0b, 0c, 0d, 0e\), the fourth the number of "
            r"dimensions, as in 0x00000803 \(MNIST images\)",
        ),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated: its header declares 3 dimensions"),
        (_valid_bytes()[:-1], r"is truncated: .*shape \(2, 3\).*\(6 bytes of data\).* 5 bytes"),
        (_valid_bytes() + b"\x00", r"has trailing bytes: .* 7 bytes"),
        (b"\x1f\x8b\x08\x00garbage", "not valid gzip data"),
        (gzip.compress(_valid_bytes())[:-6], "not valid gzip data"),
    ],
    ids=[
        "empty",
        "short",
        "nonzero",
        "type",
        "header",
        "truncated",
        "trailing",
        "bad-gzip",
        "cut-gzip",
    ],
)
def test_malformed_idx_files_are_named_and_explained(tmp_path, content, message):
    path = tmp_path / "broken-file.idx"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message) as caught:
        data.read_idx(path)
    assert "broken-file.idx" in str(caught.value)


def test_gzipped_truncation_is_caught_after_decompression(tmp_path):
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(_valid_bytes()[:-2]))
    with pytest.raises(UsageError, match="short.gz' is truncated"):
        data.read_idx(path)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(UsageError, match="idx file '.*nowhere.idx' does not exist"):
        data.read_idx(tmp_path / "nowhere.idx")
    with pytest.raises(UsageError, match="cannot read idx file"):
        data.read_idx(tmp_path)  # a directory


# -- MNISTDataset ---------------------------------------------------------------------------


def _write_mnist(folder, n=9, rows=28, cols=28, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, rows, cols), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # both ends of the range
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    suffix = ".gz" if compress else ""
    image_path, label_path = folder / f"images{suffix}", folder / f"labels{suffix}"
    data.write_idx(image_path, images, gzip=compress)
    data.write_idx(label_path, labels, gzip=compress)
    return image_path, label_path, images, labels


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_dataset_scales_and_flattens(tmp_path, compress):
    image_path, label_path, images, labels = _write_mnist(tmp_path, compress=compress)
    ds = data.MNISTDataset(str(image_path), label_path)
    assert len(ds) == 9
    assert ds.images.dtype == np.float32 and ds.images.shape == (9, 784)
    assert ds.labels.dtype == np.uint8
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    np.testing.assert_allclose(ds.images, images.reshape(9, 784) / 255.0, rtol=1e-7)
    x, y = ds[4]
    assert x.shape == (784,) and y == labels[4]
    x, y = ds[2:5]
    assert x.shape == (3, 784)
    np.testing.assert_array_equal(y, labels[2:5])
    x, y = ds[np.array([8, 0, 8])]
    np.testing.assert_array_equal(x, ds.images[[8, 0, 8]])
    np.testing.assert_array_equal(y, labels[[8, 0, 8]])


def test_mnist_transforms_see_an_image_view_and_apply_lazily(tmp_path):
    image_path, label_path, images, _ = _write_mnist(tmp_path, rows=5, cols=4)
    seen = []

    def mirror(img):
        seen.append(img.shape)
        return img[:, ::-1]

    ds = data.MNISTDataset(image_path, label_path, transforms=[mirror])
    assert seen == []  # nothing happens at load time
    x, _ = ds[3]
    assert seen == [(5, 4, 1)]
    np.testing.assert_allclose(x, (images[3][:, ::-1] / 255.0).reshape(20), rtol=1e-7)
    x, _ = ds[[1, 2]]
    assert x.shape == (2, 20) and len(seen) == 3
    np.testing.assert_allclose(x[1], (images[2][:, ::-1] / 255.0).reshape(20), rtol=1e-7)


def test_mnist_validation(tmp_path):
    image_path, label_path, _, _ = _write_mnist(tmp_path)
    data.write_idx(tmp_path / "few-labels", np.zeros(4, dtype=np.uint8))
    with pytest.raises(UsageError, match="'.*few-labels' has 4 labels but '.*images.gz' has 9"):
        data.MNISTDataset(image_path, tmp_path / "few-labels")
    with pytest.raises(UsageError, match="images must be 3-d unsigned bytes"):
        data.MNISTDataset(label_path, label_path)
    data.write_idx(tmp_path / "float-labels", np.zeros(9, dtype=np.float32))
    with pytest.raises(UsageError, match="labels must be 1-d unsigned bytes"):
        data.MNISTDataset(image_path, tmp_path / "float-labels")
    with pytest.raises(UsageError, match="does not exist"):
        data.MNISTDataset(tmp_path / "missing", label_path)


# -- transforms -----------------------------------------------------------------------------


def _image(h=6, w=5, c=2):
    return np.arange(h * w * c, dtype=np.float32).reshape(h, w, c) + 1


@pytest.mark.parametrize("seed", range(6))
def test_random_flip_uses_one_rand_per_call(seed):
    img = _image()
    np.random.seed(seed)
    out = data.RandomFlipHorizontal(p=0.5)(img)
    after = np.random.rand()
    np.random.seed(seed)
    flip = np.random.rand() < 0.5
    assert np.random.rand() == after
    np.testing.assert_array_equal(out, img[:, ::-1] if flip else img)


def test_random_flip_extremes():
    img = _image()
    np.testing.assert_array_equal(data.RandomFlipHorizontal(p=1.0)(img), img[:, ::-1, :])
    np.testing.assert_array_equal(data.RandomFlipHorizontal(p=0.0)(img), img)


def _shifted(img, dh, dw):
    """Independent reference: output pixel (i, j) is input pixel (i + dh, j + dw), or 0."""
    out = np.zeros_like(img)
    h, w = img.shape[:2]
    for i in range(h):
        for j in range(w):
            if 0 <= i + dh < h and 0 <= j + dw < w:
                out[i, j] = img[i + dh, j + dw]
    return out


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("padding", [1, 3])
def test_random_crop_uses_one_randint_per_call(seed, padding):
    img = _image()
    np.random.seed(seed)
    out = data.RandomCrop(padding)(img)
    after = np.random.rand()
    np.random.seed(seed)
    dh, dw = np.random.randint(-padding, padding + 1, size=2)
    assert np.random.rand() == after
    assert out.shape == img.shape and out.dtype == img.dtype
    np.testing.assert_array_equal(out, _shifted(img, dh, dw))


def test_random_crop_reaches_every_shift():
    np.random.seed(0)
    img = _image(4, 4, 1)
    seen = {data.RandomCrop(1)(img).tobytes() for _ in range(200)}
    assert len(seen) == 9  # shifts in {-1, 0, 1}²


# -- DataLoader -----------------------------------------------------------------------------


def _arrays(n=10):
    X = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = (np.arange(n) % 4).astype(np.uint8)
    return X, y


def test_loader_yields_consecutive_batches_last_short():
    X, y = _arrays(10)
    loader = data.DataLoader(data.NDArrayDataset(X, y), batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and [b[0].shape[0] for b in batches] == [4, 4, 2]
    for k, (xb, yb) in enumerate(batches):
        assert isinstance(xb, ndl.Tensor) and not xb.requires_grad and xb.op is None
        assert xb.dtype == np.float32 and yb.dtype == np.uint8
        np.testing.assert_array_equal(xb.numpy(), X[4 * k : 4 * k + 4])
        np.testing.assert_array_equal(yb.numpy(), y[4 * k : 4 * k + 4])
    batches[0][0].numpy()[:] = -1  # batches own their arrays
    assert X.min() >= 0


def test_loader_default_batch_size_is_one():
    X, y = _arrays(3)
    batches = list(data.DataLoader(data.NDArrayDataset(X, y)))
    assert [b[0].shape for b in batches] == [(1, 3)] * 3


def test_shuffle_draws_one_permutation_when_iteration_starts():
    X, y = _arrays(11)
    loader = data.DataLoader(data.NDArrayDataset(X, y), batch_size=3, shuffle=True)
    np.random.seed(21)
    iterator = iter(loader)
    after_iter = np.random.rand()  # already drawn, before the first batch is asked for
    first = [tuple(t.numpy() for t in batch) for batch in iterator]
    second = [batch[1].numpy() for batch in loader]

    np.random.seed(21)
    order = np.random.permutation(11)
    assert np.random.rand() == after_iter
    for k, (xb, yb) in enumerate(first):
        np.testing.assert_array_equal(xb, X[order[3 * k : 3 * k + 3]])
        np.testing.assert_array_equal(yb, y[order[3 * k : 3 * k + 3]])
    order2 = np.random.permutation(11)  # the second pass draws a fresh permutation
    np.testing.assert_array_equal(np.concatenate(second), y[order2])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 30), batch_size=st.integers(1, 12), shuffle=st.booleans())
def test_batches_partition_the_dataset(n, batch_size, shuffle):
    X = np.arange(n, dtype=np.int32)
    batches = [b[0].numpy() for b in data.DataLoader(data.NDArrayDataset(X), batch_size, shuffle)]
    sizes = [len(b) for b in batches]
    assert len(batches) == -(-n // batch_size)
    assert all(s == batch_size for s in sizes[:-1]) and all(0 < s <= batch_size for s in sizes)
    joined = np.concatenate(batches) if batches else np.array([], dtype=np.int32)
    if shuffle:
        np.testing.assert_array_equal(np.sort(joined), X)
    else:
        np.testing.assert_array_equal(joined, X)


class _Squares(data.Dataset):
    """A user-defined dataset: one sample at a time, with transforms."""

    def __init__(self, n, transforms=None):
        super().__init__(transforms)
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.apply_transforms(np.full((2,), float(i))), i * i


def test_loader_stacks_samples_of_any_dataset():
    ds = _Squares(5, transforms=[lambda x: x * 10, lambda x: x + 1])
    xb, yb = next(iter(data.DataLoader(ds, batch_size=3)))
    np.testing.assert_array_equal(xb.numpy(), [[1, 1], [11, 11], [21, 21]])
    np.testing.assert_array_equal(yb.numpy(), [0, 1, 4])


def test_loader_with_single_field_samples():
    class Plain(data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return np.array([i, -i])

    (batch,) = next(iter(data.DataLoader(Plain(), batch_size=4)))
    np.testing.assert_array_equal(batch.numpy(), [[0, 0], [1, -1], [2, -2], [3, -3]])


def test_loader_applies_mnist_transforms_in_sample_order(tmp_path):
    image_path, label_path, _, _ = _write_mnist(tmp_path)
    flip = data.RandomFlipHorizontal()
    ds = data.MNISTDataset(image_path, label_path, transforms=[flip, data.RandomCrop(2)])
    np.random.seed(4)
    batches = [b[0].numpy() for b in data.DataLoader(ds, batch_size=4, shuffle=True)]
    np.random.seed(4)
    order = np.random.permutation(9)
    expected = np.stack([ds[int(i)][0] for i in order])
    np.testing.assert_array_equal(np.concatenate(batches), expected)


def test_loader_and_dataset_argument_errors():
    X, y = _arrays(4)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(UsageError, match="batch_size must be a positive integer"):
            data.DataLoader(data.NDArrayDataset(X), batch_size=bad)
    with pytest.raises(UsageError, match=r"differ in length: \[4, 3\]"):
        data.NDArrayDataset(X, y[:3])
    with pytest.raises(UsageError, match="at least one array"):
        data.NDArrayDataset()


def test_ndarray_dataset_indexing_and_apply_transforms_default():
    X, y = _arrays(5)
    ds = data.NDArrayDataset(X, y)
    assert len(ds) == 5
    x2, y2 = ds[2]
    np.testing.assert_array_equal(x2, X[2])
    assert y2 == y[2]
    assert ds.apply_transforms(x2) is x2
