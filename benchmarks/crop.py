"""Crop stage throughput against plain JPEG decoding of the same photos, in the same run.

Generates 4,000 photo-like images (500×375, JPEG quality 90, detail at several scales, fixed seed)
in the competition's layout, each with a Stanford-Dogs-style annotation of 1-3 boxes as in the real
data: 22,125 dogs in 20,579 photos, so about 93% hold one dog, filling most of the frame, and the
rest two or three smaller ones side by side. It then measures
(a) the crop stage's images/s, end to end (planning, pool, annotations, decoding, cropping, writing
the array, report and preview) inside this process, (c) the same as a user runs it, `doggan crop` as
a process of its own (start-up and imports included), and (b) `cv2.imdecode` of the same zip members
across the same number of processes, and prints a/b and c/b. Each is run twice, alternating, and its
faster run counts. With a folder as second argument, the archives are kept there and reused by
later runs with as many photos (they are made the same way every time).

    .venv/bin/python benchmarks/crop.py [n_photos] [archives_folder]
"""

from __future__ import annotations

import io
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from doggan.crops.crop import crop_stage
from doggan.data.sample import BREEDS, Dog, voc_xml
from doggan.params import CropParams

WIDTH, HEIGHT = 500, 375


def photo(rng: np.random.Generator) -> np.ndarray:
    """Detail at several scales, as in a photo: smooth regions, edges, texture, a little sensor noise."""
    image = np.zeros((HEIGHT, WIDTH, 3))
    for cells, weight in ((4, 1.0), (16, 0.5), (64, 0.25)):
        field = rng.uniform(0, 255, (cells * 3 // 4, cells, 3)).astype(np.uint8)
        image += weight * np.asarray(Image.fromarray(field).resize((WIDTH, HEIGHT), Image.BICUBIC))
    image = image / 1.75 + rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def boxes(rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """1 box (93%), 2 (6%) or 3 (1%): a lone dog spans 35-100% of each side, several share the width."""
    n = int(rng.choice([1, 2, 3], p=[0.93, 0.06, 0.01]))
    out = []
    for i in range(n):
        lane = WIDTH // n
        w = int(rng.uniform(0.35, 1.0) * lane)
        h = int(rng.uniform(0.4 if n == 1 else 0.3, 1.0) * HEIGHT)
        x = i * lane + int(rng.integers(0, lane - w + 1))
        y = int(rng.integers(0, HEIGHT - h + 1))
        out.append((x, y, x + w, y + h))
    return out


def make_archives(raw: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with (
        zipfile.ZipFile(raw / "all-dogs.zip", "w") as photos,
        zipfile.ZipFile(raw / "Annotation.zip", "w", zipfile.ZIP_DEFLATED) as notes,
    ):
        for i in range(n):
            breed = BREEDS[i % len(BREEDS)]
            dogs = [Dog(breed, box) for box in boxes(rng)]
            buffer = io.BytesIO()
            Image.fromarray(photo(rng)).save(buffer, format="JPEG", quality=90)
            image_id = f"{breed.wnid}_{i}"
            photos.writestr(f"all-dogs/{image_id}.jpg", buffer.getvalue())
            notes.writestr(
                f"Annotation/{breed.wnid}-{breed.name}/{image_id}", voc_xml(image_id, WIDTH, HEIGHT, dogs)
            )


def has_photos(raw: Path, n: int) -> bool:
    """True when `raw` holds archives that `make_archives` wrote with `n` photos."""
    try:
        with (
            zipfile.ZipFile(raw / "all-dogs.zip") as photos,
            zipfile.ZipFile(raw / "Annotation.zip") as notes,
        ):
            return len(photos.namelist()) == len(notes.namelist()) == n
    except (OSError, zipfile.BadZipFile):
        return False


_zip: zipfile.ZipFile | None = None


def _open(path: str) -> None:
    global _zip
    _zip = zipfile.ZipFile(path)


def _decode(names: list[str]) -> int:
    for name in names:
        cv2.imdecode(np.frombuffer(_zip.read(name), np.uint8), cv2.IMREAD_COLOR)
    return len(names)


def baseline(archive: Path, workers: int) -> float:
    """Images/s of plain cv2.imdecode of every member, in a pool reading the zip like the stage."""
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    chunks = [names[i : i + 64] for i in range(0, len(names), 64)]
    began = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers, _open, (str(archive),)) as pool:
        done = sum(pool.imap_unordered(_decode, chunks))
    return done / (time.perf_counter() - began)


def whole_stage(root: Path, raw: Path, n_photos: int, workers: int) -> tuple[float, float, float]:
    """Images/s of `doggan crop` run as a user runs it (a fresh process in a folder holding data/raw),
    its seconds, and the seconds of the stage itself as it logs them (params read to outputs written)."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    if not (root / "data/raw").exists():
        (root / "data/raw").symlink_to(raw)
    (root / "params.yaml").write_text(f"crop:\n  workers: {workers}\n")
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "doggan.cli", "crop", "--params", "params.yaml"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - began
    stage = float(re.search(r"stage crop: done in ([0-9.]+) s", done.stderr).group(1))
    return n_photos / seconds, seconds, stage


def runs(rates: list[float]) -> str:
    return ", ".join(f"{r:.1f}" for r in rates)


def main() -> int:
    n_photos = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    workers = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(sys.argv[2]).resolve() if len(sys.argv) > 2 else Path(tmp) / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        if not has_photos(raw, n_photos):
            print(f"generating {n_photos} photos of {WIDTH}×{HEIGHT} (JPEG q90, seed 0)...", flush=True)
            make_archives(raw, n_photos)
        size = (raw / "all-dogs.zip").stat().st_size / n_photos / 1024
        decode_runs, stage_runs, process_runs, splits = [], [], [], []
        for run in range(2):  # alternate the two, best of two each, so neither gains from warm caches
            decode_runs.append(baseline(raw / "all-dogs.zip", workers))
            out = Path(tmp) / f"out{run}"
            began = time.perf_counter()
            report = crop_stage(
                raw, CropParams(workers=workers), out / "crops.npz", out / "report.json", out / "p.png"
            )
            stage_runs.append(n_photos / (time.perf_counter() - began))
            rate, seconds, stage = whole_stage(Path(tmp) / "user", raw, n_photos, workers)
            process_runs.append(rate)
            splits.append((seconds, stage))
    decode, ours, process = max(decode_runs), max(stage_runs), max(process_runs)
    print(f"processes:               {workers}")
    print(f"photos:                  {n_photos}, {size:.0f} KiB each on average")
    print(f"crops written:           {report['crops']} (size 64) from {report['images']} photos")
    print(f"cv2.imdecode baseline:   {decode:8.1f} images/s  (runs: {runs(decode_runs)})")
    print(f"crop stage:              {ours:8.1f} images/s  (runs: {runs(stage_runs)})")
    print(f"doggan crop (process):   {process:8.1f} images/s  (runs: {runs(process_runs)})")
    seconds, stage = splits[process_runs.index(process)]
    print(
        f"time split (process):    {seconds:8.2f} s: {stage:.1f} s in the stage, the rest start-up and exit"
    )
    print(f"ratio (stage/baseline):  {ours / decode:8.2f}")
    print(f"ratio (process/baseline):{process / decode:8.2f}  (goal >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
