"""GAN losses as small pure functions of logits and targets, each returning a per-example loss.

Callers average them over the global batch (`tf.nn.compute_average_loss`), so the same numbers
come out on one replica or many.
"""

from __future__ import annotations

import tensorflow as tf


def smoothed_targets(
    uniform: tf.Tensor, flip: tf.Tensor, real_range: tuple[float, float], fake_range: tuple[float, float]
) -> tuple[tf.Tensor, tf.Tensor]:
    """Real and fake targets drawn from their ranges, then a fraction flipped (label noise).

    `uniform` is (2, B) in [0, 1) and places each target in its range; `flip` is (2, B) boolean.
    A flipped target takes the value the other class would have had at the same place.
    """
    (r_lo, r_hi), (f_lo, f_hi) = real_range, fake_range
    real = r_lo + (r_hi - r_lo) * uniform[0]
    fake = f_lo + (f_hi - f_lo) * uniform[1]
    real_flipped = f_lo + (f_hi - f_lo) * uniform[0]
    fake_flipped = r_lo + (r_hi - r_lo) * uniform[1]
    return tf.where(flip[0], real_flipped, real), tf.where(flip[1], fake_flipped, fake)


def _bce(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)


def discriminator_loss(
    kind: str, real: tf.Tensor, fake: tf.Tensor, real_targets: tf.Tensor, fake_targets: tf.Tensor
) -> tf.Tensor:
    """Per-example D loss for logits `real`, `fake` (B,); targets only matter for the BCE losses."""
    if kind == "gan":
        return _bce(real_targets, real) + _bce(fake_targets, fake)
    if kind == "hinge":
        return tf.nn.relu(1.0 - real) + tf.nn.relu(1.0 + fake)
    if kind == "rasgan":
        return _bce(real_targets, real - tf.reduce_mean(fake)) + _bce(
            fake_targets, fake - tf.reduce_mean(real)
        )
    if kind == "ralsgan":
        return tf.square(real - tf.reduce_mean(fake) - 1.0) + tf.square(fake - tf.reduce_mean(real) + 1.0)
    if kind == "rahinge":
        return tf.nn.relu(1.0 - (real - tf.reduce_mean(fake))) + tf.nn.relu(
            1.0 + (fake - tf.reduce_mean(real))
        )
    raise ValueError(f"unknown loss {kind!r}")


def lecam_penalty(
    real: tf.Tensor, fake: tf.Tensor, alpha_real: tf.Tensor, alpha_fake: tf.Tensor
) -> tf.Tensor:
    """LeCam regularization (Tseng et al. 2021), per example: ReLU(D(x) − α_F)² + ReLU(α_R − D(G(z)))²,
    α_R and α_F being moving averages of D's outputs on real and fake images. It keeps D's outputs on
    reals near its past outputs on fakes and the other way round, which bounds how far D can overfit."""
    return tf.square(tf.nn.relu(real - alpha_fake)) + tf.square(tf.nn.relu(alpha_real - fake))


def generator_loss(kind: str, real: tf.Tensor, fake: tf.Tensor) -> tf.Tensor:
    """Per-example G loss (non-saturating for gan; the relativistic ones use both logits)."""
    if kind == "gan":
        return _bce(tf.ones_like(fake), fake)
    if kind == "hinge":
        return -fake
    if kind == "rasgan":
        return _bce(tf.ones_like(fake), fake - tf.reduce_mean(real)) + _bce(
            tf.zeros_like(real), real - tf.reduce_mean(fake)
        )
    if kind == "ralsgan":
        return tf.square(fake - tf.reduce_mean(real) - 1.0) + tf.square(real - tf.reduce_mean(fake) + 1.0)
    if kind == "rahinge":
        return tf.nn.relu(1.0 - (fake - tf.reduce_mean(real))) + tf.nn.relu(
            1.0 + (real - tf.reduce_mean(fake))
        )
    raise ValueError(f"unknown loss {kind!r}")


def top_k_fraction(floor: float, decay: float, epoch: int) -> float:
    """Top-k training's share of the fakes G learns from in 1-based `epoch` (Sinha et al. 2020): all of
    them in the first, then decay**(epoch - 1), never below `floor`."""
    return max(floor, decay ** (epoch - 1))


def top_k_weights(fake: tf.Tensor, fraction: tf.Tensor) -> tf.Tensor:
    """Per-example weights of G's loss for top-k training: 1/share for the ceil(fraction × B) fakes of
    highest logit, 0 for the rest (share = the kept fraction of B), so averaging the weighted loss over
    the batch averages it over the kept fakes; the ones D finds least real give G no gradient."""
    n = tf.shape(fake)[0]
    k = tf.maximum(1, tf.cast(tf.math.ceil(fraction * tf.cast(n, tf.float32)), tf.int32))
    threshold = tf.math.top_k(fake, k).values[-1]
    kept = tf.cast(fake >= threshold, tf.float32)
    return kept * tf.cast(n, tf.float32) / tf.reduce_sum(kept)
