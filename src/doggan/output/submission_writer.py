"""Writing the submission: generated images PNG-encoded in a pool of processes, straight into the zip.

Images are generated in large batches while earlier ones are encoded; the zip is validated before
the stage ends, so an invalid submission is never left behind.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import time
import zipfile
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from tqdm import tqdm

from doggan.errors import DogganError
from doggan.files import atomic_path
from doggan.output.grids import save_grid
from doggan.output.submission import IMAGE_SIZE, N_IMAGES, validate
from doggan.processes import watch_parent

if TYPE_CHECKING:
    from doggan.params import SubmissionParams

log = logging.getLogger("doggan")

# zlib level 1: PNG is lossless, so the pixels are the same; files ~2-20% larger, encoding up to 4x faster.
PNG_LEVEL = 1
PREVIEW_IMAGES = 64
FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # zip timestamps fixed so that the same images give the same zip


def encode_pngs(batch: np.ndarray) -> list[bytes]:
    """PNG bytes of each uint8 RGB image (B, H, W, 3) of a batch."""
    out = []
    for image in batch:
        buffer = io.BytesIO()
        Image.fromarray(image, "RGB").save(buffer, format="PNG", compress_level=PNG_LEVEL)
        out.append(buffer.getvalue())
    return out


def to_kaggle_shape(batch: np.ndarray) -> np.ndarray:
    """Uint8 images of any size, gray or RGB, as 64×64 RGB: resized whole with Lanczos (as the real
    photos are for scoring), gray channels repeated."""
    out = np.empty((len(batch), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for i, image in enumerate(batch):
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).convert("RGB")
        out[i] = np.asarray(pil.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS))
    return out


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, FIXED_DATE)
    info.external_attr = 0o644 << 16
    return info


def _encoded(pool, batches: Iterable[np.ndarray], chunk: int, ahead: int) -> Iterator[list[bytes]]:
    """PNG bytes of consecutive chunks, in order, with up to `ahead` chunks queued in the pool."""
    pending: deque = deque()
    for batch in batches:
        for start in range(0, len(batch), chunk):
            pending.append(pool.submit(encode_pngs, batch[start : start + chunk]))
        while len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def write_zip(batches: Iterable[np.ndarray], n: int, zip_path: Path, workers: int, chunk: int = 100) -> None:
    """Encode uint8 batches in `workers` processes and store them in order as 0.png … in `zip_path`.

    Chunks go to the pool as soon as the generator yields them, so generation and encoding overlap;
    PNGs are already compressed, so they are stored, not deflated. The workers exit if this process
    dies, so a killed stage leaves none behind.
    """
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=watch_parent, initargs=(os.getpid(),))
    try:
        with (
            zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as zf,
            tqdm(total=n, desc="submission", unit="img") as bar,
        ):
            index = 0
            for pngs in _encoded(pool, batches, chunk, ahead=4 * workers):
                for png in pngs:
                    zf.writestr(_entry(f"{index}.png"), png)
                    index += 1
                bar.update(len(pngs))
    finally:
        pool.shutdown(cancel_futures=True)


def _needs_resize(image_shape: tuple, params: SubmissionParams, model_dir: Path, zip_path: Path) -> bool:
    """Whether generated images must be upsized to 64×64 RGB; an error when that is not allowed.

    Also warns when the zip will not be a Kaggle submission (resized images, or another count).
    """
    resize = tuple(image_shape) != (IMAGE_SIZE, IMAGE_SIZE, 3)
    if resize and not params.resize:
        raise DogganError(
            f"{Path(model_dir) / 'generator.json'}: the generator makes {image_shape} images; "
            f"Kaggle needs {IMAGE_SIZE}×{IMAGE_SIZE}×3 (set crop.size: 64 and crop.channels: 3, or "
            "submission.resize: true to upsize them for scoring)"
        )
    if resize:
        log.warning(
            "submission.resize: %s images upsized to %d×%d RGB; %s can be scored, but it is not a dog "
            "submission",
            "×".join(map(str, image_shape)),
            IMAGE_SIZE,
            IMAGE_SIZE,
            zip_path,
        )
    if params.n_images != N_IMAGES:
        log.warning(
            "submission.n_images is %s: %s is checked as a test zip, not a Kaggle submission "
            "(Kaggle requires %s images)",
            f"{params.n_images:,}",
            zip_path,
            f"{N_IMAGES:,}",
        )
    return resize


def submission_stage(model_dir: Path, params: SubmissionParams, zip_path: Path, preview_path: Path) -> dict:
    """Generate `submission.n_images` images in batches into a zip of PNGs, validate it, draw a preview."""
    from doggan.output.sampling import generate, load_generator

    try:
        gen = load_generator(model_dir)
    except FileNotFoundError as exc:
        raise DogganError(str(exc)) from None
    resize = _needs_resize(gen.image_shape, params, model_dir, zip_path)
    workers = params.workers or os.cpu_count() or 1
    preview: list[np.ndarray] = []

    def batches():
        shown = 0
        for batch in generate(gen, params.n_images, params.seed, params.batch_size, params.truncation):
            batch = to_kaggle_shape(batch) if resize else batch
            if shown < PREVIEW_IMAGES:
                preview.append(batch[: PREVIEW_IMAGES - shown])
                shown += len(preview[-1])
            yield batch

    began = time.perf_counter()
    with atomic_path(zip_path) as tmp:
        write_zip(batches(), params.n_images, tmp, workers)
        problems = validate(tmp, params.n_images)
        if problems:
            raise DogganError(f"{zip_path}: invalid submission\n  " + "\n  ".join(problems))
    seconds = time.perf_counter() - began
    save_grid(preview_path, np.concatenate(preview), cols=8, scale=2)
    summary = {
        "images": params.n_images,
        "bytes": zip_path.stat().st_size,
        "seconds": round(seconds, 2),
        "images_per_second": round(params.n_images / seconds, 1),
    }
    log.info(
        "submission: %d images, %.1f MB, in %.1f s (%.0f images/s), valid",
        summary["images"],
        summary["bytes"] / 1e6,
        seconds,
        summary["images_per_second"],
    )
    return summary
