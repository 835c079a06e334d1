"""Crop every dog out of the raw archives by its box, in a pool of processes, into one array file.

Photos are decoded straight from the zip members (no extraction), shrunk by the JPEG decoder when
the boxes allow it (OpenCV's reduced decoding), and each box becomes a square crop with a margin,
resized to `crop.size`.
What is skipped, and why, is counted in the report.
"""

from __future__ import annotations

import functools
import io
import multiprocessing
import os
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from doggan.annotations import AnnotationError, Box, parse
from doggan.archives import open_zip, safe_members
from doggan.errors import DogganError
from doggan.files import atomic_path, write_json
from doggan.grids import save_grid
from doggan.params import CropParams


class Crops(NamedTuple):
    images: np.ndarray  # (N, S, S, C) uint8
    labels: np.ndarray  # (N,) int32, index into breeds
    ids: np.ndarray  # (N,) str, source image id of each crop
    breeds: np.ndarray  # (K,) str


def save_crops(path: str | Path, crops: Crops) -> None:
    """Write crops as one .npz file, atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(
            tmp,
            images=crops.images,
            labels=crops.labels.astype(np.int32),
            ids=np.asarray(crops.ids, dtype=str),
            breeds=np.asarray(crops.breeds, dtype=str),
        )


def load_crops(path: str | Path) -> Crops:
    """Read a crops file written by `save_crops`, with a clear error when it is missing or wrong."""
    path = Path(path)
    if not path.is_file():
        raise DogganError(f"{path}: crops file not found (run the crop stage)")
    try:
        with np.load(path, allow_pickle=False) as data:
            crops = Crops(data["images"], data["labels"], data["ids"], data["breeds"])
    except (KeyError, ValueError, OSError) as exc:
        raise DogganError(f"{path}: not a crops file ({exc})") from None
    if crops.images.ndim != 4 or crops.images.dtype != np.uint8 or len(crops.images) == 0:
        raise DogganError(f"{path}: expected a non-empty uint8 array (N, S, S, C) of crops")
    return crops


INTERPOLATION = {
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class Job(NamedTuple):
    member: str  # the photo in the images archive
    note: str | None  # its annotation in Annotation.zip; None: crop the centre square


class Outcome(NamedTuple):
    member: str
    objects: int
    crops: list[tuple[np.ndarray, str]]
    skips: list[str]


def square_window(box: Box, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """The square around a box, grown by `margin` of its longer side, moved inside the image, clipped."""
    side = max(box.xmax - box.xmin, box.ymax - box.ymin) * (1.0 + margin)
    side = min(side, max(width, height))
    cx, cy = (box.xmin + box.xmax) / 2, (box.ymin + box.ymax) / 2
    x0 = min(max(cx - side / 2, 0.0), max(width - side, 0.0))
    y0 = min(max(cy - side / 2, 0.0), max(height - side, 0.0))
    return (
        int(round(x0)),
        int(round(y0)),
        int(round(min(x0 + side, width))),
        int(round(min(y0 + side, height))),
    )


def check_box(box: Box, width: int, height: int, min_box: int) -> tuple[Box | None, str | None]:
    """Clip a box to the image; return (box, None) when usable, else (None, reason)."""
    if box.xmin > box.xmax or box.ymin > box.ymax:
        return None, "inverted box"
    clipped = Box(box.breed, max(box.xmin, 0), max(box.ymin, 0), min(box.xmax, width), min(box.ymax, height))
    if clipped.xmax <= clipped.xmin or clipped.ymax <= clipped.ymin:
        return None, "empty box or box outside the image"
    if min(clipped.xmax - clipped.xmin, clipped.ymax - clipped.ymin) < min_box:
        return None, "box smaller than crop.min_box"
    return clipped, None


def resize(image: np.ndarray, size: int, params: CropParams) -> np.ndarray:
    shrink = image.shape[0] >= size and image.shape[1] >= size
    method = INTERPOLATION[params.interpolation_down if shrink else params.interpolation_up]
    out = cv2.resize(image, (size, size), interpolation=method)
    return out[..., None] if out.ndim == 2 else out


REDUCED = {  # decoder flags per shrink factor: (colour, grayscale); JPEGs decode straight at 1/2, 1/4, 1/8
    1: (cv2.IMREAD_COLOR, cv2.IMREAD_GRAYSCALE),
    2: (cv2.IMREAD_REDUCED_COLOR_2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
    4: (cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
    8: (cv2.IMREAD_REDUCED_COLOR_8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_truncated(data: bytes) -> bool:
    """A JPEG without its end marker or a PNG without IEND (decoders would fill the rest with grey)."""
    if data[:2] == b"\xff\xd8":
        return not data.rstrip(b"\0").endswith(b"\xff\xd9")
    if data[:8] == PNG_SIGNATURE:
        return b"IEND" not in data[-16:]
    return False


def _decode(data: bytes, channels: int, width: int, scale: float) -> tuple[np.ndarray, float]:
    """Decode to RGB or gray, shrunk by the largest of 1, 2, 4, 8 not above `scale`; (pixels, factor)."""
    if is_truncated(data):
        raise ValueError("truncated image")
    factor = max(f for f in REDUCED if f <= max(scale, 1.0))
    flag = REDUCED[factor][0 if channels == 3 else 1] | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if pixels is None:
        raise ValueError("undecodable image")
    if channels == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    return pixels, width / pixels.shape[1]


def crop_image(data: bytes, boxes: tuple[Box, ...] | None, params: CropParams) -> tuple[list, list[str]]:
    """Crop every box of one photo (or its centre square); returns ([(crop, breed)], [skip reasons])."""
    width, height = Image.open(io.BytesIO(data)).size
    if boxes is None:
        side = min(width, height)
        x0, y0 = (width - side) // 2, (height - side) // 2
        boxes = (Box("image", x0, y0, x0 + side, y0 + side),)
        margin = 0.0
    else:
        margin = params.margin
    usable, skips = [], []
    for box in boxes:
        clipped, reason = check_box(box, width, height, params.min_box)
        if reason:
            skips.append(reason)
        else:
            usable.append(clipped)
    if not usable:
        return [], skips
    windows = [square_window(b, width, height, margin) for b in usable]
    smallest = min(min(x1 - x0, y1 - y0) for x0, y0, x1, y1 in windows)
    pixels, factor = _decode(data, params.channels, width, smallest / params.size)
    crops = []
    for box, (x0, y0, x1, y1) in zip(usable, windows, strict=True):
        a, b = int(x0 / factor), int(y0 / factor)
        c, d = max(int(round(x1 / factor)), a + 1), max(int(round(y1 / factor)), b + 1)
        crops.append((resize(pixels[b:d, a:c], params.size, params), box.breed))
    return crops, skips


_worker_zips: dict[str, zipfile.ZipFile] = {}


def _init_worker(images_path: str, notes_path: str | None) -> None:
    _worker_zips["images"] = zipfile.ZipFile(images_path)
    if notes_path:
        _worker_zips["notes"] = zipfile.ZipFile(notes_path)


def _work(job: Job, params: CropParams) -> Outcome:
    """Parse one annotation and crop its photo (in a worker process, which holds both archives)."""
    boxes = None
    if job.note is not None:
        try:
            boxes = tuple(parse(_worker_zips["notes"].read(job.note)))
        except AnnotationError as exc:
            return Outcome(job.note, 0, [], [exc.reason])
        if not boxes:
            return Outcome(job.note, 0, [], ["annotation without objects"])
    objects = len(boxes) if boxes else 1
    try:
        crops, skips = crop_image(_worker_zips["images"].read(job.member), boxes, params)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, zipfile.BadZipFile):
        return Outcome(job.member, objects, [], ["image failed to decode"])
    return Outcome(job.member, objects, crops, skips)


def _image_id(name: str) -> str:
    return PurePosixPath(name).stem


def plan_jobs(raw_dir: Path, report: Counter, examples: dict) -> tuple[Path, Path | None, int, list[Job]]:
    """Pair each photo with its annotation by name; count refused members and unpaired files."""

    def skip(reason: str, name: str, n: int = 1) -> None:
        report[reason] += n
        examples.setdefault(reason, [])
        if len(examples[reason]) < 3:
            examples[reason].append(name)

    folder = raw_dir / "images.zip"
    images_path = folder if folder.exists() else raw_dir / "all-dogs.zip"
    with open_zip(images_path) as zf:
        members, refused = safe_members(zf)
    for name, reason in refused.items():
        skip(f"unsafe archive member ({reason})", name)
    photos = {}
    for info in members:
        if info.filename.lower().endswith(IMAGE_SUFFIXES):
            photos[_image_id(info.filename)] = info.filename
    if not photos:
        raise DogganError(f"{images_path}: no images in the archive")
    if images_path == folder:
        return images_path, None, len(photos), [Job(photos[k], None) for k in sorted(photos)]

    notes_path = raw_dir / "Annotation.zip"
    with open_zip(notes_path) as zf:
        members, refused = safe_members(zf)
    for name, reason in refused.items():
        skip(f"unsafe archive member ({reason})", name)
    notes = {_image_id(info.filename): info.filename for info in members}
    jobs = []
    for image_id in sorted(photos):
        if image_id in notes:
            jobs.append(Job(photos[image_id], notes[image_id]))
        else:
            skip("image without annotation", photos[image_id])
    for image_id in sorted(set(notes) - set(photos)):
        skip("annotation without image", notes[image_id])
    return images_path, notes_path, len(photos), jobs


def crop_stage(
    raw_dir: Path, params: CropParams, out_path: Path, report_path: Path, preview_path: Path
) -> dict:
    """Crop every annotated dog of the raw archives into one array file, with a report and a preview."""
    skipped: Counter = Counter()
    examples: dict[str, list[str]] = {}
    images_path, notes_path, n_photos, jobs = plan_jobs(Path(raw_dir), skipped, examples)
    objects = 0
    workers = params.workers or os.cpu_count() or 1
    crops, breeds, ids = [], [], []
    work = functools.partial(_work, params=params)
    context = multiprocessing.get_context("fork")
    notes_arg = str(notes_path) if notes_path else None
    with context.Pool(workers, _init_worker, (str(images_path), notes_arg)) as pool:
        results = pool.imap(work, jobs, chunksize=max(1, min(64, len(jobs) // (workers * 8) or 1)))
        for outcome in tqdm(results, total=len(jobs), desc="crop", unit="img", smoothing=0.1):
            objects += outcome.objects
            for reason in outcome.skips:
                skipped[reason] += 1
                examples.setdefault(reason, [])
                if len(examples[reason]) < 3:
                    examples[reason].append(outcome.member)
            for crop, breed in outcome.crops:
                crops.append(crop)
                breeds.append(breed)
                ids.append(_image_id(outcome.member))
    if not crops:
        raise DogganError(f"{images_path}: no usable crops ({dict(skipped)})")
    names = np.array(sorted(set(breeds)))
    labels = np.searchsorted(names, np.array(breeds)).astype(np.int32)
    images = np.stack(crops)
    save_crops(out_path, Crops(images, labels, np.array(ids), names))
    report = {
        "images": n_photos,
        "objects": objects,
        "crops": len(images),
        "breeds": len(names),
        "skipped": sum(skipped.values()),
        "skipped_by_reason": dict(sorted(skipped.items())),
        "examples": examples,
    }
    write_json(report_path, report)
    pick = np.random.default_rng(0).permutation(len(images))[: min(len(images), 64)]
    save_grid(preview_path, images[np.sort(pick)], scale=2)
    return report
