"""DCGAN training under tf.distribute: one compiled step per global batch, checkpoints, resume.

The input pipeline also draws each step's noise and discriminator targets (label smoothing and
label noise) from stateless seeds of (train.seed, step), so a global batch is the same whatever the
number of replicas it is split across, and a resumed run draws the noise and targets the
uninterrupted run would have (its image order restarts from the shuffle seed).
Only the chief writes outputs; other workers write to a temp folder that they remove at the end.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from doggan import losses, networks
from doggan.crops_file import load_crops
from doggan.data_provider import load_policy, make_dataset
from doggan.errors import DogganError
from doggan.files import atomic_path
from doggan.grids import save_grid, to_uint8
from doggan.params import EvalParams, TrainParams
from doggan.sampling import GENERATOR_FILE, Generator, generate, sample_noise, write_meta

log = logging.getLogger("doggan")
SAMPLE_GRID = 64


def make_strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """MultiWorkerMirrored when TF_CONFIG is set, else Mirrored over the named devices, GPUs or CPU."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if not devices:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or ["/cpu:0"]
    return tf.distribute.MirroredStrategy(devices)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the task that writes outputs: the chief, else worker 0 of a cluster without one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type or resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return not has_chief and resolver.task_type == "worker" and resolver.task_id == 0


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
    """Endless global batches of images, labels, noise, D targets and instance-noise σ (per example)."""
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

    def checkpoint(self) -> tf.train.Checkpoint:
        """Models, optimizers, step, learning-rate scale, EMA weights, replay buffer and best MiFID in one
        checkpoint, so a resumed run goes on exactly where it stopped."""
        extra = {"ema": self.ema} if self.ema is not None else {}
        if self.best is not None:
            extra["best"] = self.best
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


def build_gan(image_shape, params: TrainParams, total_steps: int, n_classes: int = 0) -> GAN:
    """Models and optimizers; call inside the strategy scope (optimizers are built here, not lazily).

    `n_classes` > 0 builds the class-conditional pair (conditional batch norm in G, projection in D).
    The networks are those of `params.architecture` (doggan.networks).
    """
    keras.utils.set_random_seed(params.seed)
    g = networks.make_generator(params, image_shape, n_classes)
    d = networks.make_discriminator(params, image_shape, n_classes)
    lr_scale = tf.Variable(1.0, dtype=tf.float32, trainable=False, name="lr_scale")

    def optimizer(base: float, steps: int):
        schedule = ScaledSchedule(base, params.lr_schedule, steps, lr_scale)
        clip = {"clipvalue": params.clipvalue} if params.clipvalue else {}
        if params.optimizer == "rmsprop":
            opt = keras.optimizers.RMSprop(schedule, **clip)
        else:
            opt = keras.optimizers.Adam(schedule, beta_1=params.beta_1, beta_2=params.beta_2, **clip)
        return keras.optimizers.LossScaleOptimizer(opt) if params.mixed_precision else opt

    g_opt, d_opt = optimizer(params.lr_g, total_steps // params.n_critic), optimizer(params.lr_d, total_steps)
    g_opt.build(g.trainable_variables)
    d_opt.build(d.trainable_variables)
    ema = None
    if params.ema_decay > 0:
        ema = networks.make_generator(params, image_shape, n_classes)
        ema.set_weights(g.get_weights())
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    replay = make_replay(params.replay_size, image_shape) if params.replay_size else None
    best = tf.Variable([np.inf, 0.0], dtype=tf.float64, trainable=False, name="best_mifid")
    return GAN(g, d, g_opt, d_opt, ema, step, lr_scale, n_classes, replay, best)


def current_rate(opt: keras.optimizers.Optimizer) -> float:
    """The learning rate the optimizer applies at its next update."""
    return float(keras.ops.convert_to_numpy(opt.learning_rate))


REPLAY_SEED_TAG = 7919  # folded into (seed, step) so replay draws differ from the step's other draws


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


def losses_and_grads(gan: GAN, params: TrainParams, inputs: dict, global_batch: int, replay: bool = False):
    """One replica's share: D called once on real and fake together, losses averaged over the global batch.

    With `replay`, the same D call also scores a batch of past fakes from the replay buffer, and D's
    gradient gets a second loss with those standing in for the fresh fakes. When the run keeps a replay
    buffer, this step's fakes are then written into it.
    Returns (D gradients, G gradients, [d_loss, g_loss, mean D(x), mean D(G(z))] as this replica's share).
    """
    real, labels = inputs["images"], inputs["labels"]
    n = tf.shape(real)[0]
    g_inputs = [inputs["z"], labels] if gan.n_classes else inputs["z"]
    with tf.GradientTape(persistent=True) as tape:
        fake = tf.cast(gan.generator(g_inputs, training=True), real.dtype)
        parts, part_labels = [real, fake], [labels, labels]
        if replay:
            old, old_labels = replayed(gan, params, n)
            parts.append(tf.cast(old, real.dtype))
            part_labels.append(old_labels)
        both = tf.concat(parts, 0)
        if "sigma" in inputs:
            sigma = tf.concat([inputs["sigma"]] * len(parts), 0)[:, None, None, None]
            both += tf.random.normal(tf.shape(both), dtype=both.dtype) * tf.cast(sigma, both.dtype)
        d_inputs = [both, tf.concat(part_labels, 0)] if gan.n_classes else both
        logits = gan.discriminator(d_inputs, training=True)
        logits = tf.cast(tf.reshape(logits, [-1]), tf.float32)
        real_logits, fake_logits = logits[:n], logits[n : 2 * n]
        d_each = losses.discriminator_loss(
            params.loss, real_logits, fake_logits, inputs["real_t"], inputs["fake_t"]
        )
        g_each = losses.generator_loss(params.loss, real_logits, fake_logits)
        d_loss = tf.nn.compute_average_loss(d_each, global_batch_size=global_batch)
        g_loss = tf.nn.compute_average_loss(g_each, global_batch_size=global_batch)
        d_total = d_loss
        if replay:
            replay_each = losses.discriminator_loss(
                params.loss, real_logits, logits[2 * n :], inputs["real_t"], inputs["fake_t"]
            )
            d_total += tf.nn.compute_average_loss(replay_each, global_batch_size=global_batch)
        d_scaled = gan.d_opt.scale_loss(d_total) if params.mixed_precision else d_total
        g_scaled = gan.g_opt.scale_loss(g_loss) if params.mixed_precision else g_loss
    d_grads = tape.gradient(d_scaled, gan.discriminator.trainable_variables)
    g_grads = tape.gradient(g_scaled, gan.generator.trainable_variables)
    if gan.replay is not None:
        remember(gan.replay, tf.stop_gradient(fake), labels)
    stats = tf.stack(
        [
            d_loss,
            g_loss,
            tf.reduce_sum(tf.sigmoid(real_logits)) / global_batch,
            tf.reduce_sum(tf.sigmoid(fake_logits)) / global_batch,
        ]
    )
    return d_grads, g_grads, stats


def balance_skips(params: TrainParams, stats: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Loss balancing (the face tutorial's): skip D's update while d_loss × balance_d < g_loss, and G's
    while g_loss × balance_g < d_loss (a ratio of 0 never skips). Decided on the global losses, so every
    replica decides alike."""
    never = tf.constant(False)
    if not (params.balance_d or params.balance_g):
        return never, never
    totals = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, stats[:2])
    d_loss, g_loss = totals[0], totals[1]
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


def make_train_step(
    strategy: tf.distribute.Strategy,
    gan: GAN,
    params: TrainParams,
    update_g: bool = True,
    replay: bool = False,
):
    """The compiled distributed step: D (and G when `update_g`) updated from one D call on real and fake
    (and replayed fakes when `replay`), each update skipped while loss balancing says so.

    Returns the global [d_loss, g_loss, mean D(x), mean D(G(z)), D skipped, G skipped] (skips are 0 or 1).
    """

    def replica_step(inputs):
        d_grads, g_grads, stats = losses_and_grads(gan, params, inputs, params.batch_size, replay)
        d_vars, g_vars = gan.discriminator.trainable_variables, gan.generator.trainable_variables
        skip_d, skip_g = balance_skips(params, stats)
        apply_unless(skip_d, gan.d_opt, d_grads, d_vars)
        if update_g:
            apply_unless(skip_g, gan.g_opt, g_grads, g_vars)
        else:
            skip_g = tf.constant(False)
        share = 1.0 / tf.distribute.get_replica_context().num_replicas_in_sync
        return tf.concat([stats, tf.cast(tf.stack([skip_d, skip_g]), tf.float32) * share], 0)

    @tf.function(jit_compile=params.jit_compile or None)
    def train_step(dist_inputs):
        per_replica = strategy.run(replica_step, args=(dist_inputs,))
        stats = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        if gan.ema is not None and update_g:
            # warm-up as tf.train.ExponentialMovingAverage(num_updates): early on the average follows G,
            # instead of staying near the initial weights for thousands of steps; before ema_start the
            # copy is G itself (decay 0) and the warm-up counts from there
            t = tf.cast(gan.step, tf.float32) - float(params.ema_start)
            decay = tf.where(t < 0.0, 0.0, tf.minimum(params.ema_decay, (1.0 + t) / (10.0 + t)))
            for e, w in zip(gan.ema.weights, gan.generator.weights, strict=True):
                e.assign(decay * e + (1.0 - decay) * w)
        gan.step.assign_add(1)
        return stats

    return train_step


def write_generator(model: keras.Model, meta: Generator, model_dir: Path) -> None:
    """Save the generator to sample from (`generator.keras` + `generator.json`), atomically."""
    with atomic_path(model_dir / GENERATOR_FILE, suffix=".keras") as tmp:
        model.save(tmp)
    write_meta(model_dir, meta)


def _samples(model: keras.Model, noise: np.ndarray, n_classes: int) -> np.ndarray:
    """The fixed-noise grid; a conditional model draws the classes in turn."""
    inputs = [noise, np.arange(len(noise), dtype=np.int32) % n_classes] if n_classes else noise
    return to_uint8(model(inputs, training=False).numpy())


def _save_gif(frames: list[Path], path: Path) -> None:
    from PIL import Image

    images = [Image.open(f).convert("RGB") for f in frames]
    with atomic_path(path, suffix=".gif") as tmp:
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=400, loop=0)


def _score(gen: Generator, params: TrainParams, eval_params: EvalParams, real_stats_path: Path) -> dict:
    """MiFID of freshly drawn samples against the real-image statistics."""
    from doggan import evaluation

    images = np.concatenate(list(generate(gen, eval_params.n_images_train, seed=params.seed + 2)))
    return evaluation.score_images(images, real_stats_path, eval_params)


def train_stage(
    crops_path: Path,
    policy_path: Path,
    params: TrainParams,
    eval_params: EvalParams,
    model_dir: Path,
    checkpoint_dir: Path,
    live_dir: Path,
    plots_dir: Path,
    real_stats_path: Path,
) -> dict:
    """Train, checkpointing as it goes; write the generator, dvclive metrics and sample grids."""
    previous = keras.mixed_precision.global_policy()
    if params.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        return _train(
            crops_path,
            policy_path,
            params,
            eval_params,
            model_dir,
            checkpoint_dir,
            live_dir,
            plots_dir,
            real_stats_path,
        )
    finally:
        keras.mixed_precision.set_global_policy(previous)


MAX_ROLLBACKS = 5


def _train(
    crops_path,
    policy_path,
    params,
    eval_params,
    model_dir,
    checkpoint_dir,
    live_dir,
    plots_dir,
    real_stats_path,
) -> dict:
    from dvclive import Live

    crops = load_crops(crops_path)
    policy = load_policy(policy_path)
    image_shape = tuple(int(s) for s in crops.images.shape[1:])
    n = len(crops.images)
    if n < params.batch_size:
        raise DogganError(f"{crops_path}: {n} crops, fewer than train.batch_size ({params.batch_size})")
    steps_per_epoch = n // params.batch_size
    total_steps = steps_per_epoch * params.epochs
    n_classes = len(crops.breeds) if params.conditional else 0
    counts = np.bincount(crops.labels, minlength=len(crops.breeds))
    meta = Generator(
        model=None,
        z_dim=params.z_dim,
        noise=params.noise,
        n_classes=n_classes,
        class_probs=tuple(float(c) for c in counts / counts.sum()) if n_classes else (),
        image_shape=image_shape,
    )

    strategy = make_strategy(params.devices)
    replicas = strategy.num_replicas_in_sync
    if params.batch_size % replicas:
        raise DogganError(f"train.batch_size {params.batch_size} does not split over {replicas} replicas")
    chief = is_chief(strategy)
    scratch = None if chief else Path(tempfile.mkdtemp(prefix="doggan-worker-"))
    if scratch is not None:
        model_dir, checkpoint_dir, live_dir, plots_dir = (
            scratch / d for d in ("model", "ckpt", "live", "plots")
        )
    model_dir, checkpoint_dir, plots_dir = Path(model_dir), Path(checkpoint_dir), Path(plots_dir)
    log.info("training on %d replica(s): %d steps over %d crops", replicas, total_steps, n)
    with strategy.scope():
        gan = build_gan(image_shape, params, total_steps, n_classes)
        checkpoint = gan.checkpoint()
    if not params.resume and checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    manager = tf.train.CheckpointManager(checkpoint, str(checkpoint_dir), max_to_keep=2)
    if params.resume and manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        log.info("resumed from %s at step %d", manager.latest_checkpoint, int(gan.step.numpy()))
    start = int(gan.step.numpy())
    if start > total_steps:
        raise DogganError(
            f"{checkpoint_dir}: checkpoint is at step {start}, past this run's {total_steps} steps; "
            "raise train.epochs or set train.resume: false to start over"
        )

    dataset = train_dataset(crops.images, crops.labels, policy, params, start)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    compiled_steps: dict[tuple[bool, bool], object] = {}

    def step_for(step: int):
        """The compiled step for global step `step` + 1: G updated every n_critic steps, replay every
        replay_every steps once the buffer holds fakes."""
        update_g = (step + 1) % params.n_critic == 0
        replay = bool(gan.replay is not None and step > 0 and (step + 1) % params.replay_every == 0)
        if (update_g, replay) not in compiled_steps:
            compiled_steps[update_g, replay] = make_train_step(strategy, gan, params, update_g, replay)
        return compiled_steps[update_g, replay]

    noise = sample_noise(np.random.default_rng(params.seed + 1), SAMPLE_GRID, params.z_dim, params.noise)
    frames_dir = plots_dir / "epochs"
    if not params.resume:
        shutil.rmtree(plots_dir, ignore_errors=True)
    frames_dir.mkdir(parents=True, exist_ok=True)
    live = Live(
        dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None, resume=params.resume and start > 0
    )

    def sampler() -> keras.Model:
        return gan.ema if gan.ema is not None else gan.generator

    began = time.perf_counter()
    bar = tqdm(total=total_steps, initial=start, desc="train", unit="step", disable=not chief)
    step, rollbacks = start, 0
    best_mifid, best_epoch = gan.best.numpy()
    best = (float(best_mifid), int(best_epoch)) if params.keep_best and np.isfinite(best_mifid) else None
    skipped = np.zeros(2)
    epoch_stats, epoch_began = [], time.perf_counter()
    while step < total_steps:
        stats = step_for(step)(next(iterator)).numpy()
        if not np.all(np.isfinite(stats)):
            problem = f"non-finite loss at step {step + 1} (d_loss {stats[0]}, g_loss {stats[1]})"
            if (
                params.on_nonfinite != "rollback"
                or not manager.latest_checkpoint
                or rollbacks >= MAX_ROLLBACKS
            ):
                raise DogganError(f"{problem}; the last good checkpoint is in {checkpoint_dir}")
            checkpoint.restore(manager.latest_checkpoint)
            gan.lr_scale.assign(gan.lr_scale * params.rollback_lr_factor)
            rollbacks += 1
            step = int(gan.step.numpy())
            log.warning(
                "%s: rolled back to step %d, learning rates x%.3g", problem, step, gan.lr_scale.numpy()
            )
            bar.n = step
            bar.refresh()
            epoch_stats, epoch_began = [], time.perf_counter()
            continue
        step += 1
        epoch_stats.append(stats)
        if step % params.checkpoint_every == 0:
            manager.save(checkpoint_number=step)
        bar.update(1)
        rate = len(epoch_stats) * params.batch_size / max(time.perf_counter() - epoch_began, 1e-9)
        bar.set_postfix(d=f"{stats[0]:.3f}", g=f"{stats[1]:.3f}", img_s=f"{rate:.0f}")
        if step % steps_per_epoch and step != total_steps:
            continue
        epoch = (step - 1) // steps_per_epoch + 1
        mean = np.mean(epoch_stats, axis=0)
        for name, value in zip(("d_loss", "g_loss", "d_real", "d_fake"), mean[:4], strict=True):
            live.log_metric(f"train/{name}", float(value))
        epoch_skips = np.rint(np.sum(epoch_stats, axis=0)[4:])
        skipped += epoch_skips
        live.log_metric("train/d_skipped", int(epoch_skips[0]))
        live.log_metric("train/g_skipped", int(epoch_skips[1]))
        live.log_metric("train/lr_g", current_rate(gan.g_opt))
        live.log_metric("train/lr_d", current_rate(gan.d_opt))
        live.log_metric("train/images_per_s", rate)
        if epoch % params.sample_every == 0 or step == total_steps:
            save_grid(frames_dir / f"epoch_{epoch:04d}.png", _samples(sampler(), noise, n_classes))
        if params.eval_every and epoch % params.eval_every == 0 and Path(real_stats_path).is_file():
            scored = _score(replace(meta, model=sampler()), params, eval_params, Path(real_stats_path))
            mifid = float(scored["mifid"])
            live.log_metric("train/mifid", mifid)
            if params.keep_best and (best is None or mifid < best[0]):
                best = (mifid, epoch)
                gan.best.assign(best)
                write_generator(sampler(), meta, model_dir)
        live.next_step()
        epoch_stats, epoch_began = [], time.perf_counter()
    bar.close()
    manager.save(checkpoint_number=step)
    elapsed = time.perf_counter() - began
    trained = step - start
    summary = {
        "start_step": start,
        "steps": step,
        "epochs": params.epochs,
        "replicas": replicas,
        "train_time_s": round(elapsed, 2),
        "images_per_s": round(trained * params.batch_size / max(elapsed, 1e-9), 1),
        "rollbacks": rollbacks,
        "d_skipped": int(skipped[0]),
        "g_skipped": int(skipped[1]),
    }
    if best is not None:
        summary.update(best_mifid=best[0], best_epoch=best[1])
    for key, value in summary.items():
        live.summary[key] = value
    live.end()
    if best is None:
        write_generator(sampler(), meta, model_dir)
    save_grid(plots_dir / "samples.png", _samples(sampler(), noise, n_classes), scale=2)
    frames = sorted(frames_dir.glob("epoch_*.png"))
    if frames:
        _save_gif(frames, plots_dir / "progress.gif")
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("trained %d steps in %.1f s", trained, elapsed)
    return summary
