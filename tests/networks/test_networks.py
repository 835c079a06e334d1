"""The DCGAN models are sized from the image shape and save/load with their custom layers."""

import keras
import numpy as np
import pytest

from doggan.networks import blocks, dcgan


@pytest.mark.parametrize("shape", [(28, 28, 1), (64, 64, 3), (32, 32, 3)])
def test_models_fit_the_image_shape(shape):
    g = dcgan.make_generator(16, shape, filters=32)
    d = dcgan.make_discriminator(shape, filters=16)
    images = g(np.zeros((2, 16), np.float32), training=False)
    assert tuple(images.shape) == (2, *shape)
    assert np.abs(images.numpy()).max() <= 1.0
    assert tuple(d(images, training=True).shape) == (2, 1)


def test_sides_that_cannot_be_reached_are_refused():
    with pytest.raises(ValueError, match="image side 5"):
        blocks.upsampling_plan(5)


def test_spectral_norm_keeps_the_largest_singular_value_near_one():
    d = dcgan.make_discriminator((16, 16, 1), filters=16, spectral_norm=True)
    x = np.random.default_rng(0).standard_normal((4, 16, 16, 1)).astype("float32")
    for _ in range(30):
        d(x, training=True)
    sn = next(layer for layer in d.layers if isinstance(layer, keras.layers.SpectralNormalization))
    kernel = keras.ops.convert_to_numpy(sn.layer.kernel)
    assert abs(np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0] - 1.0) < 0.05


def test_conditional_generator_uses_the_class_and_survives_saving(tmp_path):
    g = dcgan.make_generator(8, (16, 16, 3), filters=16, n_classes=3)
    cbn = next(layer for layer in g.layers if isinstance(layer, blocks.ConditionalBatchNorm))
    gamma = cbn.gamma.numpy()
    gamma[2] *= 3.0
    cbn.gamma.assign(gamma)
    z = np.random.default_rng(0).standard_normal((2, 8)).astype("float32")
    same_z = np.repeat(z[:1], 2, axis=0)
    out = g([same_z, np.array([0, 2], np.int32)], training=False).numpy()
    assert np.abs(out[0] - out[1]).max() > 1e-3
    g.save(tmp_path / "g.keras")
    loaded = keras.models.load_model(tmp_path / "g.keras")
    np.testing.assert_allclose(
        loaded([z, np.array([1, 2], np.int32)]), g([z, np.array([1, 2], np.int32)]), atol=1e-5
    )


def test_projection_discriminator_scores_depend_on_the_label():
    d = dcgan.make_discriminator((16, 16, 3), filters=8, n_classes=4)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 3)).astype("float32")
    a = d([np.repeat(x, 2, 0), np.array([0, 3], np.int32)], training=False).numpy()
    assert abs(a[0, 0] - a[1, 0]) > 1e-6


def test_layers_sharing_an_initializer_draw_their_own_weights():
    keras.utils.set_random_seed(0)
    init = blocks.initializer(0.02)
    first, second = (keras.layers.Dense(8, kernel_initializer=init) for _ in range(2))
    first.build((None, 8))
    second.build((None, 8))
    assert not np.allclose(first.kernel.numpy(), second.kernel.numpy())
    keras.utils.set_random_seed(0)
    again = keras.layers.Dense(8, kernel_initializer=blocks.initializer(0.02))
    again.build((None, 8))
    np.testing.assert_array_equal(again.kernel.numpy(), first.kernel.numpy())


def checkerboard(side: int) -> np.ndarray:
    """A (1, side, side, 3) checkerboard of +-1 pixels: the dots of stride-2 transposed convolutions."""
    return np.tile(np.array([[1, -1], [-1, 1]], np.float32)[None, :, :, None], (1, side // 2, side // 2, 3))


def test_a_lower_resolution_draws_and_judges_small_and_hands_out_full_size_images(tmp_path):
    from doggan import networks
    from doggan.params import TrainParams

    p = TrainParams(resolution=16, g_filters=32, d_filters=8, spectral_norm=False)
    g = networks.make_generator(p, (64, 64, 3), n_classes=2)
    d = networks.make_discriminator(p, (64, 64, 3), n_classes=2)
    z, labels = np.random.default_rng(0).standard_normal((2, 128)).astype("float32"), np.array([0, 1])
    images = g([z, labels], training=False).numpy()
    assert images.shape == (2, 64, 64, 3)
    small = g.get_layer("image").output.shape
    assert tuple(small[1:]) == (16, 16, 3)
    # Enlarged 4x bilinearly: neighbouring pixels differ far less than in a 64-pixel drawing.
    assert np.abs(np.diff(images, axis=1)).mean() < 0.5 * np.abs(np.diff(images[:, ::4], axis=1)).mean()
    assert d([images, labels], training=True).shape == (2, 1)
    # D sees the average of each 4x4 block: two images with the same block averages score the same.
    rng = np.random.default_rng(1)
    flat = np.repeat(np.repeat(rng.uniform(-1, 1, (1, 16, 16, 3)), 4, 1), 4, 2).astype("float32")
    wiggle = checkerboard(64) * 0.1
    scores = d([np.concatenate([flat, flat + wiggle]), np.array([1, 1])], training=False).numpy()
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-4)
    g.save(tmp_path / "g.keras")
    loaded = keras.models.load_model(tmp_path / "g.keras")
    np.testing.assert_allclose(loaded([z, labels]), images, atol=1e-5)


def test_bilinear_enlarging_then_pooling_hands_d_a_quarter_of_a_checkerboard():
    dots = checkerboard(16)
    seen = keras.layers.AveragePooling2D(2)(blocks.Enlarge(2)(dots, training=True)).numpy()
    np.testing.assert_allclose(seen[:, 1:-1, 1:-1], 0.25 * dots[:, 1:-1, 1:-1], atol=1e-6)


@pytest.mark.parametrize("enlarge_fake", ["bilinear", "nearest"])
def test_with_enlarge_fake_nearest_d_pools_back_exactly_what_g_drew_in_training(enlarge_fake, tmp_path):
    from doggan import networks
    from doggan.params import TrainParams

    p = TrainParams(resolution=16, g_filters=32, enlarge_fake=enlarge_fake)
    g = networks.make_generator(p, (32, 32, 3))
    drawing = keras.Model(g.inputs, g.get_layer("image").output)
    z = np.random.default_rng(0).standard_normal((2, 128)).astype("float32")
    pooled = keras.layers.AveragePooling2D(2)(g(z, training=True)).numpy()
    exact = np.allclose(pooled, drawing(z, training=True).numpy(), atol=1e-6)
    assert exact == (enlarge_fake == "nearest")
    bilinear = keras.layers.UpSampling2D(2, interpolation="bilinear")(drawing(z, training=False)).numpy()
    np.testing.assert_allclose(g(z, training=False).numpy(), bilinear, atol=1e-6)
    g.save(tmp_path / "g.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "g.keras")(z), bilinear, atol=1e-5)


@pytest.mark.parametrize("resolution", [24, 128])
def test_a_resolution_that_does_not_divide_the_side_is_refused(resolution):
    from doggan import networks
    from doggan.errors import DogganError
    from doggan.params import TrainParams

    with pytest.raises(DogganError, match=f"train.resolution {resolution} must divide.*64x64"):
        networks.make_generator(TrainParams(resolution=resolution), (64, 64, 3))


def constant_map_output(upsample: str) -> np.ndarray:
    """G's image (without the border the convolutions' padding reaches) for a constant map after its first
    layer, with batch norm at its initial moving statistics (training=False), so every block sees a
    constant input."""
    from doggan import networks
    from doggan.params import TrainParams

    g = networks.make_generator(
        TrainParams(g_filters=16, z_dim=8, g_upsample=upsample, resolution=0), (16, 16, 3)
    )
    reshape = next(layer for layer in g.layers if isinstance(layer, keras.layers.Reshape))
    upper = keras.Model(reshape.output, g.output)
    return upper(np.ones((1, *reshape.output.shape[1:]), "float32"), training=False).numpy()[0, 4:-4, 4:-4]


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_resize_convolutions_draw_no_checkerboard_on_a_constant_map(upsample):
    from doggan import networks
    from doggan.params import TrainParams

    g = networks.make_generator(TrainParams(g_filters=16, z_dim=8, g_upsample=upsample), (16, 16, 3))
    kinds = {type(layer) for layer in g.layers}
    resize = upsample == "resize"
    assert (keras.layers.Conv2DTranspose in kinds) != resize
    assert (keras.layers.UpSampling2D in kinds) == (keras.layers.Conv2D in kinds) == resize
    out = constant_map_output(upsample)
    # the mean of each of the four pixel classes (row and column parity): a checkerboard sets them apart
    classes = np.array([out[a::2, b::2].mean(axis=(0, 1)) for a in (0, 1) for b in (0, 1)])
    if resize:
        assert classes.std(axis=0).max() < 1e-6 and out.std(axis=(0, 1)).max() < 1e-6
    else:
        assert classes.std(axis=0).max() > 1e-3


def test_real_crops_reach_d_as_the_generators_drawings_do():
    """At a lower resolution D pools G's enlarged drawings; real crops prepared by `as_drawn` pool to the
    same view as a generator that drew their pooled selves, where the plain crops pool to a sharper one."""
    from keras import layers

    from doggan import networks
    from doggan.params import TrainParams

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    pool = layers.AveragePooling2D(2)
    enlarge = layers.UpSampling2D(2, interpolation="bilinear")
    drawn = enlarge(pool(crops.astype("float32")))  # what a G that draws the pooled crops hands out
    judged = lambda x: np.asarray(pool(np.asarray(x, "float32")))  # noqa: E731
    prepared = networks.as_drawn(crops, TrainParams(resolution=32))
    assert prepared.dtype == np.uint8 and prepared.shape == crops.shape
    np.testing.assert_allclose(judged(prepared), judged(drawn), atol=0.5)
    assert np.abs(judged(crops) - judged(drawn)).mean() > 10
    assert networks.as_drawn(crops, TrainParams(resolution=0)) is crops
