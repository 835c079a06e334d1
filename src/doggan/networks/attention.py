"""SAGAN self-attention (Zhang et al., 2019) as BigGAN uses it: every position attends to a 2×-max-pooled
grid of keys, and a learned gain that starts at 0 blends the result into the input."""

from __future__ import annotations

import keras
from keras import layers, ops

from doggan.networks.spectral import spectral


@keras.saving.register_keras_serializable(package="doggan")
class SelfAttention(layers.Layer):
    """x + gamma · o(softmax(f(x) · pool(g(x))ᵀ) · pool(h(x))), with 1×1 convolutions f, g (C/8 channels),
    h (C/2) and o (back to C), spectrally normalized (in form `sn_form`) when `spectral_norm`; gamma
    starts at 0, so a new layer passes its input through unchanged."""

    def __init__(self, spectral_norm: bool = True, sn_form: str = "keras", **kwargs):
        super().__init__(**kwargs)
        self.spectral_norm, self.sn_form = spectral_norm, sn_form

    def _conv(self, width: int, name: str) -> layers.Layer:
        conv = layers.Conv2D(width, 1, use_bias=False, kernel_initializer="orthogonal", name=name)
        return spectral(conv, self.spectral_norm, self.sn_form)

    def build(self, input_shape):
        channels = input_shape[-1]
        values = max(channels // 2, 1)
        self.query = self._conv(max(channels // 8, 1), "query")
        self.key = self._conv(max(channels // 8, 1), "key")
        self.value = self._conv(values, "value")
        self.out = self._conv(channels, "out")
        for conv in (self.query, self.key, self.value):
            conv.build(input_shape)
        self.out.build((*input_shape[:-1], values))
        self.gamma = self.add_weight(shape=(), initializer="zeros", name="gamma")

    def call(self, x, training=None):
        height, width = x.shape[1], x.shape[2]
        pooled = (height // 2) * (width // 2)
        query = self.query(x, training=training)
        query = ops.reshape(query, (-1, height * width, query.shape[-1]))
        key = ops.max_pool(self.key(x, training=training), 2, 2)
        key = ops.reshape(key, (-1, pooled, key.shape[-1]))
        value = ops.max_pool(self.value(x, training=training), 2, 2)
        value = ops.reshape(value, (-1, pooled, value.shape[-1]))
        scores = ops.matmul(query, ops.transpose(key, (0, 2, 1)))
        weights = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), value.dtype)
        attended = ops.reshape(ops.matmul(weights, value), (-1, height, width, value.shape[-1]))
        return x + ops.cast(self.gamma, x.dtype) * self.out(attended, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "spectral_norm": self.spectral_norm, "sn_form": self.sn_form}
