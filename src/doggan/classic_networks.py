"""The classic recipes' networks (doggan.presets), and the choice of networks for a training run.

Each recipe keeps its layers, kernel sizes and widths (scaled from train.g_filters / d_filters, which
its preset sets to the original values); dropout rates, initialiser scale and biases come from the
params (g_dropout, d_dropout, init_stddev, use_bias), which the presets also set. Outputs follow this
project's contract, not the tutorials' sigmoid: G ends in tanh (images in [-1, 1]) and D in one logit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
from keras import layers

from doggan import networks, presets
from doggan.networks import initializer, maybe_dropout

if TYPE_CHECKING:
    from doggan.params import TrainParams

Shape = tuple[int, int, int]


def _image_out(x, channels: int, kernel: int, use_bias: bool, init) -> keras.KerasTensor:
    conv = layers.Conv2DTranspose(
        channels, kernel, padding="same", use_bias=use_bias, kernel_initializer=init
    )
    return layers.Activation("tanh", dtype="float32", name="image")(conv(x))


def _logit(x, use_bias: bool, init, spectral_norm: bool = False) -> keras.KerasTensor:
    dense = layers.Dense(1, use_bias=use_bias, kernel_initializer=init)
    x = (layers.SpectralNormalization(dense) if spectral_norm else dense)(x)
    return layers.Activation("linear", dtype="float32", name="logit")(x)


def _quarter(side: int, recipe: str) -> int:
    if side % 4:
        raise ValueError(f"{recipe} upsamples twice by 2: the image side must be a multiple of 4, got {side}")
    return side // 4


def mlp_generator(z_dim: int, shape: Shape, p: TrainParams) -> keras.Model:
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


def mlp_discriminator(shape: Shape, p: TrainParams) -> keras.Model:
    """Flatten → Dense 1024 → 512 → 256, each with LeakyReLU(0.2), one logit."""
    init = initializer(p.init_stddev)
    image = keras.Input(shape, name="image")
    x = layers.Flatten()(image)
    for width in (p.d_filters, p.d_filters // 2, p.d_filters // 4):
        dense = layers.Dense(width, use_bias=p.use_bias, kernel_initializer=init)
        x = (layers.SpectralNormalization(dense) if p.spectral_norm else dense)(x)
        x = maybe_dropout(layers.LeakyReLU(0.2)(x), p.d_dropout)
    return keras.Model(image, _logit(x, p.use_bias, init, p.spectral_norm), name="discriminator")


def dcgan_mnist_generator(z_dim: int, shape: Shape, p: TrainParams) -> keras.Model:
    """Dense to side/4 × side/4 × 256, batch norm (momentum 0.9), ReLU, dropout, then two upsamplings
    and 5×5 transposed convolutions 128 → 64 → 32 (batch norm, ReLU) to the image (Keras DCGAN tutorial)."""
    init = initializer(p.init_stddev)
    start = _quarter(shape[0], "dcgan-mnist")
    z = keras.Input((z_dim,), name="z")
    x = layers.Dense(start * start * p.g_filters, use_bias=p.use_bias, kernel_initializer=init)(z)
    x = layers.ReLU()(layers.BatchNormalization(momentum=0.9, synchronized=True)(x))
    x = maybe_dropout(layers.Reshape((start, start, p.g_filters))(x), p.g_dropout)
    for i, width in enumerate((p.g_filters // 2, p.g_filters // 4, p.g_filters // 8)):
        if i < 2:
            x = layers.UpSampling2D()(x)
        x = layers.Conv2DTranspose(width, 5, padding="same", use_bias=p.use_bias, kernel_initializer=init)(x)
        x = layers.ReLU()(layers.BatchNormalization(momentum=0.9, synchronized=True)(x))
    return keras.Model(z, _image_out(x, shape[2], 5, p.use_bias, init), name="generator")


def dcgan_mnist_discriminator(shape: Shape, p: TrainParams) -> keras.Model:
    """5×5 convolutions 64 → 128 → 256 (strided) → 512, each with LeakyReLU(0.2) and dropout, one logit."""
    init = initializer(p.init_stddev)
    image = keras.Input(shape, name="image")
    x = image
    for i, width in enumerate((p.d_filters, p.d_filters * 2, p.d_filters * 4, p.d_filters * 8)):
        conv = layers.Conv2D(
            width, 5, strides=2 if i < 3 else 1, padding="same", use_bias=p.use_bias, kernel_initializer=init
        )
        x = (layers.SpectralNormalization(conv) if p.spectral_norm else conv)(x)
        x = maybe_dropout(layers.LeakyReLU(0.2)(x), p.d_dropout)
    x = layers.Flatten()(x)
    return keras.Model(image, _logit(x, p.use_bias, init, p.spectral_norm), name="discriminator")


def dcgan_faces_generator(z_dim: int, shape: Shape, p: TrainParams) -> keras.Model:
    """Dense to a 4×4×1 map resized to side/4, then 5×5 transposed convolutions 256 (×2) → 128 (×2) → 64,
    each with LeakyReLU(0.2), dropout and batch norm (momentum 0.99), to the image (the face tutorial)."""
    init = initializer(p.init_stddev)
    start = _quarter(shape[0], "dcgan-faces")
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
    return keras.Model(z, _image_out(x, shape[2], 5, p.use_bias, init), name="generator")


def dcgan_faces_discriminator(shape: Shape, p: TrainParams) -> keras.Model:
    """5×5 convolutions 64 (strided) → 64 → 64 with LeakyReLU(0.2) and dropout, Dense 128, one logit."""
    init = initializer(p.init_stddev)
    image = keras.Input(shape, name="image")
    x = image
    for stride in (2, 1, 1):
        conv = layers.Conv2D(
            p.d_filters, 5, strides=stride, padding="same", use_bias=p.use_bias, kernel_initializer=init
        )
        x = (layers.SpectralNormalization(conv) if p.spectral_norm else conv)(x)
        x = maybe_dropout(layers.LeakyReLU(0.2)(x), p.d_dropout)
    x = layers.Dense(p.d_filters * 2, use_bias=p.use_bias, kernel_initializer=init)(layers.Flatten()(x))
    x = layers.LeakyReLU(0.2)(x)
    return keras.Model(image, _logit(x, p.use_bias, init, p.spectral_norm), name="discriminator")


def dcgan_dogs_generator(z_dim: int, shape: Shape, p: TrainParams) -> keras.Model:
    """Dense to 4×4×128, then 5×5 transposed blocks 512 (stride 1) → 256 → 128 → 64 → 32 (stride 2) with
    batch norm and ReLU, dropout after the first two, truncated-normal weights (the 2019 dog notebook)."""
    init = initializer(p.init_stddev, truncated=True)
    start, n_up = networks.upsampling_plan(shape[0])
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
    return keras.Model(z, _image_out(x, shape[2], 5, p.use_bias, init), name="generator")


def dcgan_dogs_discriminator(shape: Shape, p: TrainParams) -> keras.Model:
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
        x = (layers.SpectralNormalization(conv) if p.spectral_norm else conv)(x)
        if i:
            x = layers.BatchNormalization(synchronized=True)(x)
        x = maybe_dropout(layers.LeakyReLU(0.2)(x), p.d_dropout)
    x = layers.Flatten()(x)
    return keras.Model(image, _logit(x, p.use_bias, init, p.spectral_norm), name="discriminator")


CLASSIC = {
    "mlp-mnist": (mlp_generator, mlp_discriminator),
    "dcgan-mnist": (dcgan_mnist_generator, dcgan_mnist_discriminator),
    "dcgan-faces": (dcgan_faces_generator, dcgan_faces_discriminator),
    "dcgan-dogs": (dcgan_dogs_generator, dcgan_dogs_discriminator),
}


def make_generator(p: TrainParams, shape: Shape, n_classes: int = 0) -> keras.Model:
    """The generator of the run's preset (this project's DCGAN for default and biggan-dogs)."""
    kind = presets.PRESETS[p.preset].networks
    if kind in CLASSIC:
        return CLASSIC[kind][0](p.z_dim, shape, p)
    return networks.make_generator(
        p.z_dim, shape, p.g_filters, n_classes, p.g_dropout, p.init_stddev, p.use_bias
    )


def make_discriminator(p: TrainParams, shape: Shape, n_classes: int = 0) -> keras.Model:
    """The discriminator of the run's preset (this project's DCGAN for default and biggan-dogs)."""
    kind = presets.PRESETS[p.preset].networks
    if kind in CLASSIC:
        return CLASSIC[kind][1](shape, p)
    return networks.make_discriminator(
        shape, p.d_filters, p.spectral_norm, n_classes, p.d_dropout, p.init_stddev, p.use_bias
    )
