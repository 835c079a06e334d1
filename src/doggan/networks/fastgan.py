"""FastGAN (Liu et al., 2021, "Towards Faster and Stabilized GAN Training for High-fidelity Few-shot Image
Synthesis"), scaled to the working side (16, 32, 64, 128, ...).

G: z → 4×4 (a dense layer, the paper's 4×4 transposed convolution of a 1×1 map), batch norm and GLU, then
one up-block per doubling (nearest 2× upsampling, 3×3 convolution, batch norm, GLU) and skip-layer
excitation (SLE): the map of side t/4 gates the channels of the map of side t, for every t ≥ 16; a 3×3
convolution and tanh out. D: a 3×3 stem at the full side, the paper's DownBlock per halving down to 4×4
(a strided 4×4 convolution, batch norm, LeakyReLU), SLE from the map of side 4t onto the map of side t,
and a 1×1 then 4×4 convolution to one logit. Its self-supervision: two small decoders reconstruct the real
images D judges, the whole image at half the side from D's 8×8 map and one quarter of it from the matching
quarter of D's 16×16 map (`Discriminator.reconstruct`, the loss in doggan.training.reconstruction).

Simplifications of the paper, for a CPU budget: one convolution per up-block (no UpBlockComp with noise
injection) and per down-block (no DownBlockComp: its second convolution and pooled shortcut made a step
1.5× slower), LeakyReLU in the SLE (the paper's text; its code uses Swish), one logit from the full side
(no second, low-resolution logit and decoder). Params read: `g_filters` is the width of G's first
convolution (its GLU halves it; halved at each doubling, at least 16 after the GLU), `d_filters` the width
of D's map at half the side (doubled at each halving, capped at 8×), `spectral_norm` and `sn_form` (every
convolution of D, decoders included), `init_stddev`, `use_bias` (the layers not followed by batch norm).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import tensorflow as tf
from keras import layers

from doggan.networks.blocks import initializer
from doggan.networks.spectral import spectral

if TYPE_CHECKING:
    from doggan.params import TrainParams

Shape = tuple[int, int, int]
MOMENTUM = 0.9  # batch norm's, the paper's PyTorch momentum 0.1
SLE_RATIO = 4  # SLE gates the map of side t with the one of side 4t (D) or t/4 (G)


@keras.saving.register_keras_serializable(package="doggan")
class GLU(layers.Layer):
    """Gated linear unit over channels: the first half times the sigmoid of the second half."""

    def call(self, x):
        a, b = keras.ops.split(x, 2, axis=-1)
        return a * keras.ops.sigmoid(b)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // 2)


def doublings(side: int) -> int:
    """How many 2× upsamplings take 4×4 to `side`; FastGAN needs 16, 32, 64, 128, ..."""
    n = max(side, 1).bit_length() - 3
    if side < 16 or 4 * 2**n != side:
        raise ValueError(
            f"fastgan doubles from 4×4 and reconstructs from D's 8×8 and 16×16 maps: the side must be "
            f"16, 32, 64, 128, ..., got {side}"
        )
    return n


def norm(x, synchronized: bool = True):
    """Batch norm at the paper's momentum, its statistics over every replica's batch when `synchronized`."""
    return layers.BatchNormalization(momentum=MOMENTUM, synchronized=synchronized)(x)


def skip_excitation(source, target, init, sn: tuple[bool, str] = (False, "keras"), name: str = ""):
    """SLE: `source` average-pooled to 4×4, a 4×4 convolution to 1×1, LeakyReLU, a 1×1 convolution and a
    sigmoid give one gate per channel of `target`, which it multiplies (G gates a map with a lower
    resolution one, D with a higher resolution one)."""
    x = layers.AveragePooling2D(source.shape[1] // 4, name=f"{name}_pool")(source)
    width = target.shape[-1]
    x = spectral(layers.Conv2D(width, 4, use_bias=False, kernel_initializer=init), *sn)(x)
    x = spectral(layers.Conv2D(width, 1, use_bias=False, kernel_initializer=init), *sn)(
        layers.LeakyReLU(0.2)(x)
    )
    gate = layers.Activation("sigmoid", name=f"{name}_gate")(x)
    return layers.Multiply(name=name)([target, gate])


def up_block(x, width: int, init, conv=None):
    """Nearest 2× upsampling, a 3×3 convolution to 2·width, batch norm, GLU (the paper's UpBlock)."""
    conv = conv or (lambda layer: layer)
    x = layers.UpSampling2D(2, interpolation="nearest")(x)
    x = conv(layers.Conv2D(2 * width, 3, padding="same", use_bias=False, kernel_initializer=init))(x)
    return GLU()(norm(x))


def make_generator(p: TrainParams, shape: Shape) -> keras.Model:
    """z → image of `shape` in [-1, 1], float32, named "image"."""
    n_up = doublings(shape[0])
    init = initializer(p.init_stddev)
    width = lambda side: max(p.g_filters // 2 // (side // 4), 16)  # noqa: E731
    z = keras.Input((p.z_dim,), name="z")
    x = layers.Dense(4 * 4 * 2 * width(4), use_bias=False, kernel_initializer=init)(z)
    x = GLU()(norm(layers.Reshape((4, 4, 2 * width(4)))(x)))
    maps = {4: x}
    for i in range(1, n_up + 1):
        side = 4 * 2**i
        x = up_block(x, width(side), init)
        if side >= 4 * SLE_RATIO:
            x = skip_excitation(maps[side // SLE_RATIO], x, init, name=f"sle{side // SLE_RATIO}_{side}")
        maps[side] = x
    x = layers.Conv2D(shape[2], 3, padding="same", use_bias=p.use_bias, kernel_initializer=init)(x)
    image = layers.Activation("tanh", dtype="float32", name="image")(x)
    return keras.Model(z, image, name="generator")


def down_block(x, width: int, init, sn: tuple[bool, str]):
    """The paper's DownBlock: a strided 4×4 convolution, batch norm, LeakyReLU."""
    conv = layers.Conv2D(width, 4, strides=2, padding="same", use_bias=False, kernel_initializer=init)
    return layers.LeakyReLU(0.2)(norm(spectral(conv, *sn)(x)))


def decoder(in_shape: tuple[int, int, int], side: int, width: int, channels: int, p: TrainParams, name: str):
    """The paper's SimpleDecoder: up-blocks from an 8×8 map to `side`, a 3×3 convolution, tanh."""
    init, sn = initializer(p.init_stddev), (p.spectral_norm, p.sn_form)
    features = keras.Input(in_shape, name="features")
    x = features
    while x.shape[1] < side:
        x = up_block(x, width, init, conv=lambda layer: spectral(layer, *sn))
    conv = layers.Conv2D(channels, 3, padding="same", use_bias=p.use_bias, kernel_initializer=init)
    out = layers.Activation("tanh", dtype="float32", name="reconstruction")(spectral(conv, *sn)(x))
    return keras.Model(features, out, name=name)


def make_trunk(p: TrainParams, shape: Shape) -> keras.Model:
    """image → [logit, D's 8×8 map, D's 16×16 map]."""
    n_down = doublings(shape[0])
    init, sn = initializer(p.init_stddev), (p.spectral_norm, p.sn_form)
    width = lambda side: min(p.d_filters * (shape[0] // 2) // side, 8 * p.d_filters)  # noqa: E731
    image = keras.Input(shape, name="image")
    stem = layers.Conv2D(
        max(width(shape[0]), 8), 3, padding="same", use_bias=p.use_bias, kernel_initializer=init
    )
    x = layers.LeakyReLU(0.2)(spectral(stem, *sn)(image))
    maps = {shape[0]: x}
    for i in range(1, n_down + 1):
        side = shape[0] // 2**i
        x = down_block(x, width(side), init, sn)
        if side * SLE_RATIO in maps:
            x = skip_excitation(maps[side * SLE_RATIO], x, init, sn, name=f"sle{side * SLE_RATIO}_{side}")
        maps[side] = x
    head = spectral(layers.Conv2D(width(4), 1, use_bias=False, kernel_initializer=init), *sn)
    x = layers.LeakyReLU(0.2)(norm(head(x)))
    x = spectral(layers.Conv2D(1, 4, use_bias=p.use_bias, kernel_initializer=init), *sn)(x)
    logit = layers.Activation("linear", dtype="float32", name="logit")(layers.Flatten()(x))
    return keras.Model(image, [logit, maps[8], maps[16]], name="trunk")


def quadrant(x: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """Each image's quarter `index` (0 top left, 1 top right, 2 bottom left, 3 bottom right) of a batch of
    square maps."""
    h = x.shape[1] // 2
    quarters = tf.stack([x[:, :h, :h], x[:, :h, h:], x[:, h:, :h], x[:, h:, h:]], axis=1)
    return tf.gather(quarters, tf.cast(index, tf.int32), axis=1, batch_dims=1)


class Discriminator(keras.Model):
    """FastGAN's D: `discriminator(images)` gives one logit per image, as every D of this package;
    `reconstruct` also gives its decoders' reconstructions of the real images, for the train step.

    Images of the crop side are average-pooled to the working side first (train.resolution)."""

    def __init__(self, p: TrainParams, shape: Shape, working: Shape, **kwargs):
        super().__init__(name="discriminator", **kwargs)
        factor = shape[0] // working[0]
        self.shrink = layers.AveragePooling2D(factor, name="shrink") if factor > 1 else layers.Identity()
        self.trunk = make_trunk(p, working)
        _, whole_map, part_map = self.trunk.outputs
        half, channels = working[0] // 2, working[2]
        self.whole = decoder(tuple(whole_map.shape[1:]), half, p.d_filters // 2, channels, p, "decode_whole")
        part_shape = (8, 8, part_map.shape[-1])
        self.part = decoder(part_shape, half, p.d_filters // 2, channels, p, "decode_part")
        self.built = True

    def call(self, images, training=None):
        return self.trunk(self.shrink(images), training=training)[0]

    def reconstruct(self, images, n_real, index, training=None):
        """Logits of all `images`, and for the first `n_real` (the real ones): the whole image at half the
        working side decoded from D's 8×8 map, the quarter `index` (per image, see `quadrant`) decoded from
        the matching quarter of D's 16×16 map, and the working-side images they reconstruct."""
        seen = self.shrink(images)
        logit, whole_map, part_map = self.trunk(seen, training=training)
        whole = self.whole(whole_map[:n_real], training=training)
        part = self.part(quadrant(part_map[:n_real], index), training=training)
        return logit, whole, part, seen[:n_real]
