"""FastGAN's reconstruction loss: zero when the decoders reconstruct exactly, a hand-computed value on a
small case, and training steps under MirroredStrategy (several per call) that move D's decoders, which
only this loss reaches, and checkpoint them; the train stage runs FastGAN through and its generator
reloads."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import prepare, tiny_params

from doggan.output import critic, sampling
from doggan.params import AugmentParams
from doggan.training import reconstruction, state
from doggan.training.calls import make_train_call
from doggan.training.inputs import train_dataset

SIDE = (16, 16, 3)


@pytest.fixture
def prepared(tmp_path):
    """The shared crops and policy at 16 px, the smallest side FastGAN draws."""
    return prepare(tmp_path, side=16)


def seen_images() -> np.ndarray:
    """Two 4×4 one-channel images 0..15 and 16..31."""
    return np.arange(32, dtype=np.float32).reshape(2, 4, 4, 1)


def test_a_perfect_reconstruction_costs_nothing():
    seen = seen_images()
    whole = seen.reshape(2, 2, 2, 2, 2, 1).mean(axis=(2, 4))  # seen average-pooled by 2
    index = np.array([3, 0])
    part = np.stack([seen[0, 2:, 2:], seen[1, :2, :2]])
    loss = reconstruction.reconstruction_loss(whole, part, seen, tf.constant(index)).numpy()
    np.testing.assert_allclose(loss, [0.0, 0.0], atol=1e-6)


def test_the_loss_is_the_mean_absolute_errors_of_whole_and_quarter_summed():
    seen = seen_images()
    whole = np.zeros((2, 2, 2, 1), np.float32)
    part = np.ones((2, 2, 2, 1), np.float32)
    # image 0: pooled 2.5, 4.5, 10.5, 12.5 → mean |0 - x| = 7.5; quarter 1 (top right) 2, 3, 6, 7 → |1 - x|
    # mean (1 + 2 + 5 + 6) / 4 = 3.5. Image 1: pooled + 16 → 23.5; quarter 2 (bottom left) 24, 25, 28, 29
    # → (23 + 24 + 27 + 28) / 4 = 25.5
    loss = reconstruction.reconstruction_loss(whole, part, seen, tf.constant([1, 2])).numpy()
    np.testing.assert_allclose(loss, [7.5 + 3.5, 23.5 + 25.5], rtol=1e-6)


def test_steps_under_mirrored_strategy_train_the_decoders_and_checkpoint_them(tmp_path):
    params = tiny_params(architecture="fastgan", steps_per_call=3, spectral_norm=True, loss="hinge")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        gan = state.build_gan(SIDE, params, 100)
    d = gan.discriminator
    decoders = [v.numpy() for v in d.whole.trainable_variables + d.part.trainable_variables]
    images = np.random.default_rng(0).integers(0, 256, (32, *SIDE), dtype=np.uint8)
    dataset = train_dataset(images, np.zeros(32, np.int32), AugmentParams(flip=False), params, 0)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    call = make_train_call(strategy, gan, params, diff="translation,cutout")
    done, totals, _ = call(iterator, tf.constant(3))
    assert int(done) == 3 and int(gan.step.numpy()) == 3
    assert all(np.isfinite(float(v)) for v in totals.values())
    moved = [v.numpy() for v in d.whole.trainable_variables + d.part.trainable_variables]
    assert all(np.abs(a - b).max() > 0 for a, b in zip(decoders, moved, strict=True))
    logits = d(tf.zeros((2, *SIDE)))
    assert tuple(logits.shape) == (2, 1)  # still one logit per image outside the step
    path = gan.checkpoint().write(str(tmp_path / "ckpt"))
    with strategy.scope():
        resumed = state.build_gan(SIDE, params, 100)
    resumed.checkpoint().read(path).assert_existing_objects_matched()
    again = resumed.discriminator.whole.trainable_variables + resumed.discriminator.part.trainable_variables
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(moved, again, strict=True))


def test_fastgan_trains_through_the_stage_and_its_generator_reloads(prepared, run_train):
    params = tiny_params(architecture="fastgan", epochs=1, steps_per_call=2, spectral_norm=False)
    out, summary = run_train(prepared, params)
    assert summary["steps"] == 4
    gen = sampling.load_generator(out / "models")
    images = next(sampling.generate(gen, 2, batch_size=2))
    assert images.shape == (2, 16, 16, 3)
    assert np.isfinite(critic.score(critic.load_critic(out / "models", gen), images, None)).all()
