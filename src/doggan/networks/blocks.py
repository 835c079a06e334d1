"""Building blocks shared by every architecture: initialisers, spectral norm, conditional batch norm,
the tanh image head and the logit head."""

from __future__ import annotations

import keras
from keras import layers, ops

from doggan.networks.spectral import spectral


def initializer(stddev: float, truncated: bool = False) -> keras.initializers.Initializer:
    """Normal (or truncated normal) weights of this std; 0 keeps Keras' default, Glorot uniform.

    Seeded by a SeedGenerator (itself seeded by keras.utils.set_random_seed), so that the layers sharing
    this initialiser each draw their own weights: an integer or absent seed would give every layer the
    same random stream."""
    seed = keras.random.SeedGenerator()
    if not stddev:
        return keras.initializers.GlorotUniform(seed=seed)
    if truncated:
        return keras.initializers.TruncatedNormal(stddev=stddev, seed=seed)
    return keras.initializers.RandomNormal(stddev=stddev, seed=seed)


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


def quarter(side: int, recipe: str) -> int:
    """side / 4, for recipes that upsample twice by 2; other sides are refused."""
    if side % 4:
        raise ValueError(f"{recipe} upsamples twice by 2: the image side must be a multiple of 4, got {side}")
    return side // 4


def image_out(x, channels: int, kernel: int, use_bias: bool, init) -> keras.KerasTensor:
    """A same-size transposed convolution to the image's channels, then tanh (images in [-1, 1])."""
    conv = layers.Conv2DTranspose(
        channels, kernel, padding="same", use_bias=use_bias, kernel_initializer=init
    )
    return layers.Activation("tanh", dtype="float32", name="image")(conv(x))


@keras.saving.register_keras_serializable(package="doggan")
class Enlarge(layers.Layer):
    """Enlarges G's drawings `factor` times: bilinearly when sampling; while training, by nearest (with
    `nearest_in_training`), so that D's average pooling gives back exactly what G drew and D sees every
    pixel of it. Bilinear enlarging then pooling is a low-pass filter, under which a checkerboard of dots
    reaches D at a quarter of its strength: G is barely told to stop drawing one."""

    def __init__(self, factor: int, nearest_in_training: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.factor, self.nearest_in_training = factor, nearest_in_training

    def call(self, x, training=False):
        side = (ops.shape(x)[1] * self.factor, ops.shape(x)[2] * self.factor)
        method = "nearest" if training and self.nearest_in_training else "bilinear"
        return ops.image.resize(x, side, interpolation=method)

    def get_config(self):
        return {
            **super().get_config(),
            "factor": self.factor,
            "nearest_in_training": self.nearest_in_training,
        }


def logit(x, use_bias: bool, init, spectral_norm: bool = False, sn_form: str = "keras") -> keras.KerasTensor:
    """One (spectrally normalized, in form `sn_form`) dense logit per example, in float32."""
    dense = spectral(layers.Dense(1, use_bias=use_bias, kernel_initializer=init), spectral_norm, sn_form)
    return layers.Activation("linear", dtype="float32", name="logit")(dense(x))


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


@keras.saving.register_keras_serializable(package="doggan")
class HierarchicalBatchNorm(layers.Layer):
    """Batch norm with a per-example gain 1 + W_g·c and bias W_b·c from a conditioning vector c: BigGAN's
    conditional batch norm, c being a block's z chunk (joined with the shared class embedding when
    conditional). W_g and W_b have no bias and are spectrally normalized (in form `sn_form`) when
    `spectral_norm`."""

    def __init__(
        self,
        spectral_norm: bool = True,
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        sn_form: str = "keras",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.spectral_norm, self.momentum, self.epsilon = spectral_norm, momentum, epsilon
        self.sn_form = sn_form
        self.norm = layers.BatchNormalization(
            momentum=momentum, epsilon=epsilon, center=False, scale=False, synchronized=True
        )

    def build(self, input_shape):
        x_shape, c_shape = input_shape
        self.norm.build(x_shape)
        channels = x_shape[-1]
        gain, bias = (
            layers.Dense(channels, use_bias=False, kernel_initializer="orthogonal", name=name)
            for name in ("gain", "bias")
        )
        self.gain = spectral(gain, self.spectral_norm, self.sn_form)
        self.bias = spectral(bias, self.spectral_norm, self.sn_form)
        self.gain.build(c_shape)
        self.bias.build(c_shape)

    def call(self, inputs, training=None):
        x, c = inputs
        x = self.norm(x, training=training)
        shape = (-1,) + (1,) * (len(x.shape) - 2) + (x.shape[-1],)
        gain = ops.reshape(1.0 + self.gain(c, training=training), shape)
        bias = ops.reshape(self.bias(c, training=training), shape)
        return x * ops.cast(gain, x.dtype) + ops.cast(bias, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {
            **super().get_config(),
            "spectral_norm": self.spectral_norm,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "sn_form": self.sn_form,
        }
