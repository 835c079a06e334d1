"""The crop stage's workers: processes that take chunks of photos by a shared counter and crop them
into a shared-memory arena, so crops never travel through pipes.

Forked workers inherit the archives the parent opened and planned with: they read members by
positioned reads through its directory, read once. Each worker sends its batches through a pipe of
its own, which the parent alone reads: no thread of the parent polls while the workers crop.
"""

from __future__ import annotations

import math
import mmap
import multiprocessing
import os
import traceback
import zipfile
import zlib
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from typing import NamedTuple

import cv2
import numpy as np

from doggan.crops.decode import ImageError
from doggan.crops.photo_crops import crop_image
from doggan.data.annotations import AnnotationError, Box, parse
from doggan.data.archives import open_zip, read_member
from doggan.params import CropParams
from doggan.processes import watch_parent

CHUNK = 32  # photos per task sent to a worker: about 20 ms of work, so the pool ends together
SLOTS_PER_PHOTO = 2  # arena room per photo for its box crops: Stanford Dogs has 22,125 dogs in 20,579 photos
UNREADABLE = (zipfile.BadZipFile, zlib.error, EOFError, OSError)
START = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"  # how workers start
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


def _open_archives(images_path: str, notes_path: str | None) -> None:
    """Open the archives that `_crop_chunk` reads, in a worker that did not inherit them."""
    _worker["images"] = open_zip(images_path)
    if notes_path is not None:
        _worker["notes"] = open_zip(notes_path)


def _read(key: str, name: str) -> bytes:
    zf = _worker[key]
    return read_member(zf, zf.getinfo(name))


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
        boxes = parse(_read("notes", job.note))
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
            crops, reasons = crop_image(_read("images", job.member), boxes, params)
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


def _serve(
    tasks: list, counter, conn: Connection, params: CropParams, parent: int, paths: tuple | None
) -> None:
    """A worker: crop the chunk the shared counter hands out next until none is left, sending each
    chunk's batch (or the traceback of a failure) with its index."""
    watch_parent(parent)
    index = -1
    if paths is not None:  # spawned: nothing inherited
        cv2.setNumThreads(1)
        _open_archives(*paths)
    try:
        while True:
            with counter.get_lock():
                index = counter.value
                counter.value += 1
            if index >= len(tasks):
                return
            conn.send((index, _crop_chunk(tasks[index], params), None))
    except Exception:
        conn.send((index, None, traceback.format_exc()))
    finally:
        conn.close()


def _in_order(n_tasks: int, workers: dict[Connection, multiprocessing.Process]) -> Iterator[Batch]:
    """The workers' batches in task order; a worker's failure or death is an error here."""
    arrived, following = {}, 0
    while following < n_tasks:
        if not workers:
            raise RuntimeError("crop workers ended before every photo was cropped")
        for conn in wait(list(workers)):
            try:
                index, batch, failure = conn.recv()
            except EOFError:
                worker = workers.pop(conn)
                worker.join()
                if worker.exitcode:
                    raise RuntimeError(f"a crop worker died (exit code {worker.exitcode})") from None
                continue
            if failure:
                raise RuntimeError(f"a crop worker failed:\n{failure}")
            arrived[index] = batch
        while following in arrived:
            yield arrived.pop(following)
            following += 1


def _start(context, workers: dict, counter, tasks: list, params: CropParams, n_workers: int) -> None:
    """Start the workers into `workers` (their pipe's reading end to each): forked ones inherit the
    open archives and a single-threaded OpenCV (the processes are the parallelism); spawned ones open
    the archives themselves."""
    notes = _worker.get("notes")
    forked = context.get_start_method() == "fork"
    paths = None if forked else (_worker["images"].filename, notes and notes.filename)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for _ in range(n_workers):
            reader, writer = context.Pipe(duplex=False)
            args = (tasks, counter, writer, params, os.getpid(), paths)
            workers[reader] = context.Process(target=_serve, args=args, daemon=True)
            workers[reader].start()
            writer.close()
    finally:
        cv2.setNumThreads(threads)


def _pool(tasks: list, params: CropParams, n_workers: int, start: str) -> Iterator[Batch]:
    """Crop the tasks in `n_workers` processes, yielding their batches in order; however this ends
    (done, failed, interrupted), no worker outlives it."""
    context = multiprocessing.get_context(start)
    counter = context.Value("q", 0)  # held here: a spawned worker opens its semaphore as it starts
    workers: dict[Connection, multiprocessing.Process] = {}
    try:
        _start(context, workers, counter, tasks, params, n_workers)
        yield from _in_order(len(tasks), dict(workers))
    finally:
        for reader, worker in workers.items():
            worker.terminate()
            worker.join()
            reader.close()


def batches(
    jobs: list[Job],
    images: zipfile.ZipFile,
    notes: zipfile.ZipFile | None,
    params: CropParams,
    arena: np.ndarray | None,
    start: str = START,
) -> Iterator[Batch]:
    """Crop the jobs of the open archives chunk by chunk, in order: in workers started by `start`
    ("fork" or "spawn"), or here with one. Only forked workers share the arena."""
    n_workers = params.workers or os.cpu_count() or 1
    chunk = max(1, min(CHUNK, len(jobs) // (n_workers * 4)))
    slots = slots_per_photo(params)
    tasks = [(i * slots, jobs[i : i + chunk]) for i in range(0, len(jobs), chunk)]
    _worker.update(images=images, notes=notes, arena=arena if n_workers == 1 or start == "fork" else None)
    try:
        if n_workers == 1:
            for task in tasks:
                yield _crop_chunk(task, params)
        else:
            yield from _pool(tasks, params, min(n_workers, len(tasks)), start)
    finally:
        _worker.clear()
