"""Crop every dog out of the raw archives by its box, in a pool of processes, into one array file.

Photos are decoded straight from the zip members (no extraction), shrunk by the JPEG decoder when
the boxes allow it (OpenCV's reduced decoding), and each box becomes a square crop with a margin,
resized to `crop.size`. Crops stream from the workers into one growing array. What is skipped, and
why, is counted in the report.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import mmap
import multiprocessing
import os
import posixpath
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from doggan.annotations import AnnotationError, Box, parse
from doggan.archives import ArchiveError, is_image_name, open_zip, safe_members
from doggan.crops_file import Crops, save_crops
from doggan.errors import DogganError
from doggan.files import write_json
from doggan.grids import save_grid
from doggan.params import CropParams

log = logging.getLogger("doggan")


INTERPOLATION = {
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
REDUCED = {  # decoder flags per shrink factor: (colour, grayscale); JPEGs decode straight at 1/2, 1/4, 1/8
    1: (cv2.IMREAD_COLOR, cv2.IMREAD_GRAYSCALE),
    2: (cv2.IMREAD_REDUCED_COLOR_2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
    4: (cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
    8: (cv2.IMREAD_REDUCED_COLOR_8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
}
JPEG_SIGNATURE = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SOF_MARKERS = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
CHUNK = 32  # photos per task sent to a worker: about 20 ms of work, so the pool ends together


class ImageError(Exception):
    """A photo that cannot be cropped; `reason` is its line in the report."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Job(NamedTuple):
    member: str  # the photo in the images archive
    note: str | None  # its annotation in Annotation.zip; None: crop the centre square
    image_id: str


class Batch(NamedTuple):
    """What a worker sends back for a chunk of jobs: its crops stay in the shared arena."""

    jobs: int
    start: int  # the chunk's first slot in the arena
    in_arena: int  # crops written to the arena from `start` on
    overflow: np.ndarray  # (k, S, S, C) uint8: crops beyond the chunk's room in the arena
    breeds: list[str]
    ids: list[str]
    objects: int
    skips: list[tuple[str, str]]  # (reason, member)


class Plan(NamedTuple):
    images_path: Path
    notes_path: Path | None
    jobs: list[Job]
    n_images: int
    n_notes: int
    skips: list[tuple[str, str]]


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
    if box.xmin == box.xmax or box.ymin == box.ymax:
        return None, "empty box"
    clipped = Box(box.breed, max(box.xmin, 0), max(box.ymin, 0), min(box.xmax, width), min(box.ymax, height))
    if clipped.xmax <= clipped.xmin or clipped.ymax <= clipped.ymin:
        return None, "box outside the image"
    if min(clipped.xmax - clipped.xmin, clipped.ymax - clipped.ymin) < min_box:
        return None, "box smaller than crop.min_box"
    return clipped, None


def resize(image: np.ndarray, size: int, params: CropParams) -> np.ndarray:
    """Resize to size×size: `interpolation_down` when shrinking, `interpolation_up` when enlarging."""
    shrink = image.shape[0] >= size and image.shape[1] >= size
    method = INTERPOLATION[params.interpolation_down if shrink else params.interpolation_up]
    out = cv2.resize(image, (size, size), interpolation=method)
    return out[..., None] if out.ndim == 2 else out


def is_truncated(data: bytes) -> bool:
    """A JPEG whose last scan has no end marker after it, or a PNG whose last IDAT has no IEND after it.

    Decoders fill the missing part with grey instead of failing. Entropy-coded JPEG data never holds
    the bytes FF D9 or FF DA, so this also accepts photos with data appended after their end.
    """
    if data[:2] == JPEG_SIGNATURE:
        if data.endswith(b"\xff\xd9"):  # the common case, found without scanning the whole file
            return False
        return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")
    if data[:8] == PNG_SIGNATURE:
        return data.rfind(b"IEND") < data.rfind(b"IDAT")
    return False


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None when the markers before it do not add up."""
    i = 2
    while i + 9 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker in SOF_MARKERS:
            height, width = (
                int.from_bytes(data[i + 5 : i + 7], "big"),
                int.from_bytes(data[i + 7 : i + 9], "big"),
            )
            return (width, height) if width and height else None
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the image header, without decoding; ImageError when unreadable or too large."""
    if is_truncated(data):
        raise ImageError("truncated image")
    size = jpeg_size(data) if data[:2] == JPEG_SIGNATURE else None
    if size is None:  # not a JPEG, or an unusual one: Pillow reads every format's header
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                size = Image.open(io.BytesIO(data)).size
        except Image.DecompressionBombError:
            raise ImageError("image too large") from None
        except (OSError, ValueError, SyntaxError):
            raise ImageError("image failed to decode") from None
    width, height = size
    if width * height > (Image.MAX_IMAGE_PIXELS or width * height):
        raise ImageError("image too large")
    return width, height


def _decode_pil(data: bytes, channels: int, factor: int) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.draft("L" if channels == 1 else "RGB", (image.width // factor, image.height // factor))
    return np.asarray(image.convert("L" if channels == 1 else "RGB"))


def reduction(window: int, size: int) -> int:
    """The JPEG decoder's shrink factor (1, 2, 4 or 8) that still leaves a window at least `size` wide.

    Reduced decoding averages each factor×factor block while decoding, so the crops stay properly
    filtered; a window then snaps to that block grid, which moves it by less than half an output pixel.
    """
    return max(f for f in REDUCED if f == 1 or window >= size * f)


def decode(data: bytes, channels: int, factor: int = 1) -> np.ndarray:
    """Decode to RGB (channels 3) or gray (channels 1); JPEGs shrunk by `factor` (1, 2, 4 or 8) while
    decoding. Grayscale, CMYK, palette and PNG-in-JPEG inputs all come out the same way."""
    factor = factor if data[:2] == JPEG_SIGNATURE else 1
    flag = REDUCED[factor][0 if channels == 3 else 1] | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if pixels is None:  # a format this OpenCV build cannot read: let Pillow try
        try:
            return _decode_pil(data, channels, factor)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            raise ImageError("image failed to decode") from None
    if channels == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    return pixels


def crop_image(data: bytes, boxes: list[Box] | None, params: CropParams) -> tuple[list, list[str]]:
    """Crop every box of one photo (or its centre square when `boxes` is None).

    Returns ([(crop, breed)], [reason per skipped box]); raises ImageError when the photo is unusable.
    """
    width, height = image_size(data)
    if boxes is None:
        side = min(width, height)
        x0, y0 = (width - side) // 2, (height - side) // 2
        boxes, margin = [Box("image", x0, y0, x0 + side, y0 + side)], 0.0
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
    factor = reduction(smallest, params.size) if data[:2] == JPEG_SIGNATURE else 1
    pixels = decode(data, params.channels, factor)
    crops = []
    for box, (x0, y0, x1, y1) in zip(usable, windows, strict=True):
        # in decoded pixels: each covers factor×factor photo pixels, so windows snap to that grid
        a, b = round(x0 / factor), round(y0 / factor)
        c = min(a + max(1, round((x1 - x0) / factor)), pixels.shape[1])
        d = min(b + max(1, round((y1 - y0) / factor)), pixels.shape[0])
        crops.append((resize(pixels[b:d, a:c], params.size, params), box.breed))
    return crops, skips


SLOTS_PER_PHOTO = 2  # arena room per photo: Stanford Dogs has 22,125 dogs in 20,579 photos
_worker: dict = {}  # per process: the open archives and the arena


def _open_archives(images_path: Path, notes_path: Path | None) -> None:
    """Open the archives that `_crop_chunk` reads, once per process."""
    _worker["images"] = zipfile.ZipFile(images_path)
    if notes_path is not None:
        _worker["notes"] = zipfile.ZipFile(notes_path)


def _close_archives() -> None:
    for key in ("images", "notes"):
        if key in _worker:
            _worker.pop(key).close()


def make_arena(n_jobs: int, shape: tuple[int, ...]) -> np.ndarray | None:
    """Shared memory (inherited by forked workers) with room for SLOTS_PER_PHOTO crops per photo.

    Workers write their crops straight into it, so crops never travel through pipes; pages are only
    allocated as crops arrive. None when its size would exceed half the machine's memory.
    """
    nbytes = n_jobs * SLOTS_PER_PHOTO * math.prod(shape)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    if not nbytes or nbytes > memory // 2:
        return None
    return np.frombuffer(mmap.mmap(-1, nbytes), np.uint8).reshape(n_jobs * SLOTS_PER_PHOTO, *shape)


UNREADABLE = (zipfile.BadZipFile, zlib.error, EOFError, OSError)


def _crop_chunk(task: tuple[int, list[Job]], params: CropParams) -> Batch:
    """Parse the annotations and crop the photos of a chunk of jobs (in a worker).

    Crops fill the chunk's slots of the arena, `SLOTS_PER_PHOTO` per job from slot `start`; any
    beyond that room (or all, without an arena) come back in `overflow`.
    """
    start, jobs = task
    arena = _worker.get("arena")
    room = len(jobs) * SLOTS_PER_PHOTO if arena is not None else 0
    written, overflow, breeds, ids, skips, objects = 0, [], [], [], [], 0
    for job in jobs:
        boxes = None
        if job.note is not None:
            try:
                boxes = parse(_worker["notes"].read(job.note))
            except AnnotationError as exc:
                skips.append((exc.reason, job.note))
                continue
            except UNREADABLE:
                skips.append(("unreadable archive member", job.note))
                continue
            if not boxes:
                skips.append(("annotation without objects", job.note))
                continue
        objects += len(boxes) if boxes is not None else 1
        try:
            crops, reasons = crop_image(_worker["images"].read(job.member), boxes, params)
        except ImageError as exc:
            skips.append((exc.reason, job.member))
            continue
        except UNREADABLE:
            skips.append(("unreadable archive member", job.member))
            continue
        skips.extend((reason, job.note or job.member) for reason in reasons)
        for crop, breed in crops:
            if written < room:
                arena[start + written] = crop
                written += 1
            else:
                overflow.append(crop)
            breeds.append(breed)
            ids.append(job.image_id)
    shape = (0, params.size, params.size, params.channels)
    extra = np.stack(overflow) if overflow else np.empty(shape, np.uint8)
    return Batch(len(jobs), start, written, extra, breeds, ids, objects, skips)


def plan_jobs(raw_dir: Path) -> Plan:
    """Pair each photo with its annotation by image id; note refused members and unpaired files."""
    skips = []
    folder = raw_dir / "images.zip"
    images_path = folder if folder.exists() else raw_dir / "all-dogs.zip"
    with open_zip(images_path) as zf:
        members, refused = safe_members(zf)
    skips += [(f"unsafe archive member ({reason})", name) for name, reason in refused.items()]
    photos: dict[str, str] = {}
    for info in sorted(members, key=lambda i: i.filename):
        name = info.filename
        image_id = (
            name.split("/", 1)[-1]
            if images_path == folder
            else posixpath.splitext(posixpath.basename(name))[0]
        )
        if not is_image_name(name):
            skips.append(("not an image file", name))
        elif image_id in photos:
            skips.append(("duplicate image id", name))
        else:
            photos[image_id] = name
    if not photos:
        raise ArchiveError(f"{images_path}: no images in the archive")
    if images_path == folder:
        jobs = [Job(photos[k], None, k) for k in sorted(photos)]
        return Plan(images_path, None, jobs, len(photos), 0, skips)

    notes_path = raw_dir / "Annotation.zip"
    with open_zip(notes_path) as zf:
        members, refused = safe_members(zf)
    skips += [(f"unsafe archive member ({reason})", name) for name, reason in refused.items()]
    notes: dict[str, str] = {}
    for info in sorted(members, key=lambda i: i.filename):
        image_id = posixpath.basename(info.filename)
        if image_id in notes:
            skips.append(("duplicate image id", info.filename))
        else:
            notes[image_id] = info.filename
    if not notes:
        raise ArchiveError(f"{notes_path}: no annotations in the archive")
    jobs = []
    for image_id in sorted(photos):
        if image_id in notes:
            jobs.append(Job(photos[image_id], notes[image_id], image_id))
        else:
            skips.append(("image without annotation", photos[image_id]))
    skips += [("annotation without image", notes[k]) for k in sorted(set(notes) - set(photos))]
    return Plan(images_path, notes_path, jobs, len(photos), len(notes), skips)


def _batches(plan: Plan, params: CropParams, arena: np.ndarray | None) -> Iterator[Batch]:
    """Crop the plan's jobs chunk by chunk, in order: in a pool, or here when there is one worker."""
    workers = params.workers or os.cpu_count() or 1
    chunk = max(1, min(CHUNK, len(plan.jobs) // (workers * 4)))
    tasks = [(i * SLOTS_PER_PHOTO, plan.jobs[i : i + chunk]) for i in range(0, len(plan.jobs), chunk)]
    work = functools.partial(_crop_chunk, params=params)
    forking = "fork" in multiprocessing.get_all_start_methods()
    _worker["arena"] = arena if workers == 1 or forking else None
    try:
        if workers == 1:
            _open_archives(plan.images_path, plan.notes_path)
            try:
                yield from map(work, tasks)
            finally:
                _close_archives()
            return
        context = multiprocessing.get_context("fork" if forking else None)
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # forked workers inherit a single-threaded OpenCV: the pool is the parallelism
        try:
            pool = context.Pool(min(workers, len(tasks)), _open_archives, (plan.images_path, plan.notes_path))
        finally:
            cv2.setNumThreads(threads)
        with pool:
            yield from pool.imap(work, tasks)
    finally:
        _worker.pop("arena", None)


def crop_stage(
    raw_dir: Path, params: CropParams, out_path: Path, report_path: Path, preview_path: Path
) -> dict:
    """Crop every annotated dog of the raw archives into one array file, with a report and a preview."""
    plan = plan_jobs(Path(raw_dir))
    skipped: Counter = Counter()
    examples: dict[str, list[str]] = {}

    def skip(reason: str, name: str) -> None:
        skipped[reason] += 1
        if len(examples.setdefault(reason, [])) < 3:
            examples[reason].append(name)

    for reason, name in plan.skips:
        skip(reason, name)
    shape = (params.size, params.size, params.channels)
    arena = make_arena(len(plan.jobs), shape)
    segments, breeds, ids, objects = [], [], [], 0
    with tqdm(total=len(plan.jobs), desc="crop", unit="img", smoothing=0.1) as bar:
        for batch in _batches(plan, params, arena):
            if batch.in_arena:
                segments.append(arena[batch.start : batch.start + batch.in_arena])
            if len(batch.overflow):
                segments.append(batch.overflow)
            breeds += batch.breeds
            ids += batch.ids
            objects += batch.objects
            for reason, name in batch.skips:
                skip(reason, name)
            bar.update(batch.jobs)
    if not segments:
        raise DogganError(f"{plan.images_path}: no usable crops (skipped: {dict(skipped)})")
    names = np.array(sorted(set(breeds)))
    labels = np.searchsorted(names, np.array(breeds)).astype(np.int32)
    save_crops(out_path, Crops(segments, labels, np.array(ids), names))
    report = {
        "images": plan.n_images,
        "annotations": plan.n_notes,
        "objects": objects,
        "crops": len(breeds),
        "breeds": len(names),
        "skipped_total": sum(skipped.values()),
        "skipped": dict(sorted(skipped.items())),
        "examples": dict(sorted(examples.items())),
    }
    write_json(report_path, report)
    starts = np.cumsum([0] + [len(segment) for segment in segments])
    pick = np.sort(np.random.default_rng(0).permutation(len(breeds))[: params.preview])
    which = np.searchsorted(starts, pick, side="right") - 1
    save_grid(
        preview_path,
        np.stack([segments[w][i - starts[w]] for w, i in zip(which, pick, strict=True)]),
        scale=2,
    )
    log.info(
        "crop: %d crops of %d objects in %d photos; skipped %s",
        len(breeds),
        objects,
        plan.n_images,
        dict(skipped),
    )
    return report
