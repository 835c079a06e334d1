"""One distributed training step: each replica's losses and gradients, loss balancing, the updates.

D is called once per step on real and fake together (and replayed fakes), its batch assembled in one
place (`discriminator_batch`). With train.jit_compile, XLA compiles each replica's pass through D (its
forward and backward passes and the losses); everything that crosses replicas (G's synchronized batch
norm, loss balancing, the optimizer updates) stays outside the compiled part, so the step also runs on
several replicas and workers. LeCam's moving averages and ADA's augmentation probability are variables
the step updates after the replicas' values are summed, so every replica holds the same ones.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf

from doggan.errors import DogganError
from doggan.params import TrainParams
from doggan.training import diffaugment, losses, reconstruction
from doggan.training.state import GAN, Ada, Replay, update_ema

REPLAY_SEED_TAG = 7919  # folded into (seed, step) so replay draws differ from the step's other draws
STEP_VALUES = ("d_loss", "g_loss", "d_real", "d_fake", "d_skipped", "g_skipped")
LECAM_DECAY = 0.99  # of LeCam's moving averages of D's outputs (Tseng et al. 2021)
ADA_INTERVAL = 4  # steps between ADA's adjustments of p (Karras et al. 2020)


class ReplicaResult(NamedTuple):
    """One replica's share of a step: gradients, its fakes, and d_loss, g_loss, mean D(x) and mean D(G(z))
    as this replica's share of the global values."""

    d_grads: list
    g_grads: list
    fakes: tf.Tensor
    values: dict


def replayed(gan: GAN, params: TrainParams, n: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`n` past fakes and their labels, uniformly from this replica's buffer, seeded by step and replica."""
    replay = gan.replay
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    seed = tf.stack([tf.constant(params.seed, tf.int64), tf.cast(gan.step, tf.int64)])
    seed = tf.random.experimental.stateless_fold_in(seed, REPLAY_SEED_TAG)
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(replica, tf.int64))
    filled = tf.cast(tf.clip_by_value(replay.count, 1, replay.size), tf.int32)
    index = tf.random.stateless_uniform([n], seed, minval=0, maxval=filled, dtype=tf.int32)
    return tf.gather(replay.images, index), tf.gather(replay.labels, index)


def remember(replay: Replay, fakes: tf.Tensor, labels: tf.Tensor) -> None:
    """Write this replica's fakes over the oldest entries of its ring buffer (the buffer never grows)."""
    n = tf.shape(fakes)[0]
    index = tf.cast((replay.count + tf.range(n, dtype=tf.int64)) % replay.size, tf.int32)[:, None]
    replay.images.assign(tf.tensor_scatter_nd_update(replay.images, index, tf.cast(fakes, tf.float32)))
    replay.labels.assign(tf.tensor_scatter_nd_update(replay.labels, index, tf.cast(labels, tf.int32)))
    replay.count.assign_add(tf.cast(n, tf.int64))


def discriminator_batch(
    gan: GAN, params: TrainParams, inputs: dict, fake: tf.Tensor, replay: bool, diff: str = ""
):
    """D's one input batch: real, fake and (with `replay`) past fakes, in equal thirds or halves, all
    passed through the DiffAugment ops of `diff` (augment.diff) alike, then instance noise when the inputs
    carry its σ; the class labels beside them for a conditional D."""
    real, labels = inputs["images"], inputs["labels"]
    parts, part_labels = [real, tf.cast(fake, real.dtype)], [labels, labels]
    if replay:
        old, old_labels = replayed(gan, params, tf.shape(real)[0])
        parts.append(tf.cast(old, real.dtype))
        part_labels.append(old_labels)
    images = tf.concat(parts, 0)
    if diff:
        step_seed = tf.stack([tf.constant(params.seed, tf.int64), tf.cast(gan.step, tf.int64)])
        p = None if gan.ada is None else gan.ada.p
        images = diffaugment.augment_replica_batch(images, diff, step_seed, len(parts), p)
    if "sigma" in inputs:
        sigma = tf.concat([inputs["sigma"]] * len(parts), 0)[:, None, None, None]
        images += tf.random.normal(tf.shape(images), dtype=images.dtype) * tf.cast(sigma, images.dtype)
    return [images, tf.concat(part_labels, 0)] if gan.n_classes else images


def step_losses(
    params: TrainParams,
    logits: tf.Tensor,
    inputs: dict,
    global_batch: int,
    replay: bool,
    lecam: tuple[tf.Tensor, tf.Tensor] | None = None,
    top_k: tf.Tensor | None = None,
) -> dict:
    """d_loss and g_loss averaged over the global batch from D's logits on [real, fake, replayed], and
    d_total, D's loss to minimise: d_loss plus, with `replay`, the loss of the replayed fakes in place of
    the fresh ones, plus LeCam's penalty against the anchors of `lecam`, (anchors, weight) from
    `lecam_terms`. With `top_k` (a share), G's loss keeps only that share of the fakes, those D scores
    highest on this replica. Also each replica's share of the mean logits and of E[sign D(x_real)]
    (LeCam, ADA)."""
    n = tf.shape(inputs["images"])[0]
    real, fake, old = logits[:n], logits[n : 2 * n], logits[2 * n :]
    average = lambda each: tf.nn.compute_average_loss(each, global_batch_size=global_batch)  # noqa: E731
    d_loss = average(losses.discriminator_loss(params.loss, real, fake, inputs["real_t"], inputs["fake_t"]))
    d_total = d_loss
    if replay:
        d_total += average(
            losses.discriminator_loss(params.loss, real, old, inputs["real_t"], inputs["fake_t"])
        )
    if lecam is not None:
        (alpha_real, alpha_fake), weight = tf.unstack(lecam[0]), lecam[1]
        d_total += weight * average(losses.lecam_penalty(real, fake, alpha_real, alpha_fake))
    g_loss = losses.generator_loss(params.loss, real, fake)
    if top_k is not None:
        g_loss *= losses.top_k_weights(fake, top_k)
    return {
        "real_logit": tf.reduce_sum(real) / global_batch,
        "fake_logit": tf.reduce_sum(fake) / global_batch,
        "real_sign": tf.reduce_sum(tf.sign(real)) / global_batch,
        "d_loss": d_loss,
        "g_loss": average(g_loss),
        "d_total": d_total,
        "d_real": tf.reduce_sum(tf.sigmoid(real)) / global_batch,
        "d_fake": tf.reduce_sum(tf.sigmoid(fake)) / global_batch,
    }


class DiscriminatorResult(NamedTuple):
    """D's pass on one replica: D's gradients, the gradient of G's loss with respect to the fakes, and the
    replica's share of d_loss, g_loss, mean D(x) and mean D(G(z))."""

    d_grads: list
    fake_grads: tf.Tensor
    values: dict


def discriminator_pass(
    gan: GAN, params: TrainParams, inputs: dict, fake: tf.Tensor, global_batch: int, replay: bool, diff: str
) -> DiscriminatorResult:
    """D called once on its batch (`discriminator_batch`), the losses (with FastGAN's reconstruction loss,
    doggan.training.reconstruction), and their gradients with respect to D's weights and to the fakes."""
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(fake)
        d_inputs = discriminator_batch(gan, params, inputs, fake, replay, diff)
        logits, d_extra = reconstruction.judge(gan, params, d_inputs, inputs, global_batch)
        logits = tf.cast(tf.reshape(logits, [-1]), tf.float32)
        lecam = lecam_terms(gan, params)
        values = step_losses(params, logits, inputs, global_batch, replay, lecam, gan.top_k)
        d_total, g_loss = values.pop("d_total") + d_extra, values["g_loss"]
        d_scaled = gan.d_opt.scale_loss(d_total) if params.mixed_precision else d_total
        g_scaled = gan.g_opt.scale_loss(g_loss) if params.mixed_precision else g_loss
    d_grads = tape.gradient(d_scaled, gan.discriminator.trainable_variables)
    return DiscriminatorResult(d_grads, tape.gradient(g_scaled, fake), values)


def losses_and_grads(
    gan: GAN, params: TrainParams, inputs: dict, global_batch: int, replay: bool = False, diff: str = ""
) -> ReplicaResult:
    """One replica's share: D called once on real and fake together, losses averaged over the global batch.

    With `replay`, the same D call also scores a batch of past fakes from the replay buffer, and D's
    gradient gets a second loss with those standing in for the fresh fakes. G's gradients are the
    fakes' gradients carried back through G. With train.jit_compile, XLA compiles D's pass; G's passes
    stay outside, as its synchronized batch norm all-reduces across replicas (a merge_call, which a
    function compiled inside a replica cannot hold).
    """

    def d_pass(inputs, fake):
        return discriminator_pass(gan, params, inputs, fake, global_batch, replay, diff)

    if params.jit_compile:
        d_pass = tf.function(d_pass, jit_compile=True)
    g_inputs = [inputs["z"], inputs["labels"]] if gan.n_classes else inputs["z"]
    with tf.GradientTape() as tape:
        fake = gan.generator(g_inputs, training=True)
    d = d_pass(inputs, fake)
    g_grads = tape.gradient(fake, gan.generator.trainable_variables, output_gradients=d.fake_grads)
    return ReplicaResult(d.d_grads, g_grads, tf.stop_gradient(fake), d.values)


def balance_skips(params: TrainParams, values: dict) -> tuple[tf.Tensor, tf.Tensor]:
    """Loss balancing (the face tutorial's): skip D's update while d_loss × balance_d < g_loss, and G's
    while g_loss × balance_g < d_loss (a ratio of 0 never skips). Decided on the global losses, so every
    replica decides alike."""
    never = tf.constant(False)
    if not (params.balance_d or params.balance_g):
        return never, never
    shares = tf.stack([values["d_loss"], values["g_loss"]])
    d_loss, g_loss = tf.unstack(
        tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, shares)
    )
    skip_d = d_loss * params.balance_d < g_loss if params.balance_d else never
    skip_g = g_loss * params.balance_g < d_loss if params.balance_g else never
    return skip_d, skip_g


def apply_unless(skip: tf.Tensor, opt: keras.optimizers.Optimizer, grads, variables) -> None:
    """Apply the gradients unless `skip` (the same on every replica), leaving weights and optimizer state
    untouched when skipped. The condition is taken in cross-replica context, as Keras' loss-scale
    optimizer does: a cond in replica context cannot hold the optimizer's merge_call."""
    static = tf.get_static_value(skip)
    if static is not None and not static:
        opt.apply_gradients(zip(grads, variables, strict=True))
        return

    def cross_replica(distribution, skip, grads):
        def apply():
            distribution.extended.call_for_each_replica(
                lambda g: opt.apply_gradients(zip(g, variables, strict=True)), args=(grads,)
            )

        tf.cond(distribution.experimental_local_results(skip)[0], lambda: None, apply)

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(skip, list(grads)))


def lecam_terms(gan: GAN, params: TrainParams) -> tuple[tf.Tensor, tf.Tensor] | None:
    """LeCam's anchors (α_R, α_F), the moving averages of D's mean logits up to the last step, and its
    weight: train.lecam, or 0 on the first step, before the averages hold a measured value. None when off."""
    if gan.lecam is None:
        return None
    return tf.identity(gan.lecam), tf.where(gan.step > 0, params.lecam, 0.0)


def update_lecam(gan: GAN, real_logit: tf.Tensor, fake_logit: tf.Tensor) -> None:
    """Move LeCam's averages toward this step's global mean logits (the first step sets them)."""
    decay = tf.where(gan.step > 0, LECAM_DECAY, 0.0)
    gan.lecam.assign(decay * gan.lecam + (1.0 - decay) * tf.stack([real_logit, fake_logit]))


def update_ada(ada: Ada, step: tf.Variable, real_sign: tf.Tensor, batch_size: int) -> None:
    """Add this step's E[sign D(x_real)]; at the end of every ADA_INTERVAL steps move p by ADA's rule on
    their mean and start the sum afresh."""
    signs = ada.signs + real_sign
    due = (step + 1) % ADA_INTERVAL == 0
    images = batch_size * ADA_INTERVAL
    moved = diffaugment.ada_adjust(ada.p, signs / ADA_INTERVAL, ada.target, images, ada.kimg)
    ada.p.assign(tf.where(due, moved, ada.p))
    ada.signs.assign(tf.where(due, 0.0, signs))


def check_jit_compile(gan: GAN, params: TrainParams) -> None:
    """Refuse train.jit_compile with a discriminator whose batch norm is synchronized: its all-reduce
    across replicas would sit inside D's compiled pass, where no cross-replica call can run."""
    if not params.jit_compile:
        return
    for layer in gan.discriminator._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization) and layer.synchronized:
            raise DogganError(
                f"train.jit_compile with train.architecture {params.architecture!r}: the discriminator's "
                f"synchronized batch norm ({layer.name}) all-reduces across replicas inside D's pass, which "
                "XLA compiles per replica; set train.jit_compile: false"
            )


def make_step_body(
    strategy: tf.distribute.Strategy,
    gan: GAN,
    params: TrainParams,
    update_g: bool = True,
    replay: bool = False,
    diff: str = "",
):
    """One distributed step, uncompiled, to be called in cross-replica context inside a `tf.function`: D
    (and G when `update_g`) updated from one D call on real and fake (and replayed fakes when `replay`),
    each update skipped while loss balancing says so. `diff` names the DiffAugment ops (augment.diff)
    applied to every image D sees, real and fake alike. Returns the global values of STEP_VALUES by name
    (d_skipped and g_skipped are 0 or 1)."""
    check_jit_compile(gan, params)

    def replica_step(inputs):
        result = losses_and_grads(gan, params, inputs, params.batch_size, replay, diff)
        if gan.replay is not None:
            remember(gan.replay, result.fakes, inputs["labels"])
        skip_d, skip_g = balance_skips(params, result.values)
        apply_unless(skip_d, gan.d_opt, result.d_grads, gan.discriminator.trainable_variables)
        if update_g:
            apply_unless(skip_g, gan.g_opt, result.g_grads, gan.generator.trainable_variables)
        else:
            skip_g = tf.constant(False)
        share = 1.0 / tf.distribute.get_replica_context().num_replicas_in_sync
        skips = {"d_skipped": skip_d, "g_skipped": skip_g}
        values = {**result.values, **{k: tf.cast(v, tf.float32) * share for k, v in skips.items()}}
        return {k: values[k] for k in reduced}

    reduced = STEP_VALUES + (("real_logit", "fake_logit") if gan.lecam is not None else ())
    reduced += ("real_sign",) if gan.ada is not None else ()

    def distributed_step(dist_inputs):
        per_replica = strategy.run(replica_step, args=(dist_inputs,))
        values = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica[k], axis=None) for k in reduced}
        if gan.lecam is not None:
            update_lecam(gan, values["real_logit"], values["fake_logit"])
        if gan.ada is not None:
            update_ada(gan.ada, gan.step, values["real_sign"], params.batch_size)
        if gan.ema is not None and update_g:
            update_ema(gan, params)
        gan.step.assign_add(1)
        return {k: values[k] for k in STEP_VALUES}

    return distributed_step


def make_train_step(
    strategy: tf.distribute.Strategy,
    gan: GAN,
    params: TrainParams,
    update_g: bool = True,
    replay: bool = False,
    diff: str = "",
):
    """The compiled distributed step of `make_step_body`, called with one distributed batch."""
    return tf.function(make_step_body(strategy, gan, params, update_g, replay, diff))
