"""This project's DCGAN: a dense layer to a small map, 4×4 transposed convolutions (or resize
convolutions: nearest 2× upsampling then a 3×3 convolution, Odena et al. 2016) with batch norm and ReLU,
tanh out; a strided convolutional discriminator with LeakyReLU and spectral norm. Sized from the
image shape (28×28×1 up to 64×64×3 and beyond); class-conditional when asked (conditional batch norm in
G, a projection term in D)."""

from __future__ import annotations

import keras
from keras import layers

from doggan.networks.blocks import ConditionalBatchNorm, initializer, maybe_dropout, upsampling_plan
from doggan.networks.spectral import spectral

UPSAMPLING = ("transpose", "resize")  # train.g_upsample


def make_generator(
    z_dim: int,
    image_shape: tuple[int, int, int],
    filters: int = 256,
    n_classes: int = 0,
    dropout: float = 0.0,
    init_stddev: float = 0.02,
    use_bias: bool = True,
    upsample: str = "transpose",
) -> keras.Model:
    """Dense to a small map, 2× upsampling blocks with batch norm and ReLU, tanh out.

    Each block doubles the side with a 4×4 transposed convolution (`upsample` "transpose") or with
    nearest upsampling and a 3×3 convolution ("resize"), which every output pixel sees alike and so draws
    no checkerboard. With `n_classes` the model takes [z, label] and its batch norms are class-conditional.
    `dropout` follows each hidden block; layers before a batch norm never have a bias, the output layer
    has one when `use_bias`.
    """
    if upsample not in UPSAMPLING:
        raise ValueError(f"unknown upsampling {upsample!r}; expected one of {', '.join(UPSAMPLING)}")
    side, channels = image_shape[0], image_shape[2]
    start, n_up = upsampling_plan(side)
    init = initializer(init_stddev)
    z = keras.Input((z_dim,), name="z")
    label = keras.Input((), dtype="int32", name="label") if n_classes else None

    def norm(x):
        if n_classes:
            return ConditionalBatchNorm(n_classes, momentum=0.9)([x, label])
        return layers.BatchNormalization(momentum=0.9, synchronized=True)(x)

    x = layers.Dense(start * start * filters, use_bias=False, kernel_initializer=init)(z)
    x = layers.Reshape((start, start, filters))(x)
    x = maybe_dropout(layers.ReLU()(norm(x)), dropout)

    def double(x, width: int, bias: bool):
        if upsample == "resize":
            x = layers.UpSampling2D(2, interpolation="nearest")(x)
            return layers.Conv2D(width, 3, padding="same", use_bias=bias, kernel_initializer=init)(x)
        conv = layers.Conv2DTranspose(
            width, 4, strides=2, padding="same", use_bias=bias, kernel_initializer=init
        )
        return conv(x)

    for i in range(n_up - 1):
        x = double(x, max(filters // 2 ** (i + 1), 16), bias=False)
        x = maybe_dropout(layers.ReLU()(norm(x)), dropout)
    x = double(x, channels, bias=use_bias)
    out = layers.Activation("tanh", dtype="float32", name="image")(x)
    return keras.Model([z, label] if n_classes else z, out, name="generator")


def make_discriminator(
    image_shape: tuple[int, int, int],
    filters: int = 64,
    spectral_norm: bool = True,
    n_classes: int = 0,
    dropout: float = 0.0,
    init_stddev: float = 0.02,
    use_bias: bool = True,
    sn_form: str = "keras",
) -> keras.Model:
    """Strided convolutions with LeakyReLU (spectrally normalized when asked, in form `sn_form`), one
    logit out.

    With `n_classes` the model takes [image, label] and adds a projection term: embed(label) · features.
    `dropout` follows each convolution block.
    """
    init = initializer(init_stddev)

    image = keras.Input(image_shape, name="image")
    x, side, width = image, image_shape[0], filters
    while side > 7 or side == image_shape[0]:
        conv = layers.Conv2D(width, 4, strides=2, padding="same", use_bias=use_bias, kernel_initializer=init)
        x = maybe_dropout(layers.LeakyReLU(0.2)(spectral(conv, spectral_norm, sn_form)(x)), dropout)
        side, width = (side + 1) // 2, min(width * 2, filters * 8)
    features = layers.Flatten()(x)
    logit = spectral(layers.Dense(1, use_bias=use_bias, kernel_initializer=init), spectral_norm, sn_form)(
        features
    )
    inputs = image
    if n_classes:
        label = keras.Input((), dtype="int32", name="label")
        embedded = layers.Embedding(n_classes, features.shape[-1], embeddings_initializer=init)(label)
        logit = layers.Add()([logit, layers.Dot(axes=1)([embedded, features])])
        inputs = [image, label]
    logit = layers.Activation("linear", dtype="float32", name="logit")(logit)
    return keras.Model(inputs, logit, name="discriminator")
