"""The crop stage's workers: a pool of processes, each with the archives open, cropping chunks of
photos in order into a shared-memory arena, so crops never travel through pipes."""

from __future__ import annotations

import functools
import math
import mmap
import multiprocessing
import os
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from doggan.crops.decode import ImageError
from doggan.crops.photo_crops import crop_image
from doggan.data.annotations import AnnotationError, Box, parse
from doggan.params import CropParams
from doggan.processes import watch_parent

CHUNK = 32  # photos per task sent to a worker: about 20 ms of work, so the pool ends together
SLOTS_PER_PHOTO = 2  # arena room per photo for its box crops: Stanford Dogs has 22,125 dogs in 20,579 photos
UNREADABLE = (zipfile.BadZipFile, zlib.error, EOFError, OSError)
_worker: dict = {}  # per process: the open archives and the arena


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
    whole_photos: int  # whole-photo crops among them
    skips: list[tuple[str, str]]  # (reason, member)


def slots_per_photo(params: CropParams) -> int:
    """Arena room per photo: its box crops, and one more for its whole-photo crop when asked for."""
    return SLOTS_PER_PHOTO + (params.whole_photos != "none")


def _open_archives(images_path: Path, notes_path: Path | None) -> None:
    """Open the archives that `_crop_chunk` reads, once per process."""
    _worker["images"] = zipfile.ZipFile(images_path)
    if notes_path is not None:
        _worker["notes"] = zipfile.ZipFile(notes_path)


def _close_archives() -> None:
    for key in ("images", "notes"):
        if key in _worker:
            _worker.pop(key).close()


def make_arena(n_jobs: int, shape: tuple[int, ...], slots: int) -> np.ndarray | None:
    """Shared memory (inherited by forked workers) with room for `slots` crops per photo.

    Workers write their crops straight into it, so crops never travel through pipes; pages are only
    allocated as crops arrive. None when its size would exceed half the machine's memory.
    """
    nbytes = n_jobs * slots * math.prod(shape)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    if not nbytes or nbytes > memory // 2:
        return None
    return np.frombuffer(mmap.mmap(-1, nbytes), np.uint8).reshape(n_jobs * slots, *shape)


def _read_boxes(job: Job) -> tuple[list[Box] | None, tuple[str, str] | None]:
    """The boxes of a job's annotation (None without one), or None and the (reason, member) skipped."""
    if job.note is None:
        return None, None
    try:
        boxes = parse(_worker["notes"].read(job.note))
    except AnnotationError as exc:
        return None, (exc.reason, job.note)
    except UNREADABLE:
        return None, ("unreadable archive member", job.note)
    return (boxes, None) if boxes else (None, ("annotation without objects", job.note))


def _crop_chunk(task: tuple[int, list[Job]], params: CropParams) -> Batch:
    """Parse the annotations and crop the photos of a chunk of jobs (in a worker).

    Crops fill the chunk's slots of the arena, `slots_per_photo` per job from slot `start`; any
    beyond that room (or all, without an arena) come back in `overflow`, in order after them.
    """
    start, jobs = task
    arena = _worker.get("arena")
    room = len(jobs) * slots_per_photo(params) if arena is not None else 0
    written, overflow, breeds, ids, skips, objects, whole = 0, [], [], [], [], 0, 0
    for job in jobs:
        boxes, skip = _read_boxes(job)
        if skip:
            skips.append(skip)
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
        if boxes is not None and params.whole_photos != "none":  # crop_image added it, last
            whole += 1
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
    return Batch(len(jobs), start, written, extra, breeds, ids, objects, whole, skips)


def batches(
    jobs: list[Job], images_path: Path, notes_path: Path | None, params: CropParams, arena: np.ndarray | None
) -> Iterator[Batch]:
    """Crop the jobs chunk by chunk, in order: in a pool, or here when there is one worker."""
    workers = params.workers or os.cpu_count() or 1
    chunk = max(1, min(CHUNK, len(jobs) // (workers * 4)))
    slots = slots_per_photo(params)
    tasks = [(i * slots, jobs[i : i + chunk]) for i in range(0, len(jobs), chunk)]
    work = functools.partial(_crop_chunk, params=params)
    forking = "fork" in multiprocessing.get_all_start_methods()
    _worker["arena"] = arena if workers == 1 or forking else None
    try:
        if workers == 1:
            _open_archives(images_path, notes_path)
            try:
                yield from map(work, tasks)
            finally:
                _close_archives()
            return
        context = multiprocessing.get_context("fork" if forking else None)
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # forked workers inherit a single-threaded OpenCV: the pool is the parallelism
        try:
            pool = context.Pool(
                min(workers, len(tasks)), watch_parent, (os.getpid(), _open_archives, images_path, notes_path)
            )
        finally:
            cv2.setNumThreads(threads)
        with pool:
            yield from pool.imap(work, tasks)
    finally:
        _worker.pop("arena", None)
