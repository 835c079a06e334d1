"""The train stage: GAN training under tf.distribute, with checkpoints, resume, rollback and a time budget.

Only the chief writes outputs; other workers write to a temp folder that they remove at the end.
The step is in doggan.training.step, its inputs in doggan.training.inputs, the per-epoch record in
doggan.training.report.
"""

from __future__ import annotations

import logging
import math
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

from doggan.crops.file import Crops, load_crops
from doggan.errors import DogganError
from doggan.output.sampling import Generator
from doggan.params import AugmentParams, EvalParams, TrainParams
from doggan.training.calls import make_train_call
from doggan.training.checkpoints import KEEP, restore_intact
from doggan.training.inputs import train_dataset
from doggan.training.losses import top_k_fraction
from doggan.training.paths import TrainPaths
from doggan.training.policy import load_policy
from doggan.training.report import EpochReporter
from doggan.training.state import GAN, build_gan

log = logging.getLogger("doggan")
MAX_ROLLBACKS = 5


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


class Budget:
    """train.time_budget_min as a clock started with the run: of the next call's steps, only those that fit
    are taken, the time so far plus the typical step time for each (plus the mean MiFID evaluation when the
    call ends an evaluated epoch) staying within it. The first call of a run is one step, always taken: it
    is the first measurement. It also traces and compiles the call, so it is left out of the typical step
    time: the median over the last RECENT calls after it of each call's time per step. Without a budget
    nothing is computed: this runs before every call."""

    RECENT = 100

    def __init__(self, minutes: float, began: float):
        self.seconds = minutes * 60 if minutes else math.inf
        self.began = began
        self.steps: list[float] = []  # each call's seconds per step
        self.evaluations: list[float] = []

    def record(self, seconds: float, steps: int) -> None:
        """One call's time and its number of steps."""
        self.steps.append(seconds / steps)

    def fits(self, steps: int, evaluates: bool) -> int:
        """How many of the next `steps` steps fit; `evaluates` when their last one ends an evaluated epoch."""
        if math.isinf(self.seconds):
            return steps
        if not self.steps:
            return 1
        after_first = self.steps[1:] if len(self.steps) <= self.RECENT else self.steps[-self.RECENT :]
        each = float(np.median(after_first or self.steps))
        left = self.seconds - (time.perf_counter() - self.began)
        evaluation = float(np.mean(self.evaluations)) if evaluates and self.evaluations else 0.0
        if steps * each + evaluation <= left:
            return steps
        return max(0, min(steps - 1, math.floor(left / each)))


@dataclass
class Run:
    """The parts of one training run and where it is."""

    params: TrainParams
    strategy: tf.distribute.Strategy
    gan: GAN
    manager: tf.train.CheckpointManager
    reporter: EpochReporter
    budget: Budget
    steps_per_epoch: int
    total_steps: int
    start: int  # the step this run started from
    step: int
    diff: str = ""  # DiffAugment ops on D's inputs (augment.diff of the policy)
    rollbacks: int = 0

    def epoch_of(self, step: int) -> int:
        """The 1-based epoch that global step `step` (1-based) belongs to."""
        return (step - 1) // self.steps_per_epoch + 1


def train_stage(paths: TrainPaths, params: TrainParams, eval_params: EvalParams) -> dict:
    """Train, checkpointing as it goes; write the generator, dvclive metrics and sample grids.

    Returns the run's summary (also in dvclive's metrics.json). With train.deterministic, TensorFlow's
    ops run deterministically from here on in this process, so the same run replays exactly.
    """
    if params.deterministic:
        tf.config.experimental.enable_op_determinism()
    previous = keras.mixed_precision.global_policy()
    if params.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        return _train(paths, params, eval_params)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _generator_meta(crops: Crops, params: TrainParams) -> Generator:
    """How the trained generator is fed: noise, classes and their proportions, image shape."""
    n_classes = len(crops.breeds) if params.conditional else 0
    counts = np.bincount(crops.labels, minlength=len(crops.breeds))
    return Generator(
        model=None,
        z_dim=params.z_dim,
        noise=params.noise,
        n_classes=n_classes,
        class_probs=tuple(float(c) for c in counts / counts.sum()) if n_classes else (),
        image_shape=tuple(int(s) for s in crops.images.shape[1:]),
        breeds=tuple(str(b) for b in crops.breeds) if n_classes else (),
    )


def _restore(gan: GAN, params: TrainParams, folder: Path, total_steps: int) -> tf.train.CheckpointManager:
    """The run's checkpoint manager, after restoring the newest intact checkpoint (train.resume) or
    clearing the folder (otherwise)."""
    if not params.resume and folder.exists():
        shutil.rmtree(folder)
    checkpoint = gan.checkpoint()
    restored = restore_intact(checkpoint, folder) if params.resume else None
    manager = tf.train.CheckpointManager(checkpoint, str(folder), max_to_keep=KEEP)
    if restored:
        log.info("resumed from %s at step %d", restored, int(gan.step.numpy()))
    start = int(gan.step.numpy())
    if start > total_steps:
        raise DogganError(
            f"{folder}: checkpoint is at step {start}, past this run's {total_steps} steps; "
            "raise train.epochs or set train.resume: false to start over"
        )
    return manager


def _train(paths: TrainPaths, params: TrainParams, eval_params: EvalParams) -> dict:
    began = time.perf_counter()
    crops = load_crops(paths.crops)
    policy = load_policy(paths.policy, crops.images.shape[1:])
    if len(crops.images) < params.batch_size:
        raise DogganError(
            f"{paths.crops}: {len(crops.images)} crops, fewer than train.batch_size ({params.batch_size})"
        )
    strategy = make_strategy(params.devices)
    replicas = strategy.num_replicas_in_sync
    if params.batch_size % replicas:
        where = "train.devices" if params.devices else "the devices found"
        raise DogganError(
            f"train.batch_size {params.batch_size} does not split over the {replicas} replicas of {where}: "
            f"make it a multiple of {replicas}"
        )
    scratch = None if is_chief(strategy) else Path(tempfile.mkdtemp(prefix="doggan-worker-"))
    run = _start_run(
        paths if scratch is None else paths.outputs_under(scratch),
        params,
        eval_params,
        strategy,
        crops,
        began,
        policy,
    )
    dataset = train_dataset(crops.images, crops.labels, policy, params, run.start)
    stopped = _train_steps(run, iter(strategy.experimental_distribute_dataset(dataset)), scratch is None)
    run.manager.save(checkpoint_number=run.step)
    summary = run.reporter.on_train_end(_summary(run, stopped))
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    budget_note = " (time budget reached)" if stopped else ""
    log.info("trained %d steps in %.1f s%s", run.step - run.start, summary["train_time_s"], budget_note)
    return summary


def _start_run(
    paths: TrainPaths,
    params: TrainParams,
    eval_params: EvalParams,
    strategy: tf.distribute.Strategy,
    crops: Crops,
    began: float,
    policy: AugmentParams,
) -> Run:
    """Build the GAN in the strategy's scope, restore or clear its checkpoints, and open the reporter."""
    steps_per_epoch = len(crops.images) // params.batch_size
    total_steps = steps_per_epoch * params.epochs
    meta = _generator_meta(crops, params)
    replicas, n = strategy.num_replicas_in_sync, len(crops.images)
    log.info("training on %d replica(s): %d steps over %d crops", replicas, total_steps, n)
    with strategy.scope():
        gan = build_gan(meta.image_shape, params, total_steps, meta.n_classes, policy)
    manager = _restore(gan, params, paths.checkpoints, total_steps)
    start = int(gan.step.numpy())
    reporter = EpochReporter(paths, params, eval_params, gan, meta, resume=params.resume and start > 0)
    budget = Budget(params.time_budget_min, began)
    sizes = (steps_per_epoch, total_steps, start, start)
    return Run(params, strategy, gan, manager, reporter, budget, *sizes, policy.diff)


def _summary(run: Run, stopped: bool) -> dict:
    """The run's record: steps and epoch reached, whether the time budget stopped it, speed, rollbacks,
    skipped updates."""
    elapsed = time.perf_counter() - run.budget.began
    return {
        "start_step": run.start,
        "steps": run.step,
        "epoch": run.epoch_of(run.step),
        "epochs": run.params.epochs,
        "stopped_on_budget": stopped,
        "replicas": run.strategy.num_replicas_in_sync,
        "train_time_s": round(elapsed, 2),
        "images_per_s": round((run.step - run.start) * run.params.batch_size / max(elapsed, 1e-9), 1),
        "rollbacks": run.rollbacks,
        **run.reporter.skipped,
    }


def _call_length(run: Run) -> int:
    """Steps of the next call: train.steps_per_call, cut at the next epoch end and checkpoint (where the
    side jobs run) and at the run's end, then to what the time budget allows (0: stop)."""
    params, step = run.params, run.step
    to_epoch = run.steps_per_epoch - step % run.steps_per_epoch
    to_checkpoint = params.checkpoint_every - step % params.checkpoint_every
    n = min(params.steps_per_call, to_epoch, to_checkpoint, run.total_steps - step)
    evaluates = n == to_epoch and run.reporter.evaluates(run.epoch_of(step + n))
    return run.budget.fits(n, evaluates)


def _train_steps(run: Run, iterator, chief: bool) -> bool:
    """Train from run.step to the planned total in calls of up to train.steps_per_call steps, reporting
    each epoch; returns True when the time budget stopped it early (the unreported steps of its last epoch
    are then reported as a last epoch)."""
    reporter, params = run.reporter, run.params
    call = make_train_call(run.strategy, run.gan, params, run.diff)
    bar = tqdm(total=run.total_steps, initial=run.step, desc="train", unit="step", disable=not chief)
    while run.step < run.total_steps:
        n = _call_length(run)
        if not n:
            break
        if run.gan.top_k is not None:  # calls end at epoch ends: one share per call
            run.gan.top_k.assign(top_k_fraction(params.top_k, params.top_k_decay, run.epoch_of(run.step + 1)))
        call_began = time.perf_counter()
        done, totals, last = call(iterator, tf.constant(n))
        totals, done = {k: float(v) for k, v in totals.items()}, int(done)
        run.budget.record(time.perf_counter() - call_began, n)
        if done < n:
            losses = f"d_loss {float(last['d_loss'])}, g_loss {float(last['g_loss'])}"
            _rollback(run, f"non-finite loss at step {run.step + done + 1} ({losses})")
            bar.n = run.step
            bar.refresh()
            continue
        run.step += n
        if run.step % params.checkpoint_every == 0:
            run.manager.save(checkpoint_number=run.step)
        rate = reporter.on_steps_end(totals, n)
        bar.update(n)
        bar.set_postfix(d=f"{totals['d_loss'] / n:.3f}", g=f"{totals['g_loss'] / n:.3f}", img_s=f"{rate:.0f}")
        if run.step % run.steps_per_epoch == 0 or run.step == run.total_steps:
            _end_epoch(
                run, last=run.step == run.total_steps, evaluate=reporter.evaluates(run.epoch_of(run.step))
            )
    bar.close()
    stopped = run.step < run.total_steps
    if stopped and reporter.pending:
        _end_epoch(run, last=True, evaluate=False)
    return stopped


def _end_epoch(run: Run, last: bool, evaluate: bool) -> None:
    """Report the epoch of run.step, timing its MiFID evaluation for the budget."""
    began = time.perf_counter()
    run.reporter.on_epoch_end(run.epoch_of(run.step), last, evaluate)
    if evaluate:
        run.budget.evaluations.append(time.perf_counter() - began)


def _rollback(run: Run, problem: str) -> None:
    """Go back to the last checkpoint with lower learning rates (train.on_nonfinite: rollback), or stop
    with a DogganError naming the step and where the last good checkpoint is."""
    params, manager = run.params, run.manager
    if params.on_nonfinite != "rollback" or not manager.latest_checkpoint or run.rollbacks >= MAX_ROLLBACKS:
        raise DogganError(f"{problem}; the last good checkpoint is in {manager.directory}")
    manager.checkpoint.restore(manager.latest_checkpoint)
    run.gan.lr_scale.assign(run.gan.lr_scale * params.rollback_lr_factor)
    run.rollbacks += 1
    run.step = int(run.gan.step.numpy())
    log.warning(
        "%s: rolled back to step %d, learning rates x%.3g", problem, run.step, run.gan.lr_scale.numpy()
    )
    run.reporter.discard_epoch()
