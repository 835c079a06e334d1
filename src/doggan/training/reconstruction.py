"""FastGAN's self-supervised discriminator (Liu et al., 2021): D's decoders reconstruct the real images D
judges, the whole image from D's 8×8 map and a random quarter of it from the matching quarter of D's
16×16 map, and the reconstruction error is added to D's loss, on real images only.

The paper measures the error with LPIPS; here it is the mean absolute error on pixels (L1): no perceptual
network's weights are needed, and unlike the squared error its gradient does not fade as the errors
shrink, so the fine detail of the reconstructions keeps its pull on D's features. The target of the whole
image is the image D judged (after DiffAugment, at the working side) average-pooled to the decoder's side;
the quarter is reconstructed at the working side's half, so at full resolution.
"""

from __future__ import annotations

import tensorflow as tf

from doggan.networks.fastgan import quadrant
from doggan.params import TrainParams

QUARTER_SEED_TAG = 104729  # folded into (seed, step) so the quarters drawn differ from the step's other draws


def reconstruction_loss(whole: tf.Tensor, part: tf.Tensor, seen: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """Per example: the mean absolute error of `whole` against `seen` average-pooled to its side, plus that
    of `part` against each image's quarter `index` of `seen` (the images D judged)."""
    seen = tf.cast(seen, tf.float32)
    factor = seen.shape[1] // whole.shape[1]
    target = tf.nn.avg_pool2d(seen, factor, factor, "VALID") if factor > 1 else seen
    errors = [
        tf.abs(tf.cast(whole, tf.float32) - target),
        tf.abs(tf.cast(part, tf.float32) - quadrant(seen, index)),
    ]
    return tf.add_n([tf.reduce_mean(error, axis=[1, 2, 3]) for error in errors])


def quarters(params: TrainParams, step: tf.Variable, n: tf.Tensor) -> tf.Tensor:
    """`n` quarter indices (0-3), one per image, drawn from (seed, step) and the replica, so that replicas
    draw differently and a rerun draws alike."""
    seed = tf.stack([tf.constant(params.seed, tf.int64), tf.cast(step, tf.int64)])
    seed = tf.random.experimental.stateless_fold_in(seed, QUARTER_SEED_TAG)
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(replica, tf.int64))
    return tf.random.stateless_uniform([n], seed, minval=0, maxval=4, dtype=tf.int32)


def judge(gan, params: TrainParams, d_inputs, inputs: dict, global_batch: int):
    """D's logits on its batch `d_inputs` (the replica's real `inputs["images"]` first) and the loss D adds
    to its own: with train.architecture fastgan the reconstruction loss of the real images averaged over
    the global batch, else 0."""
    if params.architecture != "fastgan":
        return gan.discriminator(d_inputs, training=True), 0.0
    n_real = tf.shape(inputs["images"])[0]
    index = quarters(params, gan.step, n_real)
    logits, whole, part, seen = gan.discriminator.reconstruct(d_inputs, n_real, index, training=True)
    per_example = reconstruction_loss(whole, part, seen, index)
    return logits, tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
