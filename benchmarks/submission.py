"""Submission speed: our stage against the seed notebook's loop, on the same generator, in one run.

The seed notebook called the generator once per image, saved each PNG to a folder with PIL, zipped
the folder and deleted it. Our stage generates in large batches, encodes PNGs in threads and writes
them straight into the zip, then checks the written zip and draws a preview; it is timed inside this
process and as a user runs it, `doggan submission` as a process of its own (start-up, imports and
loading the generator included). Both use the pipeline's DCGAN generator at the default size
(untrained: speed does not depend on the weights).

    .venv/bin/python benchmarks/submission.py [--images 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image

from doggan.output.grids import to_uint8
from doggan.output.sampling import Generator, load_generator, write_meta
from doggan.output.submission import validate
from doggan.output.submission_writer import submission_stage
from doggan.params import SubmissionParams, TrainParams


def save_generator(model_dir: Path) -> None:
    from doggan.networks.dcgan import make_generator

    train = TrainParams()
    model = make_generator(train.z_dim, (64, 64, 3), train.g_filters)
    model.save(model_dir / "generator.keras")
    write_meta(model_dir, Generator(model=None, z_dim=train.z_dim))


def seed_loop(model_dir: Path, n: int, zip_base: Path, seed: int = 0) -> Path:
    """The seed notebook's way: one generator call per image, a PNG file each, zip the folder, delete it."""
    gen = load_generator(model_dir)
    rng = np.random.default_rng(seed)
    folder = zip_base.parent / "images"
    folder.mkdir()
    for i in range(n):
        z = rng.standard_normal((1, gen.z_dim)).astype(np.float32)
        image = to_uint8(gen.model(z, training=False).numpy())[0]
        Image.fromarray(image).save(folder / f"{i}.png")
    archive = Path(shutil.make_archive(str(zip_base), "zip", folder))
    shutil.rmtree(folder)
    return archive


def whole_stage(root: Path, n: int) -> float:
    """Seconds of `doggan submission` run as a user runs it, in a folder holding models/."""
    (root / "params.yaml").write_text(f"submission:\n  n_images: {n}\n")
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "doggan.cli", "submission", "--params", "params.yaml"],
        cwd=root,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=10_000, help="images per run (Kaggle's 10,000)")
    args = parser.parse_args()
    n = args.images
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = root / "models"
        model_dir.mkdir()
        save_generator(model_dir)
        train = TrainParams()
        print(f"generator: the pipeline's DCGAN (z_dim {train.z_dim}, g_filters {train.g_filters})")
        print(f"{n:,} images per run, {os.cpu_count()} CPU cores\n")

        start = time.perf_counter()
        params = SubmissionParams(n_images=n)
        submission_stage(model_dir, params, root / "ours/images.zip", root / "ours/preview.png")
        ours = time.perf_counter() - start
        process = whole_stage(root, n)

        (root / "seed").mkdir()
        start = time.perf_counter()
        seed_zip = seed_loop(model_dir, n, root / "seed/images")
        seed = time.perf_counter() - start

        for name, path in (("ours", root / "ours/images.zip"), ("seed", seed_zip)):
            problems = validate(path, n_images=n)
            print(
                f"{name} zip: {path.stat().st_size / 1e6:.1f} MB, {'valid' if not problems else problems[0]}"
            )
        print()
        print(f"seed loop (one call per image, PNG files, zip): {seed:7.1f} s  {n / seed:8.1f} images/s")
        print(
            f"our stage (batches {params.batch_size}, encoding threads, "
            f"straight to zip, checked): {ours:7.1f} s  {n / ours:8.1f} images/s"
        )
        print(f"doggan submission, a process of its own:  {process:7.1f} s  {n / process:8.1f} images/s")
        print(f"speed-up in process: {seed / ours:.1f}x; as a process: {seed / process:.1f}x (goal >= 10x)")


if __name__ == "__main__":
    main()
