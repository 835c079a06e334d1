"""The DCGAN models are sized from the image shape and save/load with their custom layers."""

import keras
import numpy as np
import pytest
from doggan import networks


@pytest.mark.parametrize("shape", [(28, 28, 1), (64, 64, 3), (32, 32, 3)])
def test_models_fit_the_image_shape(shape):
    g = networks.make_generator(16, shape, filters=32)
    d = networks.make_discriminator(shape, filters=16)
    images = g(np.zeros((2, 16), np.float32), training=False)
    assert tuple(images.shape) == (2, *shape)
    assert np.abs(images.numpy()).max() <= 1.0
    assert tuple(d(images, training=True).shape) == (2, 1)


def test_sides_that_cannot_be_reached_are_refused():
    with pytest.raises(ValueError, match="image side 5"):
        networks.upsampling_plan(5)


def test_spectral_norm_keeps_the_largest_singular_value_near_one():
    d = networks.make_discriminator((16, 16, 1), filters=16, spectral_norm=True)
    x = np.random.default_rng(0).standard_normal((4, 16, 16, 1)).astype("float32")
    for _ in range(30):
        d(x, training=True)
    sn = next(layer for layer in d.layers if isinstance(layer, keras.layers.SpectralNormalization))
    kernel = keras.ops.convert_to_numpy(sn.layer.kernel)
    assert abs(np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0] - 1.0) < 0.05
