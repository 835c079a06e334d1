"""Images/s of the training input pipeline alone against the train step it feeds, in one run.

The pipeline is `loop.train_dataset` (augmentation policy, shuffling, batching, the step's noise
and D targets) over random 64×64×3 crops written with `save_crops` and read back with `load_crops`
(whose decode time is printed too). The step is the default DCGAN train step at batch 64, as
benchmarks/train_step.py runs it. The pipeline should deliver several times what the step consumes,
so the ratio pipeline / step says how much headroom it leaves.

    .venv/bin/python benchmarks/input_pipeline.py [--crops 4000] [--batches 150] [--steps 15]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import train_step  # noqa: E402

from doggan.crops.file import Crops, load_crops, save_crops  # noqa: E402
from doggan.params import AugmentParams, TrainParams  # noqa: E402
from doggan.training import loop  # noqa: E402

POLICIES = {
    "flip": AugmentParams(flip=True),
    "flip+translate": AugmentParams(flip=True, translate=0.125),
    "all jitters": AugmentParams(
        flip=True, brightness=0.1, contrast=0.1, saturation=0.1, hue=0.05, translate=0.125
    ),
}


def crops_file(folder: Path, n: int) -> Path:
    """A crops file of `n` random 64×64×3 crops over five breeds."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, *train_step.SHAPE), dtype=np.uint8)
    labels = rng.integers(0, 5, n).astype(np.int32)
    breeds = np.array([f"breed{k}" for k in range(5)])
    path = folder / "crops.npz"
    save_crops(path, Crops(images, labels, np.array([f"id{i}" for i in range(n)]), breeds))
    return path


def decode_rate(path: Path, rounds: int = 3) -> tuple[Crops, float]:
    """The crops and the best images/s of `load_crops` over a few reads."""
    best = 0.0
    for _ in range(rounds):
        began = time.perf_counter()
        crops = load_crops(path)
        best = max(best, len(crops.images) / (time.perf_counter() - began))
    return crops, best


def pipeline_rate(crops: Crops, policy: AugmentParams, params: TrainParams, batches: int) -> dict:
    """Images drawn from the train stage's dataset per second and per CPU-second of this process
    (which other processes on the machine do not lower), after a few warm-up batches."""
    iterator = iter(loop.train_dataset(crops.images, crops.labels, policy, params, 0))
    for _ in range(5):
        next(iterator)
    began, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        batch = next(iterator)
    batch["images"].numpy()
    n = batches * params.batch_size
    return {"wall": n / (time.perf_counter() - began), "cpu": n / (time.process_time() - cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=4000)
    parser.add_argument("--batches", type=int, default=150, help="pipeline batches timed per policy")
    parser.add_argument("--steps", type=int, default=15, help="train steps timed")
    args = parser.parse_args()
    params = TrainParams(batch_size=64)
    with tempfile.TemporaryDirectory() as tmp:
        crops, decode = decode_rate(crops_file(Path(tmp), args.crops))
    pipeline = {name: pipeline_rate(crops, p, params, args.batches) for name, p in POLICIES.items()}
    step = train_step.images_per_s(train_step.ours(params, crops.images), params.batch_size, args.steps)
    print(
        f"{args.crops} crops {'x'.join(map(str, train_step.SHAPE))}, batch {params.batch_size}, "
        f"{os.cpu_count()} CPU cores"
    )
    print(f"{'decode (load_crops)':>24}: {decode:10.1f} images/s")
    for name, rate in pipeline.items():
        print(f"{'pipeline, ' + name:>24}: {rate['wall']:10.1f} images/s ({rate['cpu']:.0f} per CPU-second)")
    print(f"{'train step (dcgan)':>24}: {step:10.1f} images/s")
    for name, rate in pipeline.items():
        print(f"ratio pipeline ({name}) / step: {rate['wall'] / step:.1f}")


if __name__ == "__main__":
    main()
