"""GAN losses against their formulas, and label smoothing/noise against their ranges."""

import numpy as np
import pytest
import tensorflow as tf

from doggan.training import losses


def bce(t, x):
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


REAL = np.array([2.0, -0.5, 0.3], np.float32)
FAKE = np.array([-1.0, 0.7, 0.1], np.float32)
RT = np.array([0.9, 0.8, 1.0], np.float32)
FT = np.array([0.1, 0.0, 0.2], np.float32)


@pytest.mark.parametrize(
    "kind, expected_d, expected_g",
    [
        ("gan", bce(RT, REAL) + bce(FT, FAKE), bce(1.0, FAKE)),
        ("hinge", np.maximum(0, 1 - REAL) + np.maximum(0, 1 + FAKE), -FAKE),
        (
            "rasgan",
            bce(RT, REAL - FAKE.mean()) + bce(FT, FAKE - REAL.mean()),
            bce(1.0, FAKE - REAL.mean()) + bce(0.0, REAL - FAKE.mean()),
        ),
        (
            "ralsgan",
            (REAL - FAKE.mean() - 1) ** 2 + (FAKE - REAL.mean() + 1) ** 2,
            (FAKE - REAL.mean() - 1) ** 2 + (REAL - FAKE.mean() + 1) ** 2,
        ),
        (
            "rahinge",
            np.maximum(0, 1 - (REAL - FAKE.mean())) + np.maximum(0, 1 + (FAKE - REAL.mean())),
            np.maximum(0, 1 - (FAKE - REAL.mean())) + np.maximum(0, 1 + (REAL - FAKE.mean())),
        ),
    ],
)
def test_losses_match_their_formulas(kind, expected_d, expected_g):
    d = losses.discriminator_loss(
        kind, tf.constant(REAL), tf.constant(FAKE), tf.constant(RT), tf.constant(FT)
    )
    g = losses.generator_loss(kind, tf.constant(REAL), tf.constant(FAKE))
    np.testing.assert_allclose(d.numpy(), expected_d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g.numpy(), expected_g, rtol=1e-5, atol=1e-6)


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="unknown loss"):
        losses.generator_loss("wgan", tf.zeros(2), tf.zeros(2))


def test_smoothed_targets_stay_in_their_ranges_and_flip_the_asked_fraction():
    n, noise = 200_000, 0.05
    rng = np.random.default_rng(0)
    uniform = tf.constant(rng.uniform(size=(2, n)), tf.float32)
    flip = tf.constant(rng.uniform(size=(2, n)) < noise)
    real, fake = losses.smoothed_targets(uniform, flip, (0.7, 1.0), (0.0, 0.3))
    real, fake = real.numpy(), fake.numpy()
    real_kept, fake_kept = real[~flip.numpy()[0]], fake[~flip.numpy()[1]]
    assert real_kept.min() >= 0.7 and real_kept.max() <= 1.0
    assert fake_kept.min() >= 0.0 and fake_kept.max() <= 0.3
    assert abs(real_kept.mean() - 0.85) < 0.005 and abs(real_kept.max() - 1.0) < 0.001
    flipped = np.mean(real < 0.5), np.mean(fake > 0.5)
    assert all(abs(f - noise) < 0.003 for f in flipped)
    assert real[real < 0.5].max() <= 0.3 and fake[fake > 0.5].min() >= 0.7


def test_lecam_penalty_on_hand_values():
    # α_R = 0.5, α_F = -0.2: reals above α_F and fakes below α_R are penalised by the squared distance
    real = tf.constant([1.0, -0.5, -0.2])
    fake = tf.constant([0.8, 0.0, -1.5])
    got = losses.lecam_penalty(real, fake, tf.constant(0.5), tf.constant(-0.2)).numpy()
    np.testing.assert_allclose(got, [1.2**2 + 0.0, 0.0 + 0.5**2, 0.0 + 2.0**2], rtol=1e-6)


def test_top_k_weights_keep_the_highest_scored_share_and_average_over_it():
    fake = tf.constant([3.0, -1.0, 2.0, 0.0])
    np.testing.assert_allclose(losses.top_k_weights(fake, tf.constant(0.5)).numpy(), [2, 0, 2, 0])
    # ceil(0.3 x 4) = 2 kept; a share below one fake still keeps the best one
    np.testing.assert_allclose(losses.top_k_weights(fake, tf.constant(0.3)).numpy(), [2, 0, 2, 0])
    np.testing.assert_allclose(losses.top_k_weights(fake, tf.constant(0.01)).numpy(), [4, 0, 0, 0])
    np.testing.assert_allclose(losses.top_k_weights(fake, tf.constant(1.0)).numpy(), [1, 1, 1, 1])


def test_top_k_share_starts_whole_and_decays_each_epoch_to_its_floor():
    assert losses.top_k_fraction(0.5, 0.99, 1) == 1.0
    assert losses.top_k_fraction(0.5, 0.99, 2) == pytest.approx(0.99)
    assert losses.top_k_fraction(0.5, 0.99, 11) == pytest.approx(0.99**10)
    assert losses.top_k_fraction(0.5, 0.99, 500) == 0.5
