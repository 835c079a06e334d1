"""Crop stage throughput against plain JPEG decoding of the same photos, in the same run.

Generates 4,000 realistic photos (500×375, JPEG quality 90, 1-3 boxes each, fixed seed) in the
competition's layout, then measures (a) the crop stage's images/s and (b) `cv2.imdecode` of the
same zip members across the same number of processes, and prints a/b.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from doggan.crop import crop_stage
from doggan.params import CropParams

N_PHOTOS = int(os.environ.get("BENCH_PHOTOS", 4000))
WIDTH, HEIGHT = 500, 375


def make_archives(raw: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with (
        zipfile.ZipFile(raw / "all-dogs.zip", "w") as photos,
        zipfile.ZipFile(raw / "Annotation.zip", "w") as notes,
    ):
        for i in range(n):
            base = rng.integers(0, 255, (6, 8, 3)).astype(np.uint8)
            image = Image.fromarray(base).resize((WIDTH, HEIGHT), Image.BICUBIC)
            noise = rng.normal(0, 12, (HEIGHT, WIDTH, 3))
            image = Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))
            draw = ImageDraw.Draw(image)
            objects = []
            for _ in range(int(rng.integers(1, 4))):
                w, h = int(rng.integers(80, 300)), int(rng.integers(80, 300))
                x, y = int(rng.integers(0, WIDTH - w)), int(rng.integers(0, HEIGHT - min(h, HEIGHT - 1)))
                h = min(h, HEIGHT - y)
                draw.ellipse([x, y, x + w, y + h], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
                objects.append(
                    f"<object><name>dog</name><bndbox><xmin>{x}</xmin><ymin>{y}</ymin>"
                    f"<xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>"
                )
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=90)
            photos.writestr(f"all-dogs/n0_{i}.jpg", buffer.getvalue())
            notes.writestr(f"Annotation/n0-dog/n0_{i}", f"<annotation>{''.join(objects)}</annotation>")


_zip: zipfile.ZipFile | None = None


def _open(path: str) -> None:
    global _zip
    _zip = zipfile.ZipFile(path)


def _decode(name: str) -> int:
    image = cv2.imdecode(np.frombuffer(_zip.read(name), np.uint8), cv2.IMREAD_COLOR)
    return image.shape[0]


def baseline(archive: Path, workers: int) -> float:
    """Images/s of plain cv2.imdecode of every member, in a pool reading the zip like the stage."""
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    began = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers, _open, (str(archive),)) as pool:
        for _ in pool.imap_unordered(_decode, names, chunksize=64):
            pass
    return len(names) / (time.perf_counter() - began)


def main() -> int:
    workers = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        print(f"generating {N_PHOTOS} photos of {WIDTH}×{HEIGHT} (JPEG q90)...", flush=True)
        make_archives(raw, N_PHOTOS)
        decode = baseline(raw / "all-dogs.zip", workers)
        began = time.perf_counter()
        params = CropParams(workers=workers)
        out = Path(tmp) / "out"
        report = crop_stage(raw, params, out / "crops.npz", out / "report.json", out / "preview.png")
        ours = N_PHOTOS / (time.perf_counter() - began)
    print(f"processes:               {workers}")
    print(f"crops written:           {report['crops']} from {report['images']} photos")
    print(f"cv2.imdecode baseline:   {decode:8.1f} images/s")
    print(f"crop stage:              {ours:8.1f} images/s")
    print(f"ratio (stage/baseline):  {ours / decode:8.2f}  (goal >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
