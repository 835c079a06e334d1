"""The crop stage's workers: they read the archives the parent planned with, and a worker that fails
or dies is an error rather than a stage that waits forever."""

import contextlib
import io
import multiprocessing
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from doggan.crops.crop import collect, plan_jobs
from doggan.crops.pool import Job, _in_order, batches
from doggan.params import CropParams

PARAMS = CropParams(size=32, workers=2, preview=4)


def photo(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), value, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_raw(raw, ids, value=128):
    """The two archives, each written aside and then moved over its name (a new file every time)."""
    raw.mkdir(parents=True, exist_ok=True)
    note = b"<annotation><object><name>beagle</name><bndbox><xmin>4</xmin><ymin>4</ymin>"
    note += b"<xmax>60</xmax><ymax>60</ymax></bndbox></object></annotation>"
    with zipfile.ZipFile(raw / "photos.tmp", "w") as photos, zipfile.ZipFile(raw / "notes.tmp", "w") as notes:
        for image_id in ids:
            photos.writestr(f"all-dogs/{image_id}.jpg", photo(value))
            notes.writestr(f"Annotation/n02088364-beagle/{image_id}", note, zipfile.ZIP_DEFLATED)
    os.replace(raw / "photos.tmp", raw / "all-dogs.zip")
    os.replace(raw / "notes.tmp", raw / "Annotation.zip")


def test_workers_crop_the_archives_that_were_planned_even_when_replaced_since(tmp_path):
    ids = [f"a{i:02d}" for i in range(40)]
    write_raw(tmp_path, ids, value=200)
    with contextlib.ExitStack() as archives:
        plan = plan_jobs(tmp_path, archives)
        write_raw(tmp_path, ["other"], value=10)  # a new archive under the same name, planned never
        got = collect(plan, PARAMS)
    crops = np.concatenate(got.segments)
    assert got.ids == ids and not got.skipped and crops.min() > 150


def test_spawned_workers_open_the_archives_themselves_and_crop_the_same(tmp_path):
    write_raw(tmp_path, [f"a{i:02d}" for i in range(12)])
    with contextlib.ExitStack() as archives:
        plan = plan_jobs(tmp_path, archives)
        got = {
            start: list(batches(plan.jobs, plan.images, plan.notes, PARAMS, None, start))
            for start in ("fork", "spawn")
        }
    forked, spawned = (
        [np.concatenate([b.overflow for b in runs]), [b.ids for b in runs]] for runs in got.values()
    )
    assert np.array_equal(forked[0], spawned[0]) and forked[1] == spawned[1] and len(forked[0]) == 12


def test_a_worker_that_fails_is_an_error_with_its_traceback(tmp_path):
    write_raw(tmp_path, ["a", "b"])
    jobs = [Job("all-dogs/a.jpg", None, "a"), Job("all-dogs/missing.jpg", None, "m")] * 8
    failure = pytest.raises(RuntimeError, match="a crop worker failed:(.|\n)*KeyError")
    with zipfile.ZipFile(tmp_path / "all-dogs.zip") as zf, failure:
        list(batches(jobs, zf, None, PARAMS, None))


def _die(conn) -> None:
    os._exit(3)


def test_a_worker_that_dies_is_an_error_not_a_wait():
    context = multiprocessing.get_context()
    reader, writer = context.Pipe(duplex=False)
    worker = context.Process(target=_die, args=(writer,))
    worker.start()
    writer.close()
    with pytest.raises(RuntimeError, match="died \\(exit code 3\\)"):
        list(_in_order(1, {reader: worker}))
