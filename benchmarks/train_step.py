"""Images/s of doggan's distributed train step against a plain TensorFlow-tutorial loop, and the
overhead of each step's return to Python.

Both train the same generator and discriminator on the same batch size, from in-memory data, on
whatever devices TensorFlow sees. The tutorial loop is `tf.function` with two gradient tapes and no
strategy; ours is the train stage's compiled call (doggan.training.calls) under MirroredStrategy with
the distributed dataset and its per-step targets, its values read as the loop reads them. Measured for
the default recipe (params.yaml's train section: one step per call, and train.steps_per_call steps),
for BigGAN (unconditional, attention at 32, ch = g_filters = d_filters, 32 by default as the 2019
winners'), and for tiny MLP networks whose step is mostly overhead: the milliseconds per step of ours at
1 and 20 steps per call against the tutorial's step looped 20 times inside one `tf.function`.
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
from doggan.training.calls import make_train_call  # noqa: E402
from doggan.training.inputs import train_dataset  # noqa: E402
from doggan.training.loop import make_strategy  # noqa: E402
from doggan.training.state import build_gan  # noqa: E402

SHAPE = (64, 64, 3)
TINY_SHAPE = (8, 8, 1)
TINY = dict(architecture="mlp", batch_size=8, z_dim=8, g_filters=8, d_filters=32, spectral_norm=False)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_recipe() -> TrainParams:
    """params.yaml's train section: the recipe `dvc repro` trains."""
    return params.load(os.path.join(ROOT, "params.yaml")).train


def images(n: int = 512, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, *shape), dtype=np.uint8)


def ours(params: TrainParams, data: np.ndarray, steps_per_call: int = 1):
    """The train stage's call of `steps_per_call` steps, its values read as floats as the loop does."""
    shape = data.shape[1:]
    strategy = make_strategy(params.devices)
    with strategy.scope():
        gan = build_gan(shape, params, 10_000)
    dataset = train_dataset(data, np.zeros(len(data), np.int32), AugmentParams(flip=False), params, 0)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    call, n = make_train_call(strategy, gan, params), tf.constant(steps_per_call)

    def run():
        done, totals, _ = call(iterator, n)
        return int(done), {k: float(v) for k, v in totals.items()}

    return run


def tutorial(params: TrainParams, data: np.ndarray, steps_per_call: int = 1):
    """The TF DCGAN tutorial's loop: two tapes, BCE from logits, D called on real and fake separately;
    with `steps_per_call` > 1, that many steps looped inside one `tf.function`."""
    shape = data.shape[1:]
    tf.keras.utils.set_random_seed(params.seed)
    g = networks.make_generator(params, shape)
    d = networks.make_discriminator(params, shape)
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

    @tf.function
    def steps():
        losses = step(next(iterator))
        for _ in tf.range(steps_per_call - 1):
            losses = step(next(iterator))
        return losses

    return steps


def images_per_s(call, batch_size: int, steps: int, steps_per_call: int = 1, warmup: int = 3) -> float:
    """Images/s over about `steps` steps of `call`, which takes `steps_per_call` steps at a time."""
    for _ in range(warmup):
        tf.nest.map_structure(np.asarray, call())
    calls = max(1, steps // steps_per_call)
    began = time.perf_counter()
    for _ in range(calls):
        result = call()
    tf.nest.map_structure(np.asarray, result)
    return calls * steps_per_call * batch_size / (time.perf_counter() - began)


def best_of(runs: dict, batch_size: int, steps: int, rounds: int = 2) -> dict:
    """Best-of-`rounds` images/s of each of `runs`, name -> (call, steps per call), in turns."""
    measured = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (call, per_call) in runs.items():
            measured[name].append(images_per_s(call, batch_size, steps, per_call))
    return {name: max(values) for name, values in measured.items()}


def compare(name: str, params: TrainParams, data: np.ndarray, steps: int) -> float:
    """Best-of-2-rounds images/s of both loops on `params`' networks, printed; returns doggan / tutorial
    at one step per call (and prints it at train.steps_per_call when that is more)."""
    k = params.steps_per_call
    runs = {"tutorial": (tutorial(params, data), 1), "doggan": (ours(params, data), 1)}
    if k > 1:
        runs[f"doggan k={k}"] = (ours(params, data, k), k)
    best = best_of(runs, params.batch_size, steps)
    print(
        f"{name}: batch {params.batch_size}, {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]}, g_filters {params.g_filters}, "
        f"d_filters {params.d_filters}, {steps} timed steps x 2 rounds (best round)"
    )
    for loop, value in best.items():
        print(f"{loop:>12}: {value:8.1f} images/s")
    ratio = best["doggan"] / best["tutorial"]
    print(f"ratio doggan / tutorial ({name}): {ratio:.3f}")
    if k > 1:
        print(f"ratio doggan k={k} / tutorial ({name}): {best[f'doggan k={k}'] / best['tutorial']:.3f}")
    return ratio


def overhead(steps: int, long: int = 20) -> None:
    """Milliseconds per step of tiny MLP networks (mostly overhead): ours at 1 and `long` steps per call
    against the tutorial's step looped `long` times in one `tf.function`, the bare compiled loop."""
    params = TrainParams(**TINY)
    data = images(256, TINY_SHAPE)
    runs = {
        f"bare loop k={long}": (tutorial(params, data, long), long),
        "doggan k=1": (ours(params, data, 1), 1),
        f"doggan k={long}": (ours(params, data, long), long),
    }
    best = best_of(runs, params.batch_size, max(steps, 10 * long), rounds=3)
    ms = {name: 1000 * params.batch_size / value for name, value in best.items()}
    bare = ms[f"bare loop k={long}"]
    nets = f"mlp G {params.g_filters} / D {params.d_filters}"
    print(f"overhead: {nets}, {TINY_SHAPE}, batch {params.batch_size}")
    for name, value in ms.items():
        print(f"{name:>14}: {value:6.2f} ms/step ({value - bare:+.2f} ms against the bare loop)")


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    ch = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    data = images()
    compare("default", default_recipe(), data, steps)
    overhead(steps)
    compare("biggan", TrainParams(architecture="biggan", g_filters=ch, d_filters=ch), data, steps)


if __name__ == "__main__":
    main()
