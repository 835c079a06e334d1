"""Spectral normalization in the papers' form: the gradient flows through W / σ(W) (checked against
finite differences of the loss with σ the exact largest singular value), and W itself is never
overwritten, where Keras' wrapper overwrites it and leaves σ out of the gradient."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from doggan import networks
from doggan.networks.spectral import SpectralNorm, spectral
from doggan.params import TrainParams

RNG = np.random.default_rng(0)


def make(kind: str):
    """A tiny Dense or Conv2D layer and an input for it."""
    if kind == "dense":
        return keras.layers.Dense(3), RNG.normal(size=(5, 4)).astype("float32")
    return keras.layers.Conv2D(3, 3, padding="same"), RNG.normal(size=(2, 5, 5, 2)).astype("float32")


def loss_of(layer, kernel: np.ndarray, bias: np.ndarray, x: np.ndarray, weights: np.ndarray) -> float:
    """Σ weights · layer(x) for `kernel` divided by its exact largest singular value, in float64."""
    sigma = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
    w = tf.constant(kernel / sigma)
    x = tf.constant(x, tf.float64)
    out = tf.matmul(x, w) if kernel.ndim == 2 else tf.nn.conv2d(x, w, 1, "SAME")
    return float(tf.reduce_sum((out + bias) * weights))


def numeric_gradient(layer, kernel, bias, x, weights, h=1e-4) -> np.ndarray:
    grad = np.zeros_like(kernel)
    for index in np.ndindex(kernel.shape):
        step = np.zeros_like(kernel)
        step[index] = h
        grad[index] = (
            loss_of(layer, kernel + step, bias, x, weights) - loss_of(layer, kernel - step, bias, x, weights)
        ) / (2 * h)
    return grad


def gradient(form: str, kind: str):
    """(the wrapper's gradient of the loss with respect to W, the finite differences of the papers' loss)
    after enough training calls for the power iteration to converge."""
    keras.utils.set_random_seed(1)
    layer, x = make(kind)
    wrapped = spectral(layer, True, form)
    wrapped(x, training=False)
    layer.bias.assign(RNG.normal(size=3).astype("float32"))
    if form == "paper":
        for _ in range(60):  # the power iteration converges; W stays as it is
            wrapped(x, training=True)
    weights = RNG.normal(size=wrapped(x).shape)
    kernel = layer.kernel.numpy().astype(np.float64)
    expected = numeric_gradient(layer, kernel, layer.bias.numpy().astype(np.float64), x, weights)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(wrapped(x, training=True) * tf.constant(weights, tf.float32))
    return tape.gradient(loss, layer.kernel).numpy(), expected


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_the_papers_gradient_flows_through_sigma(kind):
    got, expected = gradient("paper", kind)
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-4 * np.abs(expected).max())


def test_keras_form_leaves_sigma_out_of_the_gradient():
    got, expected = gradient("keras", "dense")
    assert np.abs(got - expected).max() > 0.05 * np.abs(expected).max()


def test_a_training_call_keeps_the_kernel_and_updates_u_while_keras_overwrites_it():
    x = RNG.normal(size=(4, 6)).astype("float32")
    for form in ("paper", "keras"):
        wrapped = spectral(
            keras.layers.Dense(3, kernel_initializer=keras.initializers.Constant(0.7)), True, form
        )
        wrapped(x)
        before = wrapped.layer.kernel.numpy()
        u = wrapped.u.numpy() if form == "paper" else wrapped.vector_u.numpy()
        out = wrapped(x, training=True).numpy()
        kept = np.array_equal(wrapped.layer.kernel.numpy(), before)
        assert kept == (form == "paper")
        if form == "paper":
            assert not np.array_equal(wrapped.u.numpy(), u)
            sigma = np.linalg.svd(before, compute_uv=False)[0]
            np.testing.assert_allclose(out, x @ (before / sigma) + wrapped.layer.bias.numpy(), rtol=1e-5)
            np.testing.assert_array_equal(wrapped(x, training=False), wrapped(x, training=False))
    with pytest.raises(ValueError, match="form"):
        spectral(keras.layers.Dense(3), True, "other")


@pytest.mark.parametrize("architecture", ["dcgan", "biggan"])
def test_sn_form_paper_reaches_the_networks_and_saves(architecture, tmp_path):
    p = TrainParams(
        architecture=architecture, sn_form="paper", g_filters=8, d_filters=8, z_dim=8, attention=8
    )
    shape = (16, 16, 3)
    d = networks.make_discriminator(p, shape)
    models = [d] + ([networks.make_generator(p, shape)] if architecture == "biggan" else [])
    for model in models:
        found = [layer for layer in model._flatten_layers() if isinstance(layer, SpectralNorm)]
        keras_sn = [
            layer
            for layer in model._flatten_layers()
            if isinstance(layer, keras.layers.SpectralNormalization)
        ]
        assert found and not keras_sn
    if architecture == "biggan":
        g = models[1]
        g.save(tmp_path / "g.keras")
        z = RNG.normal(size=(2, 8)).astype("float32")
        np.testing.assert_allclose(keras.models.load_model(tmp_path / "g.keras")(z), g(z), atol=1e-5)
