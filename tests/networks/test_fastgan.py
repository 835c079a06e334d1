"""FastGAN: shapes at the working sides 32 and 64, skip-layer excitation gating channels, D's decoders and
their quarters, sides refused alike by the params and the networks, and a saved generator reloading."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from doggan import networks, params
from doggan.networks import fastgan
from doggan.output import sampling
from doggan.params import TrainParams
from doggan.training import report

TINY = dict(architecture="fastgan", g_filters=32, d_filters=8, z_dim=16)


def tiny(**changes) -> TrainParams:
    return TrainParams(**{**TINY, **changes})


def noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, TINY["z_dim"])).astype("float32")


@pytest.mark.parametrize(("resolution", "crop"), [(32, 32), (64, 64), (32, 64)])
def test_shapes_at_working_sides_32_and_64(resolution, crop):
    p = tiny(resolution=resolution)
    g = networks.make_generator(p, (crop, crop, 3))
    d = networks.make_discriminator(p, (crop, crop, 3))
    images = g(noise(4), training=True)
    assert tuple(images.shape) == (4, crop, crop, 3) and images.dtype == "float32"
    assert np.abs(images.numpy()).max() <= 1.0
    logits = d(images, training=True)
    assert tuple(logits.shape) == (4, 1) and logits.dtype == "float32"
    logits, whole, part, seen = d.reconstruct(images, 2, tf.constant([0, 3]), training=True)
    half = resolution // 2
    assert tuple(logits.shape) == (4, 1)
    assert tuple(whole.shape) == tuple(part.shape) == (2, half, half, 3)
    assert tuple(seen.shape) == (2, resolution, resolution, 3)
    g_sles = {"sle4_16", "sle8_32"} | ({"sle16_64"} if resolution == 64 else set())
    d_sles = {"sle32_8", "sle16_4"} | ({"sle64_16"} if resolution == 64 else set())
    assert sle_names(g) == g_sles and sle_names(d.trunk) == d_sles


def sle_names(model: keras.Model) -> set[str]:
    """The names of the model's skip-layer excitations (the Multiply layers that apply their gates)."""
    return {layer.name for layer in model.layers if isinstance(layer, keras.layers.Multiply)}


def test_skip_excitation_gates_the_channels_of_the_target_map_by_the_source_map():
    small_in, big_in = keras.Input((8, 8, 6)), keras.Input((16, 16, 4))
    sle = keras.Model(
        [small_in, big_in], fastgan.skip_excitation(small_in, big_in, "glorot_uniform", name="s")
    )
    rng = np.random.default_rng(0)
    big = rng.uniform(0.5, 1.5, (2, 16, 16, 4)).astype("float32")
    small = rng.standard_normal((2, 8, 8, 6)).astype("float32")
    out = sle([small, big]).numpy()
    gate = out / big  # one factor per image and channel, the same at every pixel, in (0, 1)
    np.testing.assert_allclose(gate, np.broadcast_to(gate[:, :1, :1], gate.shape), rtol=1e-5)
    assert gate.min() > 0 and gate.max() < 1
    other = sle([small + rng.standard_normal(small.shape).astype("float32"), big]).numpy()
    assert np.abs(other - out).max() > 1e-3  # the same target, another source: other gates


def test_quadrant_takes_each_images_own_quarter():
    x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1)
    quarters = fastgan.quadrant(tf.constant(x), tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(quarters[0], x[0, :2, 2:])
    np.testing.assert_array_equal(quarters[1], x[1, 2:, :2])


def test_decoders_read_d_maps_and_are_d_weights():
    d = networks.make_discriminator(tiny(resolution=32), (32, 32, 3))
    trunk = d.trunk
    assert d.whole.input.shape[1:3] == (8, 8) and d.part.input.shape[1:3] == (8, 8)
    assert trunk.outputs[1].shape[1:3] == (8, 8) and trunk.outputs[2].shape[1:3] == (16, 16)
    ids = {id(v) for v in d.trainable_variables}
    decoders = d.whole.trainable_variables + d.part.trainable_variables
    assert decoders and all(id(v) in ids for v in decoders)
    assert all(id(v) in ids for v in trunk.trainable_variables)


def test_fastgan_draws_the_powers_of_two_from_16():
    # that the networks build exactly the sides params accept: tests/test_params.py, for every architecture
    p = tiny(attention=0)
    for side in (8, 12, 16, 24, 32, 48, 64):
        assert bool(params.drawing_problem("fastgan", side, p.z_dim)) == (side not in (16, 32, 64)), side


def test_saved_generator_reloads_with_the_same_output(tmp_path):
    p = tiny(resolution=32)
    g = networks.make_generator(p, (64, 64, 3))
    g(noise(4), training=True)  # batch-norm statistics move off their start
    meta = sampling.Generator(None, p.z_dim, image_shape=(64, 64, 3))
    report.write_generator(g, meta, tmp_path)
    loaded = sampling.load_generator(tmp_path)
    np.testing.assert_allclose(
        loaded.model(noise(2, seed=1), training=False), g(noise(2, seed=1), training=False), atol=1e-5
    )
    assert any(isinstance(layer, fastgan.GLU) for layer in loaded.model.layers)
