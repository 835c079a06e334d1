"""The input pipeline: value range, shapes, flips, determinism, and the augment stage's outputs."""

import json

import numpy as np
import pytest
from PIL import Image

from doggan.crops.file import Crops, save_crops
from doggan.errors import DogganError
from doggan.params import AugmentParams
from doggan.training.policy import augment_stage, load_policy, make_dataset


def crops(n=20, size=16, channels=3):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    return Crops(
        images, np.arange(n, dtype=np.int32) % 2, np.array([f"id{i}" for i in range(n)]), np.array(["a", "b"])
    )


def test_batches_are_float_in_range_with_labels():
    c = crops()
    images, labels = next(iter(make_dataset(c.images, c.labels, AugmentParams(flip=False), 8)))
    assert images.shape == (8, 16, 16, 3) and images.dtype.name == "float32"
    assert labels.shape == (8,) and labels.dtype.name == "int32"
    assert images.numpy().min() >= -1.0 and images.numpy().max() <= 1.0
    source = {bytes(img.tobytes()) for img in c.images}
    back = np.rint((images.numpy() + 1.0) * 127.5).astype(np.uint8)
    assert all(img.tobytes() in source for img in back)


def test_flip_mirrors_images_and_a_seed_repeats_the_stream():
    image = np.tile(np.arange(16, dtype=np.uint8)[None, :, None] * 16, (16, 1, 3))[None].repeat(64, 0)
    policy = AugmentParams(flip=True, shuffle_buffer=1)
    first = next(iter(make_dataset(image, np.zeros(64, np.int32), policy, 64, seed=3)))[0].numpy()
    increasing = first[:, 0, 1, 0] > first[:, 0, 0, 0]
    assert 10 < increasing.sum() < 54
    again = next(iter(make_dataset(image, np.zeros(64, np.int32), policy, 64, seed=3)))[0].numpy()
    np.testing.assert_array_equal(first, again)


def test_colour_and_translate_jitter_keep_range_and_shape():
    c = crops(channels=3)
    policy = AugmentParams(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1, translate=0.2)
    images, _ = next(iter(make_dataset(c.images, c.labels, policy, 10)))
    assert images.shape == (10, 16, 16, 3)
    assert images.numpy().min() >= -1.0 and images.numpy().max() <= 1.0


JITTERS = {
    "flip": dict(flip=True),
    "brightness": dict(brightness=0.2),
    "contrast": dict(contrast=0.3),
    "saturation": dict(saturation=0.5),
    "hue": dict(hue=0.2),
    "translate": dict(translate=0.25),
}
ALL_OFF = AugmentParams(flip=False, shuffle_buffer=1)


@pytest.mark.parametrize("name", JITTERS)
def test_each_jitter_alone_changes_the_images(name):
    c = crops(n=16)
    policy = ALL_OFF.model_copy(update=JITTERS[name])
    plain = next(iter(make_dataset(c.images, c.labels, ALL_OFF, 16, seed=1)))[0].numpy()
    jittered = next(iter(make_dataset(c.images, c.labels, policy, 16, seed=1)))[0].numpy()
    changed = np.abs(jittered - plain).max(axis=(1, 2, 3)) > 0.01
    assert changed.mean() >= (0.25 if name == "flip" else 1.0)
    again = next(iter(make_dataset(c.images, c.labels, policy, 16, seed=1)))[0].numpy()
    np.testing.assert_array_equal(jittered, again)


def test_translate_shifts_each_image_with_reflected_borders():
    c = crops(n=8)
    policy = ALL_OFF.model_copy(update={"translate": 0.25})
    shifted = next(iter(make_dataset(c.images, c.labels, policy, 8, seed=2)))[0].numpy()
    padded = np.pad(c.images, [(0, 0), (4, 4), (4, 4), (0, 0)], mode="reflect")
    back = np.rint((shifted + 1.0) * 127.5).astype(np.uint8)
    for source, image in zip(padded, back, strict=True):
        windows = [source[y : y + 16, x : x + 16] for y in range(9) for x in range(9)]
        assert any(np.array_equal(w, image) for w in windows)
    assert sum(np.array_equal(a, b) for a, b in zip(back, c.images, strict=True)) < 4


def test_colour_jitters_keep_grey_pixels_grey():
    grey = np.repeat(np.linspace(20, 235, 16 * 16 * 4).astype(np.uint8).reshape(4, 16, 16, 1), 3, axis=-1)
    policy = AugmentParams(brightness=0.2, contrast=0.3, saturation=0.5, hue=0.5, shuffle_buffer=1)
    images = next(iter(make_dataset(grey, np.zeros(4, np.int32), policy, 4, seed=5)))[0].numpy()
    assert np.ptp(images, axis=-1).max() < 2 / 255
    assert np.abs(images - (grey / 127.5 - 1.0)).max() > 0.05


def test_augment_stage_writes_policy_and_preview(tmp_path):
    save_crops(tmp_path / "crops.npz", crops(channels=1))
    params = AugmentParams(translate=0.1, preview=9)
    augment_stage(tmp_path / "crops.npz", params, tmp_path / "p" / "policy.json", tmp_path / "preview.png")
    assert load_policy(tmp_path / "p" / "policy.json") == params
    assert json.loads((tmp_path / "p" / "policy.json").read_text())["image_shape"] == [16, 16, 1]
    assert Image.open(tmp_path / "preview.png").size[0] > 16 * 3


def test_missing_policy_is_a_clear_error(tmp_path):
    with pytest.raises(DogganError, match="augment stage"):
        load_policy(tmp_path / "policy.json")
