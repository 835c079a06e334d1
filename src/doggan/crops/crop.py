"""Crop every dog out of the raw archives by its box, in a pool of processes, into one array file.

Photos are decoded straight from the zip members (no extraction), shrunk by the JPEG decoder when
the boxes allow it (OpenCV's reduced decoding), and each box becomes a square crop with a margin,
resized to `crop.size`; optionally each annotated photo adds a crop of itself whole. Crops stream
from the workers into one growing array. What is skipped, and why, is counted in the report. This
module plans the work and writes the results; `crops.pool` runs the workers, `crops.photo_crops` cuts
one photo.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from doggan.crops.file import Crops, save_crops
from doggan.crops.pool import Job, batches, make_arena, slots_per_photo
from doggan.data.archives import ArchiveError, is_image_name, open_zip, safe_members
from doggan.errors import DogganError
from doggan.files import write_json
from doggan.output.grids import save_grid
from doggan.params import CropParams

log = logging.getLogger("doggan")


class Plan(NamedTuple):
    images_path: Path
    notes_path: Path | None
    images: zipfile.ZipFile  # the archives, open: the workers read members through their directories
    notes: zipfile.ZipFile | None
    jobs: list[Job]
    n_images: int
    n_notes: int
    skips: list[tuple[str, str]]


@dataclass
class Collected:
    """Everything the workers sent back, in annotation order."""

    segments: list[np.ndarray] = field(default_factory=list)  # (k, S, S, C) runs: arena slices, overflows
    breeds: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    objects: int = 0
    whole_photos: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)  # up to 3 members per reason

    def skip(self, reason: str, name: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples.setdefault(reason, [])) < 3:
            self.examples[reason].append(name)


def plan_jobs(raw_dir: Path, archives: contextlib.ExitStack) -> Plan:
    """Pair each photo with its annotation by image id; note refused members and unpaired files.

    The archives stay open in `archives`, for the workers to read the members planned here.
    """
    skips = []
    folder = raw_dir / "images.zip"
    images_path = folder if folder.exists() else raw_dir / "all-dogs.zip"
    images = archives.enter_context(open_zip(images_path))
    members, refused = safe_members(images)
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
        return Plan(images_path, None, images, None, jobs, len(photos), 0, skips)

    notes_path = raw_dir / "Annotation.zip"
    notes_zip = archives.enter_context(open_zip(notes_path))
    members, refused = safe_members(notes_zip)
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
    return Plan(images_path, notes_path, images, notes_zip, jobs, len(photos), len(notes), skips)


def collect(plan: Plan, params: CropParams) -> Collected:
    """Run the plan's jobs through the workers and gather their crops, labels and skips."""
    out = Collected()
    for reason, name in plan.skips:
        out.skip(reason, name)
    shape = (params.size, params.size, params.channels)
    arena = make_arena(len(plan.jobs), shape, slots_per_photo(params))
    with tqdm(total=len(plan.jobs), desc="crop", unit="img", smoothing=0.1) as bar:
        for batch in batches(plan.jobs, plan.images, plan.notes, params, arena):
            if batch.in_arena:
                out.segments.append(arena[batch.start : batch.start + batch.in_arena])
            if len(batch.overflow):
                out.segments.append(batch.overflow)
            out.breeds.extend(batch.breeds)
            out.ids.extend(batch.ids)
            out.objects += batch.objects
            out.whole_photos += batch.whole_photos
            for reason, name in batch.skips:
                out.skip(reason, name)
            bar.update(batch.jobs)
    return out


def save_preview(path: Path, segments: list[np.ndarray], n: int) -> None:
    """A grid of `n` crops picked at random (seed 0), read from the segments without joining them."""
    total = sum(len(segment) for segment in segments)
    starts = np.cumsum([0] + [len(segment) for segment in segments])
    pick = np.sort(np.random.default_rng(0).permutation(total)[:n])
    which = np.searchsorted(starts, pick, side="right") - 1
    save_grid(path, np.stack([segments[w][i - starts[w]] for w, i in zip(which, pick, strict=True)]), scale=2)


def crop_stage(
    raw_dir: Path, params: CropParams, out_path: Path, report_path: Path, preview_path: Path
) -> dict:
    """Crop every annotated dog of the raw archives into one array file, with a report and a preview."""
    with contextlib.ExitStack() as archives:
        plan = plan_jobs(Path(raw_dir), archives)
        got = collect(plan, params)
    if not got.segments:
        raise DogganError(f"{plan.images_path}: no usable crops (skipped: {dict(got.skipped)})")
    names = np.array(sorted(set(got.breeds)))
    labels = np.searchsorted(names, np.array(got.breeds)).astype(np.int32)
    with ThreadPoolExecutor(1) as aside:  # the preview's PNG is encoded while the crops are written
        preview = aside.submit(save_preview, preview_path, got.segments, params.preview)
        save_crops(out_path, Crops(got.segments, labels, np.array(got.ids), names))
        preview.result()
    report = {
        "images": plan.n_images,
        "annotations": plan.n_notes,
        "objects": got.objects,
        "crops": len(got.breeds),
        "whole_photos": got.whole_photos,
        "breeds": len(names),
        "skipped_total": sum(got.skipped.values()),
        "skipped": dict(sorted(got.skipped.items())),
        "examples": dict(sorted(got.examples.items())),
    }
    write_json(report_path, report)
    log.info(
        "crop: %d crops (%d of whole photos) of %d objects in %d photos; skipped %s",
        len(got.breeds),
        got.whole_photos,
        got.objects,
        plan.n_images,
        dict(got.skipped),
    )
    return report
