"""Generators and discriminators, one module per architecture; `train.architecture` picks one.

Every generator ends in tanh (images in [-1, 1]) and every discriminator in one float32 logit.
Importing this package registers the custom layers that saved generators use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np
from keras import layers

from doggan.errors import DogganError
from doggan.networks import biggan, dcgan, dcgan_dogs, dcgan_faces, dcgan_mnist, fastgan, mlp
from doggan.networks.attention import SelfAttention
from doggan.networks.blocks import ConditionalBatchNorm, Enlarge, HierarchicalBatchNorm
from doggan.networks.fastgan import GLU
from doggan.networks.spectral import SpectralNorm

if TYPE_CHECKING:
    from doggan.params import TrainParams

__all__ = [
    "ConditionalBatchNorm",
    "Enlarge",
    "GLU",
    "HierarchicalBatchNorm",
    "SelfAttention",
    "SpectralNorm",
    "as_drawn",
    "make_discriminator",
    "make_generator",
]

Shape = tuple[int, int, int]
# The classic recipes' networks: unconditional, sized by the params their presets set.
CLASSIC = {"mlp": mlp, "dcgan-mnist": dcgan_mnist, "dcgan-faces": dcgan_faces, "dcgan-dogs": dcgan_dogs}


def working_shape(p: TrainParams, shape: Shape) -> Shape:
    """The shape G draws and D judges at: `shape`, or its side brought down to train.resolution."""
    side = p.resolution
    if not side:
        return shape
    if side > shape[0] or shape[0] % side or shape[0] != shape[1]:
        raise DogganError(
            f"train.resolution {p.resolution} must divide the square crops' side ({shape[0]}x{shape[1]}), "
            "or be 0 (train at the crops' size)"
        )
    return (side, side, shape[2])


def as_drawn(images: np.ndarray, p: TrainParams) -> np.ndarray:
    """Real uint8 crops as D sees G's images: with train.resolution below their side, average-pooled to
    it and enlarged bilinearly back, as the generator enlarges its drawings.

    D pools both alike, and pooling an enlarged image blurs it, so against the crops pooled once G would
    learn to sharpen its drawings to make up for that blur: a checkerboard of dots once enlarged. Against
    crops that went the same way, G learns to draw the pooled crops themselves."""
    side = working_shape(p, images.shape[1:])[0]
    if side == images.shape[1]:
        return images
    factor = images.shape[1] // side
    pool, enlarge = layers.AveragePooling2D(factor), Enlarge(factor)  # G's own enlargement, when sampling
    out = np.empty_like(images)
    for start in range(0, len(images), 1024):  # in chunks: 22,125 crops as float32 would take 1 GB
        enlarged = enlarge(pool(images[start : start + 1024].astype(np.float32)))
        out[start : start + 1024] = np.clip(np.rint(keras.ops.convert_to_numpy(enlarged)), 0, 255)
    return out


def make_generator(p: TrainParams, shape: Shape, n_classes: int = 0) -> keras.Model:
    """The generator of `p.architecture` for images of `shape`, class-conditional when `n_classes`.

    With train.resolution below the side, G draws at that side and its images are enlarged bilinearly to
    `shape` inside the model, so every user of the generator gets images of `shape`; while training, by
    nearest instead with train.enlarge_fake: nearest (`blocks.Enlarge`)."""
    small = working_shape(p, shape)
    g = _generator(p, small, n_classes)
    if small == shape:
        return g
    up = Enlarge(shape[0] // small[0], p.enlarge_fake == "nearest", dtype="float32", name="enlarge")
    return keras.Model(g.inputs, up(g.outputs[0]), name="generator")


def make_discriminator(p: TrainParams, shape: Shape, n_classes: int = 0) -> keras.Model:
    """The discriminator of `p.architecture`, with a projection term for the class when `n_classes`.

    With train.resolution below the side, D average-pools its `shape` inputs, real and fake alike, down
    to that side first: most of a step's work is D's, and it shrinks with the square of the side. FastGAN's
    D pools inside its own model, which also holds its reconstruction decoders (`fastgan.Discriminator`)."""
    small = working_shape(p, shape)
    if p.architecture == "fastgan":
        return fastgan.Discriminator(p, shape, small)
    d = _discriminator(p, small, n_classes)
    if small == shape:
        return d
    image = keras.Input(shape, name="image")
    pooled = layers.AveragePooling2D(shape[0] // small[0], name="shrink")(image)
    if not n_classes:
        return keras.Model(image, d(pooled), name="discriminator")
    label = keras.Input((), dtype="int32", name="label")
    return keras.Model([image, label], d([pooled, label]), name="discriminator")


def _generator(p: TrainParams, shape: Shape, n_classes: int) -> keras.Model:
    if p.architecture in CLASSIC:
        return CLASSIC[p.architecture].make_generator(p.z_dim, shape, p)
    if p.architecture == "biggan":
        return biggan.make_generator(p, shape, n_classes)
    if p.architecture == "fastgan":
        return fastgan.make_generator(p, shape)
    return dcgan.make_generator(
        p.z_dim, shape, p.g_filters, n_classes, p.g_dropout, p.init_stddev, p.use_bias, p.g_upsample
    )


def _discriminator(p: TrainParams, shape: Shape, n_classes: int) -> keras.Model:
    if p.architecture in CLASSIC:
        return CLASSIC[p.architecture].make_discriminator(shape, p)
    if p.architecture == "biggan":
        return biggan.make_discriminator(p, shape, n_classes)
    return dcgan.make_discriminator(
        shape, p.d_filters, p.spectral_norm, n_classes, p.d_dropout, p.init_stddev, p.use_bias, p.sn_form
    )
