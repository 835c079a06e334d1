"""The training input pipeline: global batches of images with each step's noise and D targets.

Each step's noise and discriminator targets (label smoothing and label noise) come from stateless
seeds of (train.seed, step), so a global batch is the same whatever the number of replicas it is split
across, and a resumed run draws the noise and targets the uninterrupted run would have (its image
order restarts from the shuffle seed).
"""

from __future__ import annotations

import tensorflow as tf

from doggan import networks
from doggan.params import TrainParams
from doggan.training import losses
from doggan.training.policy import make_dataset


def step_inputs(
    step: tf.Tensor, batch_size: int, z_dim: int, params: TrainParams
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The noise and the smoothed, flipped D targets of one global step, from stateless seeds."""
    seed = tf.stack([tf.constant(params.seed, tf.int64), tf.cast(step, tf.int64)])
    seeds = tf.random.experimental.stateless_split(seed, 3)
    if params.noise == "uniform":
        z = tf.random.stateless_uniform([batch_size, z_dim], seeds[0], minval=-1.0, maxval=1.0)
    else:
        z = tf.random.stateless_normal([batch_size, z_dim], seeds[0])
    uniform = tf.random.stateless_uniform([2, batch_size], seeds[1])
    flip = tf.random.stateless_uniform([2, batch_size], seeds[2]) < params.label_noise
    real_t, fake_t = losses.smoothed_targets(uniform, flip, params.real_label_range, params.fake_label_range)
    return z, real_t, fake_t


def instance_noise_std(step: tf.Tensor, params: TrainParams, steps_per_epoch: int) -> tf.Tensor:
    """σ of the Gaussian noise on D's inputs: train.instance_noise, annealed linearly to 0 over
    train.instance_noise_epochs (0 keeps it constant)."""
    if not params.instance_noise_epochs:
        return tf.constant(params.instance_noise, tf.float32)
    span = float(params.instance_noise_epochs * steps_per_epoch)
    return params.instance_noise * tf.maximum(1.0 - tf.cast(step, tf.float32) / span, 0.0)


def train_dataset(images, labels, policy, params: TrainParams, start_step: int) -> tf.data.Dataset:
    """Endless global batches of images, labels, noise, D targets and instance-noise σ (per example); with
    train.enlarge_real, the images as D sees G's (`networks.as_drawn`)."""
    images = networks.as_drawn(images, params) if params.enlarge_real else images
    images_ds = make_dataset(images, labels, policy, params.batch_size, seed=params.seed, repeat=True)
    steps = tf.data.Dataset.counter(start=start_step)
    steps_per_epoch = len(images) // params.batch_size

    def add_inputs(batch, step):
        z, real_t, fake_t = step_inputs(step, params.batch_size, params.z_dim, params)
        inputs = {"images": batch[0], "labels": batch[1], "z": z, "real_t": real_t, "fake_t": fake_t}
        if params.instance_noise > 0:
            inputs["sigma"] = tf.fill([params.batch_size], instance_noise_std(step, params, steps_per_epoch))
        return inputs

    ds = tf.data.Dataset.zip((images_ds, steps)).map(add_inputs).prefetch(tf.data.AUTOTUNE)
    # Without autotuning: its background threads took CPU from the train step on small machines and
    # held up the iterator's teardown for up to a minute at the end of a run.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)
