"""What a training run updates and checkpoints: the two networks, their optimizers, the EMA generator,
the step, the learning-rate scale a rollback lowers, the replay buffer, LeCam's and ADA's running values
and the best MiFID so far."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from doggan import networks
from doggan.params import AugmentParams, TrainParams

EMA_EVERY = 4  # G updates between two moves of the EMA generator (update_ema)


class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A constant or cosine-decayed rate times `scale`, a variable that a rollback lowers."""

    def __init__(self, base: float, kind: str, total_steps: int, scale: tf.Variable):
        self.base, self.kind, self.total_steps, self.scale = base, kind, max(total_steps, 1), scale

    def __call__(self, step):
        rate = tf.constant(self.base, tf.float32) * tf.cast(self.scale, tf.float32)
        if self.kind == "cosine":
            done = tf.minimum(tf.cast(step, tf.float32), float(self.total_steps)) / self.total_steps
            rate *= 0.5 * (1.0 + tf.cos(np.pi * done))
        return rate

    def get_config(self):
        return {"base": self.base, "kind": self.kind, "total_steps": self.total_steps}


@dataclass
class Replay:
    """Experience replay: a fixed-size ring of past fakes (and their labels) on each replica.

    The variables are replica-local (synchronized on read, first replica's value outside a replica) and
    never grow: each step overwrites the oldest entries in place, inside the compiled step.
    """

    images: tf.Variable
    labels: tf.Variable
    count: tf.Variable

    @property
    def size(self) -> int:
        return int(self.images.shape[0])


def make_replay(size: int, image_shape) -> Replay:
    """The replay variables; call inside the strategy scope."""
    local = dict(
        trainable=False,
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )
    return Replay(
        tf.Variable(tf.zeros((size, *image_shape)), name="replay_images", **local),
        tf.Variable(tf.zeros((size,), tf.int32), name="replay_labels", **local),
        tf.Variable(tf.constant(0, tf.int64), name="replay_count", **local),
    )


@dataclass
class Ada:
    """ADA's augmentation probability `p` (applied to each DiffAugment op of each image) and the sum of
    E[sign D(x_real)] over the steps of the current adjustment interval; `target` and `kimg` as
    augment.ada_target and augment.ada_kimg. Updated in the compiled step, alike on every replica."""

    p: tf.Variable
    signs: tf.Variable
    target: float
    kimg: float


def synced(name: str, value, dtype=tf.float32) -> tf.Variable:
    """A non-trainable variable that the compiled step assigns in cross-replica context (one value for
    every replica); call inside the strategy scope."""
    return tf.Variable(tf.constant(value, dtype), trainable=False, name=name)


@dataclass
class GAN:
    """Everything a training run updates and checkpoints."""

    generator: keras.Model
    discriminator: keras.Model
    g_opt: keras.optimizers.Optimizer
    d_opt: keras.optimizers.Optimizer
    ema: keras.Model | None
    step: tf.Variable
    lr_scale: tf.Variable
    n_classes: int = 0
    replay: Replay | None = None
    best: tf.Variable | None = None  # (MiFID, epoch) of the generator keep_best saved; (inf, 0) before
    lecam: tf.Variable | None = None  # LeCam's moving averages of D's mean logits, (real, fake)
    ada: Ada | None = None
    top_k: tf.Variable | None = None  # share of the fakes G's loss keeps (top-k training), set each epoch

    @property
    def sampler(self) -> keras.Model:
        """The generator to draw samples from: the EMA one when EMA is on."""
        return self.ema if self.ema is not None else self.generator

    def checkpoint(self) -> tf.train.Checkpoint:
        """Models, optimizers, step, learning-rate scale, EMA weights, replay buffer, LeCam's averages,
        ADA's probability and best MiFID in one checkpoint, so a resumed run goes on exactly where it
        stopped."""
        extra = {"ema": self.ema} if self.ema is not None else {}
        if self.best is not None:
            extra["best"] = self.best
        if self.lecam is not None:
            extra["lecam"] = self.lecam
        if self.ada is not None:
            extra.update(ada_p=self.ada.p, ada_signs=self.ada.signs)
        if self.replay is not None:
            extra.update(
                replay_images=self.replay.images,
                replay_labels=self.replay.labels,
                replay_count=self.replay.count,
            )
        return tf.train.Checkpoint(
            generator=self.generator,
            discriminator=self.discriminator,
            g_opt=self.g_opt,
            d_opt=self.d_opt,
            step=self.step,
            lr_scale=self.lr_scale,
            **extra,
        )


def make_optimizer(params: TrainParams, base: float, steps: int, lr_scale: tf.Variable):
    """Adam or RMSprop on a scaled schedule, with value clipping and loss scaling when the params ask."""
    schedule = ScaledSchedule(base, params.lr_schedule, steps, lr_scale)
    clip = {"clipvalue": params.clipvalue} if params.clipvalue else {}
    if params.optimizer == "rmsprop":
        opt = keras.optimizers.RMSprop(schedule, **clip)
    else:
        opt = keras.optimizers.Adam(schedule, beta_1=params.beta_1, beta_2=params.beta_2, **clip)
    return keras.optimizers.LossScaleOptimizer(opt) if params.mixed_precision else opt


def build_gan(
    image_shape,
    params: TrainParams,
    total_steps: int,
    n_classes: int = 0,
    policy: AugmentParams | None = None,
) -> GAN:
    """Models and optimizers; call inside the strategy scope (optimizers are built here, not lazily).

    `n_classes` > 0 builds the class-conditional pair (conditional batch norm in G, projection in D).
    The networks are those of `params.architecture` (doggan.networks). ADA's state is made when the
    augmentation `policy` sets augment.ada_target.
    """
    keras.utils.set_random_seed(params.seed)
    g = networks.make_generator(params, image_shape, n_classes)
    d = networks.make_discriminator(params, image_shape, n_classes)
    lr_scale = tf.Variable(1.0, dtype=tf.float32, trainable=False, name="lr_scale")
    g_opt = make_optimizer(params, params.lr_g, total_steps // params.n_critic, lr_scale)
    d_opt = make_optimizer(params, params.lr_d, total_steps, lr_scale)
    g_opt.build(g.trainable_variables)
    d_opt.build(d.trainable_variables)
    ema = None
    if params.ema_decay > 0:
        ema = networks.make_generator(params, image_shape, n_classes)
        ema.set_weights(g.get_weights())
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    replay = make_replay(params.replay_size, image_shape) if params.replay_size else None
    best = tf.Variable([np.inf, 0.0], dtype=tf.float64, trainable=False, name="best_mifid")
    lecam = synced("lecam_ema", [0.0, 0.0]) if params.lecam else None
    ada = None
    if policy is not None and policy.ada_target:
        ada = Ada(synced("ada_p", 0.0), synced("ada_signs", 0.0), policy.ada_target, policy.ada_kimg)
    top_k = synced("top_k", 1.0) if params.top_k < 1 else None
    return GAN(g, d, g_opt, d_opt, ema, step, lr_scale, n_classes, replay, best, lecam, ada, top_k)


def ema_decay_at(params: TrainParams, step: tf.Tensor) -> tf.Tensor:
    """The EMA's decay for G's update at 0-based step `step`, with the warm-up of
    tf.train.ExponentialMovingAverage(num_updates): early on the average follows G instead of staying near
    the initial weights for thousands of steps. Before train.ema_start it is 0 (the copy is G itself), and
    the warm-up counts from there."""
    t = tf.cast(step, tf.float32) - float(params.ema_start)
    return tf.where(t < 0.0, 0.0, tf.minimum(params.ema_decay, (1.0 + t) / (10.0 + t)))


def update_ema(gan: GAN, params: TrainParams) -> None:
    """After G's update at this step, every EMA_EVERY-th one, move the EMA generator towards G by the
    product of the decays of the EMA_EVERY updates since the last move, in one pass of in-place updates.

    The exact average of those updates is D·e + Σ c_j·w_j with Σ c_j = 1 − D (D the product); this move
    puts G's newest weights in place of each w_j. Their difference is the drift of G over fewer than
    EMA_EVERY updates, weighted by 1 − D ≈ EMA_EVERY·(1 − decay): equivalent to first order in
    EMA_EVERY·(1 − decay) (0.004 at 0.999), while the average spans about 1 / (1 − decay) updates. It
    costs a quarter of a move per step. Before train.ema_start each move copies G (a decay of 0)."""
    updates = (gan.step + 1) // params.n_critic  # G's updates so far, this step's included
    steps = gan.step - params.n_critic * tf.range(EMA_EVERY, dtype=gan.step.dtype)
    rate = 1.0 - tf.reduce_prod(ema_decay_at(params, steps))

    def move():
        for e, w in zip(gan.ema.weights, gan.generator.weights, strict=True):
            e.assign_sub((e - w) * rate)

    tf.cond(updates % EMA_EVERY == 0, move, lambda: None)


def current_rate(opt: keras.optimizers.Optimizer) -> float:
    """The learning rate the optimizer applies at its next update."""
    return float(keras.ops.convert_to_numpy(opt.learning_rate))
