"""Generators and discriminators, one module per architecture; `train.architecture` picks one.

Every generator ends in tanh (images in [-1, 1]) and every discriminator in one float32 logit.
Importing this package registers the custom layers that saved generators use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras

from doggan.networks import biggan, dcgan, dcgan_dogs, dcgan_faces, dcgan_mnist, mlp
from doggan.networks.attention import SelfAttention
from doggan.networks.blocks import ConditionalBatchNorm, HierarchicalBatchNorm

if TYPE_CHECKING:
    from doggan.params import TrainParams

__all__ = [
    "ConditionalBatchNorm",
    "HierarchicalBatchNorm",
    "SelfAttention",
    "make_discriminator",
    "make_generator",
]

Shape = tuple[int, int, int]
# The classic recipes' networks: unconditional, sized by the params their presets set.
CLASSIC = {"mlp": mlp, "dcgan-mnist": dcgan_mnist, "dcgan-faces": dcgan_faces, "dcgan-dogs": dcgan_dogs}


def make_generator(p: TrainParams, shape: Shape, n_classes: int = 0) -> keras.Model:
    """The generator of `p.architecture` for images of `shape`, class-conditional when `n_classes`."""
    if p.architecture in CLASSIC:
        return CLASSIC[p.architecture].make_generator(p.z_dim, shape, p)
    if p.architecture == "biggan":
        return biggan.make_generator(p, shape, n_classes)
    return dcgan.make_generator(
        p.z_dim, shape, p.g_filters, n_classes, p.g_dropout, p.init_stddev, p.use_bias
    )


def make_discriminator(p: TrainParams, shape: Shape, n_classes: int = 0) -> keras.Model:
    """The discriminator of `p.architecture`, with a projection term for the class when `n_classes`."""
    if p.architecture in CLASSIC:
        return CLASSIC[p.architecture].make_discriminator(shape, p)
    if p.architecture == "biggan":
        return biggan.make_discriminator(p, shape, n_classes)
    return dcgan.make_discriminator(
        shape, p.d_filters, p.spectral_norm, n_classes, p.d_dropout, p.init_stddev, p.use_bias
    )
