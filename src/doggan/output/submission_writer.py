"""Writing the submission: generated images PNG-encoded in a pool of threads, straight into the zip.

Images are generated in large batches while earlier ones are encoded (deflate releases the GIL, so the
threads run beside the generator's graph); the written zip is checked before the stage ends, so an
invalid submission is never left behind.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import time
import zipfile
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from tqdm import tqdm

from doggan.errors import DogganError
from doggan.files import atomic_path
from doggan.output.grids import save_grid
from doggan.output.submission import IMAGE_SIZE, MAX_UPLOAD_BYTES, N_IMAGES, PNG_SIGNATURE

if TYPE_CHECKING:
    from doggan.params import SubmissionParams

log = logging.getLogger("doggan")

# zlib level 1: PNG is lossless, so the pixels are the same; files a few % larger, deflate about 2x faster.
PNG_LEVEL = 1
PNG_FILTER_SUB = 1  # each byte minus the one a pixel to its left: smooth images deflate well
PREVIEW_IMAGES = 64
FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # zip timestamps fixed so that the same images give the same zip


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(height: int, width: int) -> bytes:
    """The signature and IHDR chunk of an 8-bit RGB PNG (colour type 2, no interlace): the first 33
    bytes of every image `encode_pngs` writes."""
    return PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


IEND = _chunk(b"IEND", b"")


def encode_pngs(batch: np.ndarray) -> list[bytes]:
    """PNG bytes of each uint8 RGB image (B, H, W, 3) of a batch: all rows Sub-filtered at once in numpy,
    each image deflated by zlib (which releases the GIL) at PNG_LEVEL."""
    b, h, w, c = batch.shape
    flat = batch.reshape(b, h, w * c)
    rows = np.empty((b, h, 1 + w * c), np.uint8)
    rows[:, :, 0] = PNG_FILTER_SUB
    rows[:, :, 1 : 1 + c] = flat[:, :, :c]
    np.subtract(flat[:, :, c:], flat[:, :, :-c], out=rows[:, :, 1 + c :])  # modulo 256, as PNG wants
    header = png_header(h, w)
    return [header + _chunk(b"IDAT", zlib.compress(image.tobytes(), PNG_LEVEL)) + IEND for image in rows]


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


def write_zip(
    batches: Iterable[np.ndarray], n: int, zip_path: Path, workers: int, chunk: int = 100
) -> list[zipfile.ZipInfo]:
    """Encode uint8 batches in `workers` threads and store them in order as 0.png … in `zip_path`;
    returns the entries written (names, sizes and CRCs of the bytes handed to the zip).

    Chunks go to the pool as soon as the generator yields them, so generation and encoding overlap;
    PNGs are already compressed, so they are stored, not deflated.
    """
    pool = ThreadPoolExecutor(workers, thread_name_prefix="png")
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
            return list(zf.infolist())
    finally:
        pool.shutdown(cancel_futures=True)


def check_written(zip_path: Path, written: list[zipfile.ZipInfo], n: int, first: np.ndarray) -> list[str]:
    """What `validate` would report of a zip `write_zip` just wrote, read back from the disk without
    decoding every PNG: the encoder's headers are known, so each entry is checked by its name, size, CRC
    and header; the `first` images are decoded and compared pixel for pixel. Empty when it is valid."""
    problems = []
    if [info.filename for info in written] != [f"{i}.png" for i in range(n)]:
        problems.append(f"{len(written):,} entries written, expected 0.png … {n - 1}.png")
    if (size := zip_path.stat().st_size) > MAX_UPLOAD_BYTES:
        problems.append(f"{size:,} bytes, over Kaggle's upload limit of {MAX_UPLOAD_BYTES:,} bytes")
    header = png_header(IMAGE_SIZE, IMAGE_SIZE)
    key = lambda info: (info.filename, info.file_size, info.CRC, info.compress_type)  # noqa: E731
    try:
        with zipfile.ZipFile(zip_path) as zf:
            if [key(info) for info in zf.infolist()] != [key(info) for info in written]:
                return [*problems, "the central directory does not list the entries written"]
            for info in zf.infolist():
                if not zf.read(info).startswith(header):  # reading to the end checks the CRC
                    problems.append(f"{info.filename}: not a {IMAGE_SIZE}×{IMAGE_SIZE} 8-bit RGB PNG")
            for i, pixels in enumerate(first):
                if not np.array_equal(np.asarray(Image.open(io.BytesIO(zf.read(f"{i}.png")))), pixels):
                    problems.append(f"{i}.png: decodes to other pixels than were generated")
    except (zipfile.BadZipFile, OSError, zlib.error) as exc:
        problems.append(f"not readable back as written ({exc})")
    return problems


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
    from doggan.output.critic import draw
    from doggan.output.sampling import load_generator

    try:
        gen = load_generator(model_dir)
    except FileNotFoundError as exc:
        raise DogganError(str(exc)) from None
    resize = _needs_resize(gen.image_shape, params, model_dir, zip_path)
    workers = params.workers or os.cpu_count() or 1
    preview: list[np.ndarray] = []

    def batches():
        shown = 0
        drawn = draw(
            gen,
            model_dir,
            params.n_images,
            params.best_of,
            params.seed,
            params.batch_size,
            params.truncation,
            off="submission.best_of: 1",
        )
        for batch in drawn:
            batch = to_kaggle_shape(batch) if resize else batch
            if shown < PREVIEW_IMAGES:
                preview.append(batch[: PREVIEW_IMAGES - shown])
                shown += len(preview[-1])
            yield batch

    began = time.perf_counter()
    with atomic_path(zip_path) as tmp:
        written = write_zip(batches(), params.n_images, tmp, workers)
        problems = check_written(tmp, written, params.n_images, np.concatenate(preview))
        if problems:
            raise DogganError(f"{zip_path}: invalid submission\n  " + "\n  ".join(problems))
    seconds = time.perf_counter() - began
    save_grid(preview_path, np.concatenate(preview), cols=8, scale=2)  # the images already in memory
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
