"""The Keras DCGAN tutorial's networks (preset dcgan-mnist): upsampling and 5×5 convolutions."""

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
    """Dense to side/4 × side/4 × 256, batch norm (momentum 0.9), ReLU, dropout, then two upsamplings
    and 5×5 transposed convolutions 128 → 64 → 32 (batch norm, ReLU) to the image (Keras DCGAN tutorial)."""
    init = initializer(p.init_stddev)
    start = quarter(shape[0], "dcgan-mnist")
    z = keras.Input((z_dim,), name="z")
    x = layers.Dense(start * start * p.g_filters, use_bias=p.use_bias, kernel_initializer=init)(z)
    x = layers.ReLU()(layers.BatchNormalization(momentum=0.9, synchronized=True)(x))
    x = maybe_dropout(layers.Reshape((start, start, p.g_filters))(x), p.g_dropout)
    for i, width in enumerate((p.g_filters // 2, p.g_filters // 4, p.g_filters // 8)):
        if i < 2:
            x = layers.UpSampling2D()(x)
        x = layers.Conv2DTranspose(width, 5, padding="same", use_bias=p.use_bias, kernel_initializer=init)(x)
        x = layers.ReLU()(layers.BatchNormalization(momentum=0.9, synchronized=True)(x))
    return keras.Model(z, image_out(x, shape[2], 5, p.use_bias, init), name="generator")


def make_discriminator(shape: Shape, p: TrainParams) -> keras.Model:
    """5×5 convolutions 64 → 128 → 256 (strided) → 512, each with LeakyReLU(0.2) and dropout, one logit."""
    init = initializer(p.init_stddev)
    image = keras.Input(shape, name="image")
    x = image
    for i, width in enumerate((p.d_filters, p.d_filters * 2, p.d_filters * 4, p.d_filters * 8)):
        conv = layers.Conv2D(
            width, 5, strides=2 if i < 3 else 1, padding="same", use_bias=p.use_bias, kernel_initializer=init
        )
        x = spectral(conv, p.spectral_norm, p.sn_form)(x)
        x = maybe_dropout(layers.LeakyReLU(0.2)(x), p.d_dropout)
    x = layers.Flatten()(x)
    return keras.Model(image, logit(x, p.use_bias, init, p.spectral_norm, p.sn_form), name="discriminator")
