"""DCGAN generator and discriminator, sized from the image shape (28×28×1 up to 64×64×3 and beyond)."""

from __future__ import annotations

import keras
from keras import layers, ops


def initializer(stddev: float, truncated: bool = False) -> keras.initializers.Initializer:
    """Normal (or truncated normal) weights of this std; 0 keeps Keras' default, Glorot uniform."""
    if not stddev:
        return keras.initializers.GlorotUniform()
    if truncated:
        return keras.initializers.TruncatedNormal(stddev=stddev)
    return keras.initializers.RandomNormal(stddev=stddev)


def maybe_dropout(x, rate: float):
    """Dropout at `rate` (active only when the model is called with training=True), or nothing at 0."""
    return layers.Dropout(rate)(x) if rate else x


def upsampling_plan(size: int) -> tuple[int, int]:
    """(start side, number of 2× upsamplings) so that start · 2**n == size with a start of 3-7."""
    start, n = size, 0
    while start % 2 == 0 and start > 7:
        start //= 2
        n += 1
    if n == 0:
        raise ValueError(f"image side {size} cannot be reached by doubling from 3-7 pixels")
    return start, n


@keras.saving.register_keras_serializable(package="doggan")
class ConditionalBatchNorm(layers.Layer):
    """Batch norm whose scale and offset are looked up per class: how BigGAN conditions its generator."""

    def __init__(self, n_classes: int, momentum: float = 0.9, **kwargs):
        super().__init__(**kwargs)
        self.n_classes, self.momentum = n_classes, momentum
        self.norm = layers.BatchNormalization(momentum=momentum, center=False, scale=False, synchronized=True)

    def build(self, input_shape):
        x_shape = input_shape[0]
        self.norm.build(x_shape)
        channels = x_shape[-1]
        self.gamma = self.add_weight(shape=(self.n_classes, channels), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(self.n_classes, channels), initializer="zeros", name="beta")

    def call(self, inputs, training=None):
        x, label = inputs
        x = self.norm(x, training=training)
        label = ops.reshape(ops.cast(label, "int32"), (-1,))
        shape = (-1,) + (1,) * (len(x.shape) - 2) + (x.shape[-1],)
        gamma = ops.reshape(ops.take(self.gamma, label, axis=0), shape)
        beta = ops.reshape(ops.take(self.beta, label, axis=0), shape)
        return x * ops.cast(gamma, x.dtype) + ops.cast(beta, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes, "momentum": self.momentum}


def make_generator(
    z_dim: int,
    image_shape: tuple[int, int, int],
    filters: int = 256,
    n_classes: int = 0,
    dropout: float = 0.0,
    init_stddev: float = 0.02,
    use_bias: bool = True,
) -> keras.Model:
    """Dense to a small map, transposed convolutions with batch norm and ReLU, tanh out.

    With `n_classes` the model takes [z, label] and its batch norms are class-conditional. `dropout`
    follows each hidden block; layers before a batch norm never have a bias, the output layer has one
    when `use_bias`.
    """
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
    for i in range(n_up - 1):
        width = max(filters // 2 ** (i + 1), 16)
        x = layers.Conv2DTranspose(
            width, 4, strides=2, padding="same", use_bias=False, kernel_initializer=init
        )(x)
        x = maybe_dropout(layers.ReLU()(norm(x)), dropout)
    x = layers.Conv2DTranspose(
        channels, 4, strides=2, padding="same", use_bias=use_bias, kernel_initializer=init
    )(x)
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
) -> keras.Model:
    """Strided convolutions with LeakyReLU (spectrally normalized when asked), one logit out.

    With `n_classes` the model takes [image, label] and adds a projection term: embed(label) · features.
    `dropout` follows each convolution block.
    """
    init = initializer(init_stddev)

    def sn(layer):
        return layers.SpectralNormalization(layer) if spectral_norm else layer

    image = keras.Input(image_shape, name="image")
    x, side, width = image, image_shape[0], filters
    while side > 7 or side == image_shape[0]:
        conv = layers.Conv2D(width, 4, strides=2, padding="same", use_bias=use_bias, kernel_initializer=init)
        x = maybe_dropout(layers.LeakyReLU(0.2)(sn(conv)(x)), dropout)
        side, width = (side + 1) // 2, min(width * 2, filters * 8)
    features = layers.Flatten()(x)
    logit = sn(layers.Dense(1, use_bias=use_bias, kernel_initializer=init))(features)
    inputs = image
    if n_classes:
        label = keras.Input((), dtype="int32", name="label")
        embedded = layers.Embedding(n_classes, features.shape[-1], embeddings_initializer=init)(label)
        logit = layers.Add()([logit, layers.Dot(axes=1)([embedded, features])])
        inputs = [image, label]
    logit = layers.Activation("linear", dtype="float32", name="logit")(logit)
    return keras.Model(inputs, logit, name="discriminator")
