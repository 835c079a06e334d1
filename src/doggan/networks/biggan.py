"""BigGAN (Brock et al., 2019) laid out as BigGAN-PyTorch's `arch[64]`, sized from the image side.

G: hierarchical z (one chunk for the first linear layer and one per block) and, when conditional, a
shared class embedding of EMBED_DIM (fixed) joined to every block's chunk; residual up-blocks whose
batch norms take their gains and biases from that vector; self-attention at side `train.attention`.
D: residual down-blocks, the same attention, ReLU, global sum pooling, a linear logit plus the
projection term embed(y)·h when conditional.

Params read: `g_filters` and `d_filters` are BigGAN's G_ch and D_ch (the 2019 winners used 24-64);
`spectral_norm` normalizes every convolution and linear layer of both networks (the shared embedding
excepted, as in BigGAN), in the form `sn_form`; `use_bias` gives the convolutions and linear layers
their biases; `attention` (0 = none); `z_dim`. Weights are always orthogonally initialised (BigGAN's
init), whatever `init_stddev`; dropout is not used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
from keras import layers

from doggan.networks.attention import SelfAttention
from doggan.networks.blocks import HierarchicalBatchNorm, upsampling_plan
from doggan.networks.spectral import spectral

if TYPE_CHECKING:
    from doggan.params import TrainParams

Shape = tuple[int, int, int]
EMBED_DIM = 128  # the shared class embedding's size, as BigGAN's and the 5th place's
MAX_WIDTH = 16  # widest block, in multiples of ch


def conv(width: int, kernel: int, p: TrainParams) -> layers.Layer:
    """A same-size convolution, orthogonally initialised, spectrally normalized when asked."""
    layer = layers.Conv2D(width, kernel, padding="same", use_bias=p.use_bias, kernel_initializer="orthogonal")
    return spectral(layer, p.spectral_norm, p.sn_form)


def dense(units: int, p: TrainParams, use_bias: bool | None = None) -> layers.Layer:
    """A linear layer, orthogonally initialised, spectrally normalized when asked."""
    bias = p.use_bias if use_bias is None else use_bias
    return spectral(
        layers.Dense(units, use_bias=bias, kernel_initializer="orthogonal"), p.spectral_norm, p.sn_form
    )


def z_chunks(z_dim: int, n: int) -> list[tuple[int, int]]:
    """(start, end) of `n` near-equal consecutive slices of z: BigGAN's hierarchical z."""
    if z_dim < n:
        raise ValueError(
            f"BigGAN splits z into {n} chunks (one per block and one more): z_dim {z_dim} is too small"
        )
    sizes = [z_dim // n + (i < z_dim % n) for i in range(n)]
    bounds = [sum(sizes[:i]) for i in range(n + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def up_block(x, cond, width: int, p: TrainParams, name: str):
    """CBN → ReLU → 2× nearest upsample → 3×3 conv → CBN → ReLU → 3×3 conv, plus an upsampled 1×1-conv
    shortcut (conv before upsampling: the same result for a 1×1 conv, on a quarter of the pixels)."""
    h = HierarchicalBatchNorm(p.spectral_norm, sn_form=p.sn_form, name=f"{name}_cbn1")([x, cond])
    h = conv(width, 3, p)(layers.UpSampling2D(2)(layers.ReLU()(h)))
    h = HierarchicalBatchNorm(p.spectral_norm, sn_form=p.sn_form, name=f"{name}_cbn2")([h, cond])
    h = conv(width, 3, p)(layers.ReLU()(h))
    shortcut = layers.UpSampling2D(2)(conv(width, 1, p)(x))
    return layers.Add(name=f"{name}_out")([h, shortcut])


def make_generator(p: TrainParams, shape: Shape, n_classes: int = 0) -> keras.Model:
    """z (or [z, label] when `n_classes`) → image of `shape` in [-1, 1], float32, named "image".

    The blocks' output widths are 16·ch, 8·ch, ... (ch = g_filters), one block per doubling from 4×4
    (32 px: 3 blocks, 64: 4, 128: 5).
    """
    start, n_up = upsampling_plan(shape[0])
    ch = p.g_filters
    z = keras.Input((p.z_dim,), name="z")
    chunks = [z[:, a:b] for a, b in z_chunks(p.z_dim, n_up + 1)]
    label = keras.Input((), dtype="int32", name="label") if n_classes else None
    if n_classes:
        shared = layers.Embedding(n_classes, EMBED_DIM, embeddings_initializer="orthogonal", name="shared")
        embedded = shared(label)
    x = dense(start * start * MAX_WIDTH * ch, p)(chunks[0])
    x = layers.Reshape((start, start, MAX_WIDTH * ch))(x)
    side = start
    for i in range(n_up):
        cond = layers.Concatenate()([chunks[i + 1], embedded]) if n_classes else chunks[i + 1]
        x = up_block(x, cond, MAX_WIDTH * ch // 2**i, p, f"block{i}")
        side *= 2
        if side == p.attention:
            x = SelfAttention(p.spectral_norm, p.sn_form, name=f"attention{side}")(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True)(x)
    x = conv(shape[2], 3, p)(layers.ReLU()(x))
    image = layers.Activation("tanh", dtype="float32", name="image")(x)
    return keras.Model([z, label] if n_classes else z, image, name="generator")


def down_block(x, width: int, p: TrainParams, first: bool, down: bool):
    """(ReLU, except in the first block) → 3×3 conv → ReLU → 3×3 conv → 2× avg pool, plus a shortcut:
    1×1 conv (after the pooling, which commutes with it) when the width or the side changes."""
    h = x if first else layers.ReLU()(x)
    h = conv(width, 3, p)(layers.ReLU()(conv(width, 3, p)(h)))
    shortcut = x
    if down:
        h, shortcut = layers.AveragePooling2D(2)(h), layers.AveragePooling2D(2)(x)
    if down or x.shape[-1] != width:
        shortcut = conv(width, 1, p)(shortcut)
    return layers.Add()([h, shortcut])


def make_discriminator(p: TrainParams, shape: Shape, n_classes: int = 0) -> keras.Model:
    """image (or [image, label] when `n_classes`) → one float32 logit per example, named "logit".

    Widths ch, 2·ch, 4·ch, 8·ch, 16·ch (ch = d_filters, capped at 16·ch): one halving block per doubling
    of G, then one block at G's starting side (64 px: 5 blocks down to 4×4).
    """
    start, n_down = upsampling_plan(shape[0])
    ch = p.d_filters
    image = keras.Input(shape, name="image")
    x, side = image, shape[0]
    for i in range(n_down + 1):
        down = i < n_down
        x = down_block(x, ch * min(2**i, MAX_WIDTH), p, first=i == 0, down=down)
        side = side // 2 if down else side
        if down and side == p.attention:
            x = SelfAttention(p.spectral_norm, p.sn_form, name=f"attention{side}")(x)
    x = layers.ReLU()(x)
    features = layers.Rescaling(float(side * side))(layers.GlobalAveragePooling2D()(x))
    logit = dense(1, p)(features)
    inputs = image
    if n_classes:
        label = keras.Input((), dtype="int32", name="label")
        one_hot = layers.CategoryEncoding(n_classes, output_mode="one_hot")(label)
        embedded = dense(features.shape[-1], p, use_bias=False)(one_hot)
        logit = layers.Add()([logit, layers.Dot(axes=1)([embedded, features])])
        inputs = [image, label]
    logit = layers.Activation("linear", dtype="float32", name="logit")(logit)
    return keras.Model(inputs, logit, name="discriminator")
