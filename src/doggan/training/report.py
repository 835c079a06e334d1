"""The record a training run leaves, epoch by epoch, in the manner of a Keras callback: dvclive metrics,
sample grids of fixed noise, MiFID during training and the best generator so far; at the end the
generator, the final grid, the progress GIF and the run's summary."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from doggan.files import atomic_path
from doggan.output.critic import write_critic
from doggan.output.grids import save_grid, to_uint8
from doggan.output.sampling import GENERATOR_FILE, Generator, generate, sample_noise, write_meta
from doggan.params import EvalParams, TrainParams
from doggan.training.paths import TrainPaths
from doggan.training.state import GAN, current_rate

SAMPLE_GRID = 64
MEAN_VALUES = ("d_loss", "g_loss", "d_real", "d_fake")
COUNTED_VALUES = ("d_skipped", "g_skipped")
SCORED_VALUES = ("mifid", "fid", "kid", "precision", "recall", "density", "coverage")  # as train/<name>


def write_generator(model: keras.Model, meta: Generator, model_dir: Path) -> None:
    """Save the generator to sample from (`generator.keras` + `generator.json`), atomically."""
    with atomic_path(model_dir / GENERATOR_FILE, suffix=".keras") as tmp:
        model.save(tmp)
    write_meta(model_dir, meta)


def sample_grid(model: keras.Model, noise: np.ndarray, n_classes: int) -> np.ndarray:
    """The fixed-noise grid; a conditional model draws the classes in turn."""
    inputs = [noise, np.arange(len(noise), dtype=np.int32) % n_classes] if n_classes else noise
    return to_uint8(model(inputs, training=False).numpy())


def save_gif(frames: list[Path], path: Path) -> None:
    """The epochs' grids as an animated GIF, written atomically. Each frame gets its 256 colours by the
    fast octree: Pillow's default median cut takes about a second per grid, minutes for a run's frames."""
    from PIL import Image

    images = [Image.open(f).convert("RGB").quantize(method=Image.Quantize.FASTOCTREE) for f in frames]
    with atomic_path(path, suffix=".gif") as tmp:
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=400, loop=0)


def score(gen: Generator, params: TrainParams, eval_params: EvalParams, real_stats: Path) -> dict:
    """MiFID and the measures beside it (SCORED_VALUES) of freshly drawn samples against the real
    statistics."""
    from doggan.scoring import evaluation

    images = np.concatenate(list(generate(gen, eval_params.n_images_train, seed=params.seed + 2)))
    record = evaluation.score_images(images, real_stats, eval_params)
    return {name: float(record[name]) for name in SCORED_VALUES}


class EpochReporter:
    """Collects the step values of the current epoch and writes what each epoch and the run's end leave.

    `resume` continues the dvclive series and keeps earlier epochs' grids; otherwise both start afresh.
    """

    def __init__(
        self,
        paths: TrainPaths,
        params: TrainParams,
        eval_params: EvalParams,
        gan: GAN,
        meta: Generator,
        resume: bool,
    ):
        from dvclive import Live

        self.paths, self.params, self.eval_params, self.gan, self.meta = paths, params, eval_params, gan, meta
        self.frames = paths.plots / "epochs"
        if not params.resume:
            shutil.rmtree(paths.plots, ignore_errors=True)
        self.frames.mkdir(parents=True, exist_ok=True)
        self.live = Live(dir=str(paths.live), dvcyaml=False, save_dvc_exp=False, report=None, resume=resume)
        self.noise = sample_noise(
            np.random.default_rng(params.seed + 1), SAMPLE_GRID, params.z_dim, params.noise
        )
        best_mifid, best_epoch = gan.best.numpy()
        keep = params.keep_best and np.isfinite(best_mifid)
        self.best = (float(best_mifid), int(best_epoch)) if keep else None
        self.skipped = dict.fromkeys(COUNTED_VALUES, 0)
        self.discard_epoch()

    def discard_epoch(self) -> None:
        """Forget the steps of the current epoch (a rollback undid them)."""
        self.epoch_totals, self.epoch_steps = dict.fromkeys(MEAN_VALUES + COUNTED_VALUES, 0.0), 0
        self.epoch_began = time.perf_counter()

    @property
    def pending(self) -> bool:
        """True while steps of the current epoch are not yet reported."""
        return self.epoch_steps > 0

    def on_steps_end(self, totals: dict, steps: int) -> float:
        """Record the values of `steps` steps, summed over them (one compiled call's); returns the
        images/s of the epoch so far."""
        for name in self.epoch_totals:
            self.epoch_totals[name] += totals[name]
        self.epoch_steps += steps
        return self.images_per_s()

    def images_per_s(self) -> float:
        elapsed = max(time.perf_counter() - self.epoch_began, 1e-9)
        return self.epoch_steps * self.params.batch_size / elapsed

    def evaluates(self, epoch: int) -> bool:
        """Whether the end of `epoch` scores MiFID (train.eval_every, and real statistics to score with)."""
        every = self.params.eval_every
        return bool(every and epoch % every == 0 and self.paths.real_stats.is_file())

    def on_epoch_end(self, epoch: int, last: bool, evaluate: bool) -> None:
        """Log the epoch's metrics, draw its grid (every sample_every epochs and at the `last` one) and,
        when `evaluate`, score MiFID and keep the generator if it is the best so far."""
        log = self.live.log_metric
        for name in MEAN_VALUES:
            log(f"train/{name}", self.epoch_totals[name] / self.epoch_steps)
        for name in COUNTED_VALUES:
            count = int(np.rint(self.epoch_totals[name]))
            self.skipped[name] += count
            log(f"train/{name}", count)
        log("train/lr_g", current_rate(self.gan.g_opt))
        log("train/lr_d", current_rate(self.gan.d_opt))
        if self.gan.ada is not None:
            log("train/ada_p", float(self.gan.ada.p.numpy()))
        if self.gan.top_k is not None:
            log("train/top_k", float(self.gan.top_k.numpy()))
        log("train/images_per_s", self.images_per_s())
        if epoch % self.params.sample_every == 0 or last:
            save_grid(
                self.frames / f"epoch_{epoch:04d}.png",
                sample_grid(self.gan.sampler, self.noise, self.meta.n_classes),
            )
        if evaluate:
            self._evaluate(epoch)
        self.live.next_step()
        self.discard_epoch()

    def _evaluate(self, epoch: int) -> None:
        scored = score(
            replace(self.meta, model=self.gan.sampler),
            self.params,
            self.eval_params,
            self.paths.real_stats,
        )
        for name, value in scored.items():
            self.live.log_metric(f"train/{name}", value)
        mifid = scored["mifid"]
        if self.params.keep_best and (self.best is None or mifid < self.best[0]):
            self.best = (mifid, epoch)
            self.gan.best.assign(self.best)
            write_generator(self.gan.sampler, self.meta, self.paths.models)

    def on_train_end(self, summary: dict) -> dict:
        """Write the summary to dvclive, the generator (unless keep_best saved one), the final grid and the
        GIF of the epochs' grids; returns the summary with the best MiFID and its epoch when kept."""
        if self.best is not None:
            summary = {**summary, "best_mifid": self.best[0], "best_epoch": self.best[1]}
        for key, value in summary.items():
            self.live.summary[key] = value
        self.live.end()
        if self.best is None:
            write_generator(self.gan.sampler, self.meta, self.paths.models)
        write_critic(
            self.gan.discriminator, self.params, self.meta.image_shape, self.gan.n_classes, self.paths.models
        )
        plots = self.paths.plots
        save_grid(
            plots / "samples.png", sample_grid(self.gan.sampler, self.noise, self.meta.n_classes), scale=2
        )
        frames = sorted(self.frames.glob("epoch_*.png"))
        if frames:
            save_gif(frames, plots / "progress.gif")
        return summary
