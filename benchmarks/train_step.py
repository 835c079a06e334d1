"""Images/s of doggan's distributed train step against a plain TensorFlow-tutorial loop.

Both train the same generator and discriminator on the same batch size, from in-memory data, on
whatever devices TensorFlow sees. The tutorial loop is `tf.function` with two gradient tapes and no
strategy; ours runs under MirroredStrategy with the distributed dataset and its per-step targets.
Measured for the default recipe (params.yaml's train section) and for BigGAN (unconditional, attention
at 32, ch = g_filters = d_filters, 32 by default as the 2019 winners').
Run: .venv/bin/python benchmarks/train_step.py [steps] [biggan ch]
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import doggan  # noqa: E402, F401  (first: it turns on oneDNN's CPU kernels before TensorFlow loads)

# isort: split
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from doggan import networks, params  # noqa: E402
from doggan.params import AugmentParams, TrainParams  # noqa: E402
from doggan.training.inputs import train_dataset  # noqa: E402
from doggan.training.loop import make_strategy  # noqa: E402
from doggan.training.state import build_gan  # noqa: E402
from doggan.training.step import make_train_step  # noqa: E402

SHAPE = (64, 64, 3)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_recipe() -> TrainParams:
    """params.yaml's train section: the recipe `dvc repro` trains."""
    return params.load(os.path.join(ROOT, "params.yaml")).train


def images(n: int = 512) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, *SHAPE), dtype=np.uint8)


def ours(params: TrainParams, data: np.ndarray):
    strategy = make_strategy(params.devices)
    with strategy.scope():
        gan = build_gan(SHAPE, params, 10_000)
    dataset = train_dataset(data, np.zeros(len(data), np.int32), AugmentParams(flip=False), params, 0)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    step = make_train_step(strategy, gan, params)
    return lambda: step(next(iterator))


def tutorial(params: TrainParams, data: np.ndarray):
    """The TF DCGAN tutorial's loop: two tapes, BCE from logits, D called on real and fake separately."""
    tf.keras.utils.set_random_seed(params.seed)
    g = networks.make_generator(params, SHAPE)
    d = networks.make_discriminator(params, SHAPE)
    g_opt = tf.keras.optimizers.Adam(params.lr_g, beta_1=params.beta_1)
    d_opt = tf.keras.optimizers.Adam(params.lr_d, beta_1=params.beta_1)
    bce = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    dataset = (
        tf.data.Dataset.from_tensor_slices(data)
        .cache()
        .shuffle(len(data))
        .repeat()
        .map(lambda x: tf.cast(x, tf.float32) / 127.5 - 1.0, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(params.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    iterator = iter(dataset)

    @tf.function
    def step(real):
        z = tf.random.normal([params.batch_size, params.z_dim])
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = g(z, training=True)
            real_out, fake_out = d(real, training=True), d(fake, training=True)
            g_loss = bce(tf.ones_like(fake_out), fake_out)
            d_loss = bce(tf.ones_like(real_out), real_out) + bce(tf.zeros_like(fake_out), fake_out)
        g_grads = g_tape.gradient(g_loss, g.trainable_variables)
        d_grads = d_tape.gradient(d_loss, d.trainable_variables)
        g_opt.apply_gradients(zip(g_grads, g.trainable_variables, strict=True))
        d_opt.apply_gradients(zip(d_grads, d.trainable_variables, strict=True))
        return d_loss, g_loss

    return lambda: step(next(iterator))


def images_per_s(step, batch_size: int, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        tf.nest.map_structure(lambda t: t.numpy(), step())
    began = time.perf_counter()
    for _ in range(steps):
        result = step()
    tf.nest.map_structure(lambda t: t.numpy(), result)
    return steps * batch_size / (time.perf_counter() - began)


def compare(name: str, params: TrainParams, data: np.ndarray, steps: int) -> float:
    """Best-of-2-rounds images/s of both loops on `params`' networks, printed; returns doggan / tutorial."""
    rounds = {"tutorial": [], "doggan": []}
    runs = {"tutorial": tutorial(params, data), "doggan": ours(params, data)}
    for _ in range(2):
        for loop, step in runs.items():
            rounds[loop].append(images_per_s(step, params.batch_size, steps))
    best = {loop: max(values) for loop, values in rounds.items()}
    print(
        f"{name}: batch {params.batch_size}, {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]}, g_filters {params.g_filters}, "
        f"d_filters {params.d_filters}, {steps} timed steps x 2 rounds (best round)"
    )
    for loop, value in best.items():
        print(f"{loop:>9}: {value:8.1f} images/s")
    ratio = best["doggan"] / best["tutorial"]
    print(f"ratio doggan / tutorial ({name}): {ratio:.3f}")
    return ratio


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    ch = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    data = images()
    compare("default", default_recipe(), data, steps)
    compare("biggan", TrainParams(architecture="biggan", g_filters=ch, d_filters=ch), data, steps)


if __name__ == "__main__":
    main()
