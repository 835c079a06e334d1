"""The DCGAN face tutorial's networks (preset dcgan-faces): 5×5 convolutions, LeakyReLU, dropout."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
from keras import layers

from doggan.networks.blocks import image_out, initializer, logit, maybe_dropout, quarter
from doggan.networks.spectral import spectral

if TYPE_CHECKING:
    from doggan.params import TrainParams

Shape = tuple[int, int, int]


def make_generator(z_dim: int, shape: Shape, p: TrainParams) -> keras.Model:
    """Dense to a 4×4×1 map resized to side/4, then 5×5 transposed convolutions 256 (×2) → 128 (×2) → 64,
    each with LeakyReLU(0.2), dropout and batch norm (momentum 0.99), to the image (the face tutorial)."""
    init = initializer(p.init_stddev)
    start = quarter(shape[0], "dcgan-faces")
    z = keras.Input((z_dim,), name="z")
    x = layers.LeakyReLU(0.2)(layers.Dense(16, use_bias=p.use_bias, kernel_initializer=init)(z))
    x = layers.BatchNormalization(momentum=0.99, synchronized=True)(maybe_dropout(x, p.g_dropout))
    x = layers.Resizing(start, start)(layers.Reshape((4, 4, 1))(x))
    for width, stride in ((p.g_filters, 2), (p.g_filters // 2, 2), (p.g_filters // 4, 1)):
        x = layers.Conv2DTranspose(
            width, 5, strides=stride, padding="same", use_bias=p.use_bias, kernel_initializer=init
        )(x)
        x = maybe_dropout(layers.LeakyReLU(0.2)(x), p.g_dropout)
        x = layers.BatchNormalization(momentum=0.99, synchronized=True)(x)
    return keras.Model(z, image_out(x, shape[2], 5, p.use_bias, init), name="generator")


def make_discriminator(shape: Shape, p: TrainParams) -> keras.Model:
    """5×5 convolutions 64 (strided) → 64 → 64 with LeakyReLU(0.2) and dropout, Dense 128, one logit."""
    init = initializer(p.init_stddev)
    image = keras.Input(shape, name="image")
    x = image
    for stride in (2, 1, 1):
        conv = layers.Conv2D(
            p.d_filters, 5, strides=stride, padding="same", use_bias=p.use_bias, kernel_initializer=init
        )
        x = spectral(conv, p.spectral_norm, p.sn_form)(x)
        x = maybe_dropout(layers.LeakyReLU(0.2)(x), p.d_dropout)
    x = layers.Dense(p.d_filters * 2, use_bias=p.use_bias, kernel_initializer=init)(layers.Flatten()(x))
    x = layers.LeakyReLU(0.2)(x)
    return keras.Model(image, logit(x, p.use_bias, init, p.spectral_norm, p.sn_form), name="discriminator")
