"""MiFID speed: feature extraction, the FID square-root term and the evaluate stage, each against a
baseline measured in the same run.

(a) Images/s of our feature extraction (`backbones.features`, the path evaluate takes: uint8 64×64
    batches, one tf.function per backbone, resize to 299 and scaling on the device) against the bare
    Keras model called on batches already resized and scaled. Both are the real InceptionV3
    architecture with random weights (weights=None; ours loaded by our loader from a saved file):
    speed does not depend on the weights, and ImageNet's cannot be downloaded offline. Each side runs
    twice, alternating, after a warm-up batch; its faster run counts (so in (b) and (c) too).
(b) Seconds for FID on 2048×2048 covariances: Kaggle's route (scipy.linalg.sqrtm of S1 S2) against
    the default one (exact symmetric eigendecompositions where they apply), with both covariances of
    full rank, and with 1,000 generated images (rank-deficient, as scored during training) against
    full-rank real statistics.
(c) Seconds of the evaluate stage on a 10,000-image submission with the real statistics cached,
    against computing the statistics from the photos first and then scoring (what scoring from
    scratch costs), both with the stand-in backbone that `auto` picks offline. The raw photos are
    moved away while evaluate runs, so it would fail if it read them.

    .venv/bin/python benchmarks/mifid.py [--images 200] [--photos 2000] [--submission 10000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from doggan.data.sample import write_sample
from doggan.output.sampling import Generator, write_meta
from doggan.output.submission_writer import submission_stage
from doggan.params import EvalParams, Params, SubmissionParams, TrainParams
from doggan.scoring import backbones, mifid
from doggan.stages import evaluate, outputs, real_stats

BATCH = 50
SIZE = 299


def alternate(runs: dict, rounds: int = 2) -> tuple[dict, dict]:
    """Seconds of the faster of `rounds` alternating runs of each callable, and each one's last result."""
    seconds = dict.fromkeys(runs, float("inf"))
    results = {}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            results[name] = run()
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    return seconds, results


def extraction(n: int, folder: Path) -> None:
    """(a): our extraction of n 64×64 images against the bare model on the same images, pre-resized."""
    model = keras.applications.InceptionV3(
        include_top=False, pooling="avg", weights=None, input_shape=(SIZE, SIZE, 3)
    )
    model.save_weights(folder / "inception.weights.h5")
    backbone = backbones.keras_application("keras_imagenet", str(folder / "inception.weights.h5"))
    images = np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), np.uint8)
    batches = [images[i : i + BATCH] for i in range(0, n, BATCH)]
    resized = [
        (tf.image.resize(tf.cast(b, tf.float32), (SIZE, SIZE)).numpy() / 127.5 - 1.0).astype(np.float32)
        for b in batches
    ]

    def ours():
        return backbones.features(backbone, batches)

    def bare():
        return np.concatenate([model(b, training=False).numpy() for b in resized])

    backbones.features(backbone, batches[:1])
    model(resized[0], training=False)
    times, outputs = alternate({"ours": ours, "bare": bare})
    gap = float(np.abs(outputs["ours"] - outputs["bare"]).max())
    print(f"(a) feature extraction: real InceptionV3 architecture, random weights (weights=None), {n} images")
    print(f"    in batches of {BATCH}, features agree to {gap:.1e}")
    print(f"    bare model on pre-resized {SIZE}x{SIZE} batches: {n / times['bare']:7.1f} images/s")
    print(f"    ours (64x64 uint8 in, tf.function, resize on device): {n / times['ours']:7.1f} images/s")
    print(f"    ratio ours/bare: {times['bare'] / times['ours']:.2f} (goal >= 0.9)")
    estimate = 10_000 * times["ours"] / n
    print(f"    so 10,000 generated images take about {estimate:.0f} s through InceptionV3 here\n")


def relu_features(rng, n: int, dim: int = 2048, shift: float = 0.2) -> np.ndarray:
    """Correlated non-negative features, like a backbone's pooled activations."""
    mixing = np.eye(dim) + 0.05 * rng.normal(size=(dim, dim)) / np.sqrt(dim)
    return np.maximum(rng.normal(size=(n, dim)) @ mixing + shift, 0.0)


def fid_routes() -> None:
    """(b): both routes of the FID on the same 2048×2048 covariances."""
    rng = np.random.default_rng(0)
    real = mifid.statistics(relu_features(rng, 5000))
    print("(b) FID on 2048x2048 covariances (float64)")
    for label, n in (
        ("both of full rank (5,000 images each)", 5000),
        ("1,000 generated, rank-deficient", 1000),
    ):
        fake = mifid.statistics(relu_features(rng, n, shift=0.3))
        seconds, fid = alternate(
            {
                "sqrtm": lambda fake=fake: mifid.frechet_distance(*fake, *real, method="sqrtm"),
                "auto": lambda fake=fake: mifid.frechet_distance(*fake, *real),
            }
        )
        kaggle_s, fast_s, kaggle, fast = seconds["sqrtm"], seconds["auto"], fid["sqrtm"], fid["auto"]
        route = "eigh" if mifid.trace_sqrt_eigh(fake[1], real[1]) is not None else "sqrtm"
        print(f"    {label}: scipy sqrtm {kaggle_s:6.2f} s, default ({route}) {fast_s:5.2f} s, ", end="")
        print(f"speed-up {kaggle_s / fast_s:4.1f}x, relative difference {abs(fast - kaggle) / kaggle:.1e}")
    print()


def evaluate_stage(root: Path, n_photos: int, n_images: int) -> None:
    """(c): a project in `root` with photos and a submission; evaluate from cached statistics or not."""
    os.chdir(root)
    write_sample(outputs.RAW, n_photos, seed=0)
    model_dir = Path("models")
    model_dir.mkdir()
    from doggan.networks.dcgan import make_generator

    train = TrainParams()
    make_generator(train.z_dim, (64, 64, 3), train.g_filters).save(model_dir / "generator.keras")
    write_meta(model_dir, Generator(model=None, z_dim=train.z_dim))
    submission_stage(
        model_dir, SubmissionParams(n_images=n_images), outputs.SUBMISSION, outputs.SUBMISSION_PREVIEW
    )
    params = Params(eval=EvalParams(backbone="standin"))

    def from_scratch():
        real_stats.run(params)
        evaluate.run(params)

    def cached():
        """Evaluate with data/raw moved away; True if it wrote fresh metrics while the photos were gone."""
        before = outputs.EVAL.stat().st_mtime_ns
        outputs.RAW.rename(away)
        try:
            evaluate.run(params)
            return not outputs.RAW.exists() and outputs.EVAL.stat().st_mtime_ns > before
        finally:
            away.rename(outputs.RAW)

    away = Path("raw_moved_away")
    seconds, results = alternate({"scratch": from_scratch, "cached": cached})
    outputs.RAW.rename(away)
    try:
        real_stats.run(params)
        control = "real_stats still ran without them: the check proves nothing"
    except Exception as exc:
        control = f"real_stats without them fails ({type(exc).__name__}), so the move does hide them"
    finally:
        away.rename(outputs.RAW)
    print(f"(c) evaluate stage, stand-in backbone, {n_images:,} submitted PNGs, {n_photos:,} real photos")
    print(f"    real_stats then evaluate (statistics from the photos): {seconds['scratch']:6.1f} s")
    print(f"    evaluate, statistics cached, data/raw moved away:      {seconds['cached']:6.1f} s")
    print(f"    ratio: {seconds['scratch'] / seconds['cached']:.1f}x")
    written = "wrote fresh metrics" if results["cached"] else "DID NOT write fresh metrics"
    print(f"    check: evaluate {written} while data/raw was moved away;")
    print(f"    control: {control}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200, help="images through InceptionV3 per run")
    parser.add_argument("--photos", type=int, default=2000, help="real photos for the statistics")
    parser.add_argument("--submission", type=int, default=10_000, help="submitted images evaluated")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores\n")
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        extraction(args.images, root)
        fid_routes()
        (root / "project").mkdir()
        try:
            evaluate_stage(root / "project", args.photos, args.submission)
        finally:
            os.chdir(here)


if __name__ == "__main__":
    main()
