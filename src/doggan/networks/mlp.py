"""The fully connected GAN of the TensorFlow 2 and Keras tutorials (preset mlp-mnist)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
from keras import layers

from doggan.networks.blocks import initializer, logit, maybe_dropout
from doggan.networks.spectral import spectral

if TYPE_CHECKING:
    from doggan.params import TrainParams

Shape = tuple[int, int, int]


def make_generator(z_dim: int, shape: Shape, p: TrainParams) -> keras.Model:
    """Dense 256 → 512 → 1024, each with LeakyReLU(0.2) and batch norm (momentum 0.8), tanh to the image."""
    init = initializer(p.init_stddev)
    z = keras.Input((z_dim,), name="z")
    x = z
    for width in (p.g_filters, p.g_filters * 2, p.g_filters * 4):
        x = layers.Dense(width, use_bias=p.use_bias, kernel_initializer=init)(x)
        x = layers.BatchNormalization(momentum=0.8, synchronized=True)(layers.LeakyReLU(0.2)(x))
        x = maybe_dropout(x, p.g_dropout)
    x = layers.Dense(shape[0] * shape[1] * shape[2], use_bias=p.use_bias, kernel_initializer=init)(x)
    x = layers.Activation("tanh", dtype="float32")(x)
    return keras.Model(z, layers.Reshape(shape, dtype="float32", name="image")(x), name="generator")


def make_discriminator(shape: Shape, p: TrainParams) -> keras.Model:
    """Flatten → Dense 1024 → 512 → 256, each with LeakyReLU(0.2), one logit."""
    init = initializer(p.init_stddev)
    image = keras.Input(shape, name="image")
    x = layers.Flatten()(image)
    for width in (p.d_filters, p.d_filters // 2, p.d_filters // 4):
        dense = layers.Dense(width, use_bias=p.use_bias, kernel_initializer=init)
        x = spectral(dense, p.spectral_norm, p.sn_form)(x)
        x = maybe_dropout(layers.LeakyReLU(0.2)(x), p.d_dropout)
    return keras.Model(image, logit(x, p.use_bias, init, p.spectral_norm, p.sn_form), name="discriminator")
