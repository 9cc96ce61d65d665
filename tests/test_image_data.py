"""Image data in training: samples keep their shape, cifar10 from CIFAR-format batches this
test writes, a model written for flat features on images, the sample shape in checkpoints,
and `data.augment`: its batches against the transforms' definitions, validation never
augmented, and resume exact with augmentation on."""

from __future__ import annotations

import json
import pickle
import signal

import numpy as np
import pytest
from checkpoints import assert_same_state
from hypothesis import given, settings
from hypothesis import strategies as st

from needle.data import RandomCrop, RandomFlipHorizontal
from needle.data.transforms import channels_first
from needle.errors import ConfigError, UsageError
from needle.train.checkpoint import load_checkpoint
from needle.train.config import parse_config
from needle.train.datasets import load_data
from needle.train.evaluate import evaluate
from needle.train.reports import Callbacks
from needle.train.rundir import CHECKPOINT_FILE
from needle.train.runner import resume, train
from needle.train.session import model_input, prepare
from needle.train.signals import StopFlag

# -- data ------------------------------------------------------------------------------------

CLASSES = 3


def image_npz(path, shape=(1, 6, 6), n=48, seed=0):
    """Images whose class is which third of the picture is brightest, so a model can learn."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n, *shape)).astype(np.float32)
    y = np.arange(n) % CLASSES
    width = shape[-1] // CLASSES
    for i, label in enumerate(y):
        X[i, ..., label * width : (label + 1) * width] += 1.0
    np.savez(path, X=X, y=y)
    return X, y


def run_config(path, *lines, epochs=4, layers="[flatten, {linear: 8}, relu, {linear: 3}]"):
    extra = "".join(f"\n  {line}" for line in lines)
    return parse_config(
        f"seed: 1\ndata:\n  dataset: npz\n  path: '{path}'{extra}\n"
        f"model: {{layers: {layers}}}\n"
        f"train: {{epochs: {epochs}, batch_size: 8, optimizer: {{name: adam, lr: 0.01}}}}\n",
        "img.yaml",
    )


def write_cifar(folder, sizes=(3, 1, 2, 2, 1), test=4, seed=0):
    """A cifar-10-batches-py folder of random batches; returns their raw bytes and labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    raw = {}
    names = [f"data_batch_{i + 1}" for i in range(5)] + ["test_batch"]
    for name, n in zip(names, (*sizes, test), strict=True):
        images = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"labels": labels, b"data": images}, f)
        raw[name] = (images, labels)
    return raw


def cifar_config(path, *lines):
    extra = "".join(f"\n  {line}" for line in lines)
    return parse_config(
        f"data:\n  dataset: cifar10\n  path: '{path}'{extra}\n"
        "model: {layers: [{linear: 10}]}\ntrain: {epochs: 1, batch_size: 4}\n",
        "c.yaml",
    )


def test_cifar10_reads_the_batches_with_its_test_batch_validating(tmp_path):
    raw = write_cifar(tmp_path / "cifar-10-batches-py")
    data = load_data(cifar_config(tmp_path / "cifar-10-batches-py"))
    assert data.sample_shape == (3, 32, 32) and data.num_classes <= 10
    train_bytes = np.concatenate([raw[f"data_batch_{i}"][0] for i in range(1, 6)])
    expected = train_bytes.reshape(-1, 3, 32, 32).astype(np.float32) / 255
    np.testing.assert_array_equal(data.train.X, expected)
    test_images, test_labels = raw["test_batch"]
    np.testing.assert_array_equal(
        data.val.X.reshape(len(test_labels), -1), test_images.astype(np.float32) / 255
    )
    np.testing.assert_array_equal(data.val.y, test_labels)


def test_cifar10_errors_point_at_the_path(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_data(cifar_config(tmp_path / "nowhere"))
    assert caught.value.key == "data.path" and caught.value.line == 3
    assert "needle data download cifar10 --to" in caught.value.message
    write_cifar(tmp_path / "c")
    (tmp_path / "c" / "data_batch_3").unlink()
    with pytest.raises(ConfigError, match="data_batch_3' not found; the folder should hold"):
        load_data(cifar_config(tmp_path / "c"))
    with pytest.raises(ConfigError) as caught:
        cifar_config(tmp_path / "c", "val_fraction: 0.1")
    assert caught.value.key == "data.val_fraction"
    assert "the test batch" in caught.value.message


def test_an_mlp_on_images_trains_exactly_as_on_the_same_data_flat(tmp_path):
    X, y = image_npz(tmp_path / "img.npz")
    np.savez(tmp_path / "flat.npz", X=X.reshape(len(X), -1), y=y)
    mlp = "[{linear: 8}, relu, {dropout: 0.1}, {linear: 3}]"
    images = train(run_config(tmp_path / "img.npz", epochs=2, layers=mlp), out=tmp_path)
    flat = train(run_config(tmp_path / "flat.npz", epochs=2, layers=mlp), out=tmp_path)
    assert images.history[-1].train_loss == flat.history[-1].train_loss
    a, b = (load_checkpoint(r.run_dir / CHECKPOINT_FILE) for r in (images, flat))
    for name in a.model:
        np.testing.assert_array_equal(a.model[name], b.model[name])
    assert (a.sample_shape, b.sample_shape) == ((1, 6, 6), (36,))


def test_the_model_gets_the_data_shape_when_it_fits_and_flat_features_otherwise(tmp_path):
    image_npz(tmp_path / "img.npz")
    shaped = run_config(tmp_path / "img.npz")  # starts with a flatten
    assert model_input(shaped, (1, 6, 6), 3) == (1, 6, 6)
    mlp = run_config(tmp_path / "img.npz", layers="[relu, {linear: 3}]")
    assert model_input(mlp, (1, 6, 6), 3) == (36,)
    # neither fits: the error of the plan that got further
    wrong_classes = run_config(tmp_path / "img.npz", layers="[{linear: 8}, relu, {linear: 4}]")
    with pytest.raises(ConfigError) as caught:
        model_input(wrong_classes, (1, 6, 6), 3)
    assert caught.value.key == "model.layers[2].linear.out_features"
    bad_norm = run_config(tmp_path / "img.npz", layers="[{layernorm1d: {dim: 5}}, {linear: 3}]")
    with pytest.raises(ConfigError) as caught:
        model_input(bad_norm, (1, 6, 6), 3)
    assert caught.value.key.startswith("model.layers[0]") and "(batch, 1, 6, 6)" in str(
        caught.value
    )


def test_checkpoints_store_the_sample_shape_and_old_ones_read_as_flat(tmp_path):
    image_npz(tmp_path / "img.npz")
    result = train(run_config(tmp_path / "img.npz", epochs=1), out=tmp_path)
    path = result.run_dir / CHECKPOINT_FILE
    assert load_checkpoint(path).sample_shape == (1, 6, 6)

    def rewrite(change):
        with np.load(path) as arrays:
            entries = dict(arrays)
        meta = json.loads(str(entries["meta"]))
        change(meta)
        entries["meta"] = np.array(json.dumps(meta))
        out = tmp_path / "edited.npz"
        np.savez(out, **entries)
        return out

    old = rewrite(lambda meta: meta.pop("sample_shape"))
    assert load_checkpoint(old).sample_shape == (36,)
    bad = rewrite(lambda meta: meta.update(sample_shape=[2, 6, 6]))
    with pytest.raises(UsageError, match="sample_shape must be sizes .* in_features=36"):
        load_checkpoint(bad)


def test_evaluate_measures_image_data_and_refuses_other_shapes(tmp_path):
    X, y = image_npz(tmp_path / "img.npz")
    result = train(run_config(tmp_path / "img.npz", epochs=2), out=tmp_path)
    own = evaluate(result.run_dir)
    assert own.loss == result.history[-1].val_loss and own.samples == 10
    other = evaluate(result.run_dir, data=tmp_path / "img.npz")
    assert other.samples == len(y)
    np.savez(tmp_path / "wide.npz", X=np.zeros((4, 1, 6, 7)), y=np.zeros(4))
    with pytest.raises(UsageError, match=r"samples of shape \(1, 6, 7\) but the model takes"):
        evaluate(result.run_dir, data=tmp_path / "wide.npz")


# -- augmentation ----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 5),
    height=st.integers(1, 6),
    width=st.integers(1, 6),
    channels=st.integers(1, 3),
    padding=st.integers(0, 3),
    seed=st.integers(0, 2**31),
)
def test_a_batch_draws_what_one_image_at_a_time_draws(
    batch, height, width, channels, padding, seed
):
    images = np.random.default_rng(seed).normal(size=(batch, height, width, channels))
    for transform in (RandomFlipHorizontal(0.5), RandomCrop(padding)):
        np.random.seed(seed % 2**32)
        together = transform.batch(images)
        np.random.seed(seed % 2**32)
        alone = np.stack([transform(image) for image in images])
        np.testing.assert_array_equal(together, alone)


def test_channels_first_is_the_transforms_on_each_image_as_h_w_c():
    images = np.random.default_rng(0).normal(size=(4, 3, 5, 7))
    transforms = [RandomFlipHorizontal(0.5), RandomCrop(2)]
    np.random.seed(9)
    out = channels_first(images, transforms)
    np.random.seed(9)
    hwc = images.transpose(0, 2, 3, 1)
    flips = np.random.rand(4) < 0.5
    shifts = np.random.randint(-2, 3, size=(4, 2))
    for i in range(4):
        image = hwc[i, :, ::-1] if flips[i] else hwc[i]
        padded = np.pad(image, ((2, 2), (2, 2), (0, 0)))
        top, left = 2 + shifts[i]
        expected = padded[top : top + 5, left : left + 7].transpose(2, 0, 1)
        np.testing.assert_array_equal(out[i], expected)


def test_augment_changes_training_batches_only(tmp_path):
    image_npz(tmp_path / "img.npz")
    plain = prepare(run_config(tmp_path / "img.npz"))
    augmented = prepare(run_config(tmp_path / "img.npz", "augment: {flip: true, crop: 2}"))
    np.random.seed(5)
    plain_batches = [x.numpy() for x, _ in plain.train_loader]
    np.random.seed(5)
    augmented_batches = [x.numpy() for x, _ in augmented.train_loader]
    assert all(a.shape == p.shape for a, p in zip(augmented_batches, plain_batches, strict=True))
    assert any(
        not np.array_equal(a, p) for a, p in zip(augmented_batches, plain_batches, strict=True)
    )
    for session in (plain, augmented):
        np.random.seed(5)
        val = np.concatenate([x.numpy() for x, _ in session.val_loader])
        np.testing.assert_array_equal(val, session.data.val.X)


def test_evaluate_never_augments(tmp_path):
    image_npz(tmp_path / "img.npz")
    config = run_config(tmp_path / "img.npz", "augment: {flip: true, crop: 2}", epochs=1)
    result = train(config, out=tmp_path)
    assert evaluate(result.run_dir).loss == result.history[-1].val_loss
    np.random.seed(0)
    first = evaluate(result.run_dir, data=tmp_path / "img.npz").loss
    np.random.seed(1)
    assert evaluate(result.run_dir, data=tmp_path / "img.npz").loss == first


@pytest.mark.parametrize("stop_at", [None, (2, 3)])
def test_resume_with_augmentation_equals_straight(tmp_path, stop_at):
    image_npz(tmp_path / "img.npz")
    lines = ("augment: {flip: true, crop: 2}",)
    layers = "[flatten, {linear: 8}, relu, {dropout: 0.2}, {linear: 3}]"
    straight = train(run_config(tmp_path / "img.npz", *lines, layers=layers), out=tmp_path)
    if stop_at is None:
        half = train(
            run_config(tmp_path / "img.npz", *lines, epochs=2, layers=layers), out=tmp_path
        )
        resumed = resume(half.run_dir, ["train.epochs=4"])
    else:
        flag = StopFlag()

        def on_step(progress):
            if (progress.epoch, progress.step) == stop_at:
                flag.request(signal.SIGTERM)

        config = run_config(tmp_path / "img.npz", *lines, layers=layers)
        stopped = train(config, out=tmp_path, callbacks=Callbacks(on_step=on_step), stop=flag)
        assert stopped.status == "interrupted"
        resumed = resume(stopped.run_dir)
    a, b = (load_checkpoint(r.run_dir / CHECKPOINT_FILE) for r in (straight, resumed))
    assert_same_state(a, b)
    unaugmented = train(run_config(tmp_path / "img.npz", layers=layers), out=tmp_path)
    assert unaugmented.history[-1].train_loss != straight.history[-1].train_loss


def test_augment_is_refused_on_flat_data_at_its_key(tmp_path):
    with pytest.raises(ConfigError) as caught:
        text = "data:\n  dataset: spirals\n  augment: {flip: true}\nmodel: {layers: [relu]}\n"
        parse_config(text, "s.yaml")
    assert (caught.value.key, caught.value.line) == ("data.augment", 3)
    assert "augmentation needs images" in caught.value.message
    np.savez(tmp_path / "flat.npz", X=np.zeros((10, 4)), y=np.arange(10) % 2)
    config = run_config(tmp_path / "flat.npz", "augment: {crop: 1}", layers="[{linear: 2}]")
    with pytest.raises(ConfigError) as caught:
        prepare(config)
    assert (caught.value.key, caught.value.line) == ("data.augment", 5)
    assert "holds samples of shape (4,)" in caught.value.message
    with pytest.raises(ConfigError) as caught:
        run_config(tmp_path / "flat.npz", "augment: {crop: -1}")
    assert caught.value.key == "data.augment.crop"
    with pytest.raises(ConfigError) as caught:
        run_config(tmp_path / "flat.npz", "augment: {flop: true}")
    assert "did you mean 'flip'" in caught.value.message
