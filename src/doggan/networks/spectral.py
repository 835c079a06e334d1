"""Spectral normalization as SNGAN (Miyato et al., 2018) and BigGAN-PyTorch define it.

The layer keeps its own kernel W and computes with W / σ(W), σ estimated by a power iteration whose
vector u is a non-trainable weight: the gradient flows through σ to W, and the optimizer updates W
itself. Keras' `SpectralNormalization` instead overwrites the kernel with W / σ at every training call,
so its optimizer steps start from normalized weights and no gradient passes through σ
(`train.sn_form: keras`, the form this project used first).
"""

from __future__ import annotations

import keras
from keras import layers, ops

FORMS = ("keras", "paper")  # train.sn_form


@keras.saving.register_keras_serializable(package="doggan")
class SpectralNorm(layers.Wrapper):
    """Calls the wrapped layer (one with a `kernel`: Dense, Conv2D, Conv2DTranspose) with W / σ(W).

    Each call with training=True runs one power iteration and stores its u; every call, in training or
    not, divides by σ = vᵀ W u with u and v held constant for the gradient (SNGAN's estimate, whose
    gradient at convergence is the exact one of the largest singular value). W is never overwritten.
    """

    def build(self, input_shape=None):
        super().build(input_shape)
        if not hasattr(self.layer, "kernel"):
            raise ValueError(f"{type(self.layer).__name__} has no kernel to normalize")
        kernel = self.layer.kernel
        self.u = self.add_weight(
            shape=(1, kernel.shape[-1]),
            initializer=keras.initializers.RandomNormal(seed=keras.random.SeedGenerator()),
            trainable=False,
            name="u",
            dtype="float32",
        )

    def sigma(self, training: bool = False):
        """σ(W) as a float32 scalar, after one power iteration (stored in u when `training`)."""
        kernel = ops.cast(self.layer.kernel.value, "float32")
        w = ops.reshape(kernel, (-1, kernel.shape[-1]))
        v = _unit(ops.matmul(self.u.value, ops.transpose(w)))
        u = _unit(ops.matmul(v, w))
        u, v = ops.stop_gradient(u), ops.stop_gradient(v)
        if training:
            self.u.assign(u)
        return ops.sum(ops.matmul(v, w) * u)

    def call(self, inputs, training=False):
        kernel = self.layer.kernel
        normalized = ops.cast(kernel.value, "float32") / self.sigma(bool(training))
        with keras.StatelessScope(state_mapping=[(kernel, ops.cast(normalized, kernel.dtype))]):
            return self.layer(inputs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


def _unit(x, epsilon: float = 1e-12):
    """x divided by its L2 norm (a small epsilon keeps a zero vector finite)."""
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x)), epsilon))


def spectral(layer: layers.Layer, on: bool = True, form: str = "keras") -> layers.Layer:
    """The layer spectrally normalized in `form` (train.sn_form) when `on`, else the layer itself."""
    if not on:
        return layer
    if form == "paper":
        return SpectralNorm(layer)
    if form == "keras":
        return layers.SpectralNormalization(layer)
    raise ValueError(f"unknown spectral norm form {form!r}; expected one of {', '.join(FORMS)}")
