"""DCGAN training under tf.distribute: one compiled step per global batch, checkpoints, resume.

The input pipeline also draws each step's noise and discriminator targets (label smoothing and
label noise) per example from stateless seeds, so a global batch is the same whatever the number
of replicas it is split across, and a resumed run draws what the uninterrupted run would have.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from doggan import losses, networks
from doggan.crop import load_crops
from doggan.data_provider import load_policy, make_dataset
from doggan.errors import DogganError
from doggan.files import atomic_path
from doggan.grids import save_grid, to_uint8
from doggan.params import EvalParams, TrainParams
from doggan.sampling import GENERATOR_FILE, Generator, write_meta

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
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)


def step_inputs(
    step: tf.Tensor, batch_size: int, z_dim: int, params: TrainParams
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The noise and the smoothed, flipped D targets of one global step, from stateless seeds."""
    seed = tf.stack([tf.constant(params.seed, tf.int64), tf.cast(step, tf.int64)])
    seeds = tf.random.experimental.stateless_split(seed, 3)
    z = tf.random.stateless_normal([batch_size, z_dim], seeds[0])
    uniform = tf.random.stateless_uniform([2, batch_size], seeds[1])
    flip = tf.random.stateless_uniform([2, batch_size], seeds[2]) < params.label_noise
    real_t, fake_t = losses.smoothed_targets(uniform, flip, params.real_label_range, params.fake_label_range)
    return z, real_t, fake_t


def train_dataset(images, labels, policy, params: TrainParams, start_step: int) -> tf.data.Dataset:
    """Endless global batches of (images, labels, z, real targets, fake targets)."""
    images_ds = make_dataset(images, labels, policy, params.batch_size, seed=params.seed, repeat=True)
    steps = tf.data.Dataset.counter(start=start_step)

    def add_inputs(batch, step):
        z, real_t, fake_t = step_inputs(step, params.batch_size, params.z_dim, params)
        return {"images": batch[0], "labels": batch[1], "z": z, "real_t": real_t, "fake_t": fake_t}

    return tf.data.Dataset.zip((images_ds, steps)).map(add_inputs).prefetch(tf.data.AUTOTUNE)


def learning_rate(base: float, params: TrainParams, total_steps: int):
    if params.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(base, decay_steps=max(total_steps, 1))
    return base


@dataclass
class GAN:
    """Everything a training run updates and checkpoints."""

    generator: keras.Model
    discriminator: keras.Model
    g_opt: keras.optimizers.Optimizer
    d_opt: keras.optimizers.Optimizer
    ema: keras.Model | None
    step: tf.Variable


def build_gan(image_shape, params: TrainParams, total_steps: int) -> GAN:
    """Models and optimizers; call inside the strategy scope (optimizers are built here, not lazily)."""
    keras.utils.set_random_seed(params.seed)
    g = networks.make_generator(params.z_dim, image_shape, params.g_filters)
    d = networks.make_discriminator(image_shape, params.d_filters, params.spectral_norm)

    def adam(base: float):
        opt = keras.optimizers.Adam(
            learning_rate(base, params, total_steps), beta_1=params.beta_1, beta_2=params.beta_2
        )
        return keras.optimizers.LossScaleOptimizer(opt) if params.mixed_precision else opt

    g_opt, d_opt = adam(params.lr_g), adam(params.lr_d)
    g_opt.build(g.trainable_variables)
    d_opt.build(d.trainable_variables)
    ema = None
    if params.ema_decay > 0:
        ema = networks.make_generator(params.z_dim, image_shape, params.g_filters)
        ema.set_weights(g.get_weights())
    return GAN(g, d, g_opt, d_opt, ema, tf.Variable(0, dtype=tf.int64, trainable=False, name="step"))


def losses_and_grads(gan: GAN, params: TrainParams, inputs: dict, global_batch: int):
    """One replica's share: D called once on real and fake together, losses averaged over the global batch.

    Returns (D gradients, G gradients, [d_loss, g_loss, mean D(x), mean D(G(z))] as this replica's share).
    """
    real = inputs["images"]
    n = tf.shape(real)[0]
    with tf.GradientTape(persistent=True) as tape:
        fake = gan.generator(inputs["z"], training=True)
        logits = gan.discriminator(tf.concat([real, tf.cast(fake, real.dtype)], 0), training=True)
        logits = tf.cast(tf.reshape(logits, [-1]), tf.float32)
        real_logits, fake_logits = logits[:n], logits[n:]
        d_each = losses.discriminator_loss(
            params.loss, real_logits, fake_logits, inputs["real_t"], inputs["fake_t"]
        )
        g_each = losses.generator_loss(params.loss, real_logits, fake_logits)
        d_loss = tf.nn.compute_average_loss(d_each, global_batch_size=global_batch)
        g_loss = tf.nn.compute_average_loss(g_each, global_batch_size=global_batch)
        d_scaled = gan.d_opt.scale_loss(d_loss) if params.mixed_precision else d_loss
        g_scaled = gan.g_opt.scale_loss(g_loss) if params.mixed_precision else g_loss
    d_grads = tape.gradient(d_scaled, gan.discriminator.trainable_variables)
    g_grads = tape.gradient(g_scaled, gan.generator.trainable_variables)
    stats = tf.stack(
        [
            d_loss,
            g_loss,
            tf.reduce_sum(tf.sigmoid(real_logits)) / global_batch,
            tf.reduce_sum(tf.sigmoid(fake_logits)) / global_batch,
        ]
    )
    return d_grads, g_grads, stats


def make_train_step(strategy: tf.distribute.Strategy, gan: GAN, params: TrainParams):
    """The compiled distributed step: both models updated from one D call on real and fake together."""

    def replica_step(inputs):
        d_grads, g_grads, stats = losses_and_grads(gan, params, inputs, params.batch_size)
        d_vars, g_vars = gan.discriminator.trainable_variables, gan.generator.trainable_variables
        gan.d_opt.apply_gradients(zip(d_grads, d_vars, strict=True))
        gan.g_opt.apply_gradients(zip(g_grads, g_vars, strict=True))
        return stats

    @tf.function(jit_compile=params.jit_compile or None)
    def train_step(dist_inputs):
        per_replica = strategy.run(replica_step, args=(dist_inputs,))
        stats = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        if gan.ema is not None:
            decay = params.ema_decay
            for e, w in zip(gan.ema.weights, gan.generator.weights, strict=True):
                e.assign(decay * e + (1.0 - decay) * w)
        gan.step.assign_add(1)
        return stats

    return train_step


def write_generator(model: keras.Model, params: TrainParams, image_shape, model_dir: Path) -> None:
    """Save the generator to sample from (`generator.keras` + `generator.json`), atomically."""
    with atomic_path(model_dir / GENERATOR_FILE, suffix=".keras") as tmp:
        model.save(tmp)
    write_meta(model_dir, Generator(model=None, z_dim=params.z_dim, image_shape=tuple(image_shape)))


def _samples(model: keras.Model, noise: np.ndarray) -> np.ndarray:
    return to_uint8(model(noise, training=False).numpy())


def _save_gif(frames: list[Path], path: Path) -> None:
    from PIL import Image

    images = [Image.open(f).convert("RGB") for f in frames]
    with atomic_path(path, suffix=".gif") as tmp:
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=400, loop=0)


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
    from dvclive import Live

    crops = load_crops(crops_path)
    policy = load_policy(policy_path)
    image_shape = tuple(int(s) for s in crops.images.shape[1:])
    n = len(crops.images)
    if n < params.batch_size:
        raise DogganError(f"{crops_path}: {n} crops, fewer than train.batch_size ({params.batch_size})")
    steps_per_epoch = n // params.batch_size
    total_steps = steps_per_epoch * params.epochs
    if params.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")

    strategy = make_strategy(params.devices)
    chief = is_chief(strategy)
    if params.batch_size % strategy.num_replicas_in_sync:
        raise DogganError(
            f"train.batch_size {params.batch_size} does not split over "
            f"{strategy.num_replicas_in_sync} replicas"
        )
    log.info("training on %d replica(s): %d steps of %d", strategy.num_replicas_in_sync, total_steps, n)
    out_dir = Path(checkpoint_dir) if chief else Path(tempfile.mkdtemp(prefix="doggan-worker-"))
    with strategy.scope():
        gan = build_gan(image_shape, params, total_steps)
        checkpoint = tf.train.Checkpoint(
            generator=gan.generator,
            discriminator=gan.discriminator,
            g_opt=gan.g_opt,
            d_opt=gan.d_opt,
            step=gan.step,
            **({"ema": gan.ema} if gan.ema is not None else {}),
        )
    if not params.resume and chief and out_dir.exists():
        shutil.rmtree(out_dir)
    manager = tf.train.CheckpointManager(checkpoint, str(out_dir), max_to_keep=2)
    if params.resume and manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        log.info("resumed from %s at step %d", manager.latest_checkpoint, int(gan.step.numpy()))
    start = int(gan.step.numpy())
    if start > total_steps:
        raise DogganError(
            f"{out_dir}: checkpoint is at step {start}, past this run's {total_steps} steps; "
            "set train.resume: false to start over"
        )

    dataset = train_dataset(crops.images, crops.labels, policy, params, start)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    train_step = make_train_step(strategy, gan, params)
    noise = (
        np.random.default_rng(params.seed + 1).standard_normal((SAMPLE_GRID, params.z_dim)).astype("float32")
    )
    plots_dir, frames_dir = Path(plots_dir), Path(plots_dir) / "epochs"
    if chief and not params.resume:
        shutil.rmtree(plots_dir, ignore_errors=True)
    frames_dir.mkdir(parents=True, exist_ok=True)
    live = Live(
        dir=str(live_dir if chief else out_dir / "dvclive"),
        dvcyaml=False,
        save_dvc_exp=False,
        report=None,
        resume=params.resume and start > 0,
    )
    began = time.perf_counter()
    images_seen = 0
    bar = tqdm(total=total_steps, initial=start, desc="train", unit="step", disable=not chief)
    step = start
    while step < total_steps:
        epoch = step // steps_per_epoch
        epoch_stats, epoch_began = [], time.perf_counter()
        for _ in range(min(steps_per_epoch - step % steps_per_epoch, total_steps - step)):
            stats = train_step(next(iterator)).numpy()
            step += 1
            if not np.all(np.isfinite(stats)):
                raise DogganError(
                    f"non-finite loss at step {step} (d_loss {stats[0]}, g_loss {stats[1]}); "
                    f"the last good checkpoint is in {out_dir}"
                )
            epoch_stats.append(stats)
            if step % params.checkpoint_every == 0:
                manager.save(checkpoint_number=step)
            bar.update(1)
            bar.set_postfix(d=f"{stats[0]:.3f}", g=f"{stats[1]:.3f}")
        seconds = time.perf_counter() - epoch_began
        images_seen += len(epoch_stats) * params.batch_size
        mean = np.mean(epoch_stats, axis=0)
        for name, value in zip(("d_loss", "g_loss", "d_real", "d_fake"), mean, strict=True):
            live.log_metric(f"train/{name}", float(value))
        live.log_metric("train/lr_g", float(keras.ops.convert_to_numpy(gan.g_opt.learning_rate)))
        live.log_metric("train/lr_d", float(keras.ops.convert_to_numpy(gan.d_opt.learning_rate)))
        live.log_metric("train/images_per_s", len(epoch_stats) * params.batch_size / seconds)
        if (epoch + 1) % params.sample_every == 0 or step == total_steps:
            sampler = gan.ema if gan.ema is not None else gan.generator
            save_grid(frames_dir / f"epoch_{epoch + 1:04d}.png", _samples(sampler, noise), scale=1)
        live.next_step()
    bar.close()
    manager.save(checkpoint_number=step)
    elapsed = time.perf_counter() - began
    live.summary["train_time_s"] = round(elapsed, 2)
    live.summary["steps"] = step
    live.summary["epochs"] = params.epochs
    live.summary["replicas"] = strategy.num_replicas_in_sync
    live.end()
    final = gan.ema if gan.ema is not None else gan.generator
    if chief:
        write_generator(final, params, image_shape, Path(model_dir))
        frames = sorted(frames_dir.glob("epoch_*.png"))
        save_grid(plots_dir / "samples.png", _samples(final, noise), scale=2)
        if frames:
            _save_gif(frames, plots_dir / "progress.gif")
    else:
        shutil.rmtree(out_dir, ignore_errors=True)
    summary = {"steps": step, "seconds": elapsed, "images_per_s": images_seen / max(elapsed, 1e-9)}
    log.info("trained %d steps in %.1f s", step, elapsed)
    return summary
