"""DCGAN generator and discriminator, sized from the image shape (28×28×1 up to 64×64×3 and beyond)."""

from __future__ import annotations

import keras
from keras import layers


def upsampling_plan(size: int) -> tuple[int, int]:
    """(start side, number of 2× upsamplings) so that start · 2**n == size with a start of 3-7."""
    start, n = size, 0
    while start % 2 == 0 and start > 7:
        start //= 2
        n += 1
    if n == 0:
        raise ValueError(f"image side {size} cannot be reached by doubling from 3-7 pixels")
    return start, n


def make_generator(z_dim: int, image_shape: tuple[int, int, int], filters: int = 256) -> keras.Model:
    """Dense to a small map, transposed convolutions with batch norm and ReLU, tanh out."""
    side, channels = image_shape[0], image_shape[2]
    start, n_up = upsampling_plan(side)
    init = keras.initializers.RandomNormal(stddev=0.02)
    z = keras.Input((z_dim,), name="z")
    x = layers.Dense(start * start * filters, use_bias=False, kernel_initializer=init)(z)
    x = layers.Reshape((start, start, filters))(x)
    x = layers.BatchNormalization(momentum=0.9, synchronized=True)(x)
    x = layers.ReLU()(x)
    for i in range(n_up - 1):
        width = max(filters // 2 ** (i + 1), 16)
        x = layers.Conv2DTranspose(
            width, 4, strides=2, padding="same", use_bias=False, kernel_initializer=init
        )(x)
        x = layers.BatchNormalization(momentum=0.9, synchronized=True)(x)
        x = layers.ReLU()(x)
    x = layers.Conv2DTranspose(channels, 4, strides=2, padding="same", kernel_initializer=init)(x)
    out = layers.Activation("tanh", dtype="float32", name="image")(x)
    return keras.Model(z, out, name="generator")


def make_discriminator(
    image_shape: tuple[int, int, int], filters: int = 64, spectral_norm: bool = True
) -> keras.Model:
    """Strided convolutions with LeakyReLU (spectrally normalized when asked), one logit out."""
    init = keras.initializers.RandomNormal(stddev=0.02)

    def sn(layer):
        return layers.SpectralNormalization(layer) if spectral_norm else layer

    image = keras.Input(image_shape, name="image")
    x, side, width = image, image_shape[0], filters
    while side > 7 or side == image_shape[0]:
        x = sn(layers.Conv2D(width, 4, strides=2, padding="same", kernel_initializer=init))(x)
        x = layers.LeakyReLU(0.2)(x)
        side, width = (side + 1) // 2, min(width * 2, filters * 8)
    x = layers.Flatten()(x)
    logit = sn(layers.Dense(1, kernel_initializer=init))(x)
    logit = layers.Activation("linear", dtype="float32", name="logit")(logit)
    return keras.Model(image, logit, name="discriminator")
