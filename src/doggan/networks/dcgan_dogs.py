"""The 2019 dog DCGAN notebook's networks (preset dcgan-dogs): 5×5 blocks, spectral norm in D."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
from keras import layers

from doggan.networks.blocks import image_out, initializer, logit, maybe_dropout, upsampling_plan
from doggan.networks.spectral import spectral

if TYPE_CHECKING:
    from doggan.params import TrainParams

Shape = tuple[int, int, int]


def make_generator(z_dim: int, shape: Shape, p: TrainParams) -> keras.Model:
    """Dense to 4×4×128, then 5×5 transposed blocks 512 (stride 1) → 256 → 128 → 64 → 32 (stride 2) with
    batch norm and ReLU, dropout after the first two, truncated-normal weights (the 2019 dog notebook)."""
    init = initializer(p.init_stddev, truncated=True)
    start, n_up = upsampling_plan(shape[0])
    z = keras.Input((z_dim,), name="z")
    x = layers.Dense(start * start * (p.g_filters // 4), use_bias=p.use_bias, kernel_initializer=init)(z)
    x = layers.Reshape((start, start, p.g_filters // 4))(x)
    blocks = [(p.g_filters, 1)] + [(max(p.g_filters // 2 ** (i + 1), 16), 2) for i in range(n_up)]
    for i, (width, stride) in enumerate(blocks):
        x = layers.Conv2DTranspose(
            width, 5, strides=stride, padding="same", use_bias=False, kernel_initializer=init
        )(x)
        x = layers.ReLU()(layers.BatchNormalization(synchronized=True)(x))
        if i < 2:
            x = maybe_dropout(x, p.g_dropout)
    return keras.Model(z, image_out(x, shape[2], 5, p.use_bias, init), name="generator")


def make_discriminator(shape: Shape, p: TrainParams) -> keras.Model:
    """Spectrally normalized 5×5 convolutions 64 (stride 1) → 64 → 128 → 256 (stride 2), batch norm after
    the first, LeakyReLU(0.2), and a spectrally normalized dense logit."""
    init = initializer(p.init_stddev, truncated=True)
    image = keras.Input(shape, name="image")
    x = image
    widths = ((p.d_filters, 1), (p.d_filters, 2), (p.d_filters * 2, 2), (p.d_filters * 4, 2))
    for i, (width, stride) in enumerate(widths):
        conv = layers.Conv2D(
            width, 5, strides=stride, padding="same", use_bias=p.use_bias and i == 0, kernel_initializer=init
        )
        x = spectral(conv, p.spectral_norm, p.sn_form)(x)
        if i:
            x = layers.BatchNormalization(synchronized=True)(x)
        x = maybe_dropout(layers.LeakyReLU(0.2)(x), p.d_dropout)
    x = layers.Flatten()(x)
    return keras.Model(image, logit(x, p.use_bias, init, p.spectral_norm, p.sn_form), name="discriminator")
