"""The submission: 10,000 generated PNGs zipped as Kaggle wants them, validated, and uploaded.

Images are generated in large batches, PNG-encoded in a pool of processes and written straight
into the zip; the validator checks what Kaggle checked, before the stage ends and before any upload.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import re
import subprocess
import time
import zipfile
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from tqdm import tqdm

from doggan.archives import unsafe_reason
from doggan.errors import DogganError
from doggan.files import atomic_path
from doggan.grids import save_grid

if TYPE_CHECKING:
    from doggan.params import SubmissionParams

log = logging.getLogger("doggan")

N_IMAGES = 10_000  # Kaggle's rule: exactly this many images
IMAGE_SIZE = 64
# Kaggle's per-file upload limit (500 MB); 10,000 64×64 PNGs take 125 MB even stored uncompressed.
MAX_UPLOAD_BYTES = 500 * 1024 * 1024
# A 64×64 8-bit RGB PNG holds 12,352 bytes of raw scanlines; anything far larger is not one.
MAX_ENTRY_BYTES = 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# zlib level 1: PNG is lossless, so the pixels are the same; files ~2-20% larger, encoding up to 4x faster.
PNG_LEVEL = 1
PREVIEW_IMAGES = 64
LINES_PER_KIND = 5
IMAGE_NAME = re.compile(r"(0|[1-9][0-9]*)\.png")
FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # zip timestamps fixed so that the same images give the same zip
UPLOAD_FAILED = "Could not submit to competition"  # what kaggle's competition_submit returns on failure
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError)


class _Report:
    """Problems grouped by kind; each kind prints a few example lines and then a count of the rest."""

    def __init__(self) -> None:
        self.kinds: dict[str, list[str]] = {}

    def add(self, kind: str, line: str) -> None:
        self.kinds.setdefault(kind, []).append(line)

    def lines(self) -> list[str]:
        out = []
        for kind, lines in self.kinds.items():
            out += lines[:LINES_PER_KIND]
            if len(lines) > LINES_PER_KIND:
                out.append(f"and {len(lines) - LINES_PER_KIND:,} more {kind}")
        return out


def _name_ranges(numbers: list[int], limit: int = 4) -> str:
    """'5.png, 9.png … 9999.png': sorted image numbers with consecutive runs shortened."""
    runs: list[list[int]] = []
    for k in sorted(numbers):
        if runs and k == runs[-1][1] + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    parts = [f"{a}.png" if a == b else f"{a}.png … {b}.png" for a, b in runs[:limit]]
    if len(runs) > limit:
        parts.append(f"and {sum(b - a + 1 for a, b in runs[limit:]):,} more")
    return ", ".join(parts)


def _sniff(data: bytes) -> str:
    """A short name for what non-PNG bytes are, for the problem line."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return f"a {image.format} file"
    except DECODE_ERRORS:
        return "not an image"


def _check_image(zf: zipfile.ZipFile, info: zipfile.ZipInfo, report: _Report) -> None:
    """Read one member and report anything that stops it being a decodable 64×64 8-bit RGB PNG."""
    name = info.filename
    if info.file_size > MAX_ENTRY_BYTES:
        report.add("oversized entries", f"{name}: {info.file_size:,} bytes, too large for a 64×64 PNG")
        return
    if info.flag_bits & 0x1:
        report.add("encrypted entries", f"{name}: encrypted; Kaggle cannot read it")
        return
    try:
        data = zf.read(info)
    except (zipfile.BadZipFile, NotImplementedError, *DECODE_ERRORS) as exc:
        report.add("corrupt zip entries", f"{name}: cannot be read from the zip ({exc})")
        return
    if not data.startswith(PNG_SIGNATURE):
        report.add("files that are not PNGs", f"{name}: not a PNG ({_sniff(data)})")
        return
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            size, mode = image.size, image.mode
            image.load()
    except DECODE_ERRORS as exc:
        report.add("PNGs that do not decode", f"{name}: PNG does not decode ({exc})")
        return
    if size != (IMAGE_SIZE, IMAGE_SIZE):
        w, h = size
        report.add(f"images of size {w}×{h}", f"{name}: {w}×{h} pixels, expected {IMAGE_SIZE}×{IMAGE_SIZE}")
    # IHDR follows the signature: bit depth at byte 24, colour type at byte 25 (2 = truecolour RGB).
    bit_depth, colour_type = data[24], data[25]
    if mode != "RGB" or colour_type != 2 or bit_depth != 8:
        described = mode if bit_depth == 8 else f"{mode}, {bit_depth}-bit"
        report.add(f"images in mode {described}", f"{name}: mode {described}, expected 8-bit RGB")


def _check_archive(zf: zipfile.ZipFile, n_images: int, report: _Report) -> None:
    images: list[zipfile.ZipInfo] = []
    numbers: set[int] = set()
    seen: set[str] = set()
    for info in zf.infolist():
        name = info.filename
        reason = unsafe_reason(info)
        if reason:
            report.add("unsafe entries", f"{name}: {reason}")
        elif info.is_dir():
            report.add("folder entries", f"{name}: a folder; the images must sit at the zip root")
        elif "/" in name or "\\" in name:
            report.add(
                "entries inside folders", f"{name}: inside a folder; the images must sit at the zip root"
            )
        elif name in seen:
            report.add("duplicate entries", f"{name}: appears more than once in the zip")
        elif IMAGE_NAME.fullmatch(name) and int(name[:-4]) < n_images:
            images.append(info)
            numbers.add(int(name[:-4]))
        elif name.lower().endswith(".png"):
            report.add("badly named images", f"{name}: unexpected name; expected 0.png … {n_images - 1}.png")
            images.append(info)
        else:
            report.add("unexpected files", f"{name}: unexpected file; only the images may be in the zip")
        seen.add(name)
    missing = sorted(set(range(n_images)) - numbers)
    if len(images) != n_images:
        detail = f"; missing {_name_ranges(missing)}" if missing else ""
        report.add("count", f"{len(images):,} images at the zip root, expected exactly {n_images:,}{detail}")
    elif missing:
        report.add("count", f"missing {_name_ranges(missing)}")
    for info in images:
        _check_image(zf, info, report)


def validate(path: str | Path, n_images: int = N_IMAGES) -> list[str]:
    """What Kaggle would reject in a submission zip, one line per problem; an empty list when it is valid.

    Kaggle wanted exactly 10,000 decodable 64×64 RGB PNGs named 0.png … 9999.png at the zip root and
    nothing else, in a file under its upload limit. `n_images` checks a smaller test zip the same way.
    """
    path = Path(path)
    if not path.is_file():
        return ["file not found"]
    report = _Report()
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        limit = f"{MAX_UPLOAD_BYTES:,} bytes ({MAX_UPLOAD_BYTES // 2**20} MiB)"
        report.add("size", f"{size:,} bytes, over Kaggle's upload limit of {limit}")
    try:
        with zipfile.ZipFile(path) as zf:
            _check_archive(zf, n_images, report)
    except (zipfile.BadZipFile, OSError) as exc:
        report.add("zip", f"not a zip archive ({exc})")
    return report.lines()


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
    PNGs are already compressed, so they are stored, not deflated.
    """
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
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


def submission_stage(model_dir: Path, params: SubmissionParams, zip_path: Path, preview_path: Path) -> dict:
    """Generate `submission.n_images` images in batches into a zip of PNGs, validate it, draw a preview."""
    from doggan.sampling import generate, load_generator

    try:
        gen = load_generator(model_dir)
    except FileNotFoundError as exc:
        raise DogganError(str(exc)) from None
    resize = tuple(gen.image_shape) != (IMAGE_SIZE, IMAGE_SIZE, 3)
    if resize and not params.resize:
        raise DogganError(
            f"{Path(model_dir) / 'generator.json'}: the generator makes {gen.image_shape} images; "
            f"Kaggle needs {IMAGE_SIZE}×{IMAGE_SIZE}×3 (set crop.size: 64 and crop.channels: 3, or "
            "submission.resize: true to upsize them for scoring)"
        )
    if resize:
        log.warning(
            "submission.resize: %s images upsized to %d×%d RGB; %s can be scored, but it is not a dog "
            "submission",
            "×".join(map(str, gen.image_shape)),
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


def _git(*args: str) -> str:
    """Output of a read-only git command in the current folder; '' outside a repository."""
    try:
        result = subprocess.run(
            ["git", "--no-optional-locks", *args], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return ""
    return result.stdout.strip()


def experiment_name() -> str | None:
    """The DVC experiment the workspace holds: $DVC_EXP_NAME during `dvc exp run`, else the
    experiment of the current commit whose dvc.lock matches the workspace's (after `dvc exp run`
    in the workspace or `dvc exp apply`)."""
    if os.environ.get("DVC_EXP_NAME"):
        return os.environ["DVC_EXP_NAME"]
    head = _git("rev-parse", "HEAD")
    lock = _git("hash-object", "dvc.lock")
    if not head or not lock or lock == _git("rev-parse", "--verify", "-q", "HEAD:dvc.lock"):
        return None
    refs = _git("for-each-ref", "--format=%(refname)", f"refs/exps/{head[:2]}/{head[2:]}/")
    for ref in sorted(refs.splitlines()):
        if _git("rev-parse", "--verify", "-q", f"{ref}:dvc.lock") == lock:
            return ref.rsplit("/", 1)[-1]
    return None


def _scores(metrics_path: Path) -> list[str]:
    """'MiFID 55.90 (tf2015)' for each protocol scored in the evaluate stage's metrics."""
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError):
        return []
    first = "private " if metrics.get("protocol") == "private" else ""
    out = []
    for prefix, label in (("", first), ("private_", "private ")):
        if isinstance(metrics.get(f"{prefix}mifid"), (int, float)):
            out.append(
                f"{label}MiFID {metrics[f'{prefix}mifid']:.2f} ({metrics.get(f'{prefix}backbone', '?')})"
            )
    return out


def default_message(metrics_path: Path = Path("metrics/eval.json")) -> str:
    """'doggan 1a2b3c4-dirty, exp lucky-dogs, MiFID 55.90 (tf2015)': whatever of these is known."""
    parts = []
    commit = _git("rev-parse", "--short", "HEAD")
    if commit:
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        parts.append(commit + ("-dirty" if dirty else ""))
    name = experiment_name()
    if name:
        parts.append(f"exp {name}")
    parts += _scores(metrics_path)
    return "doggan " + ", ".join(parts) if parts else "doggan submission"


def submit(
    path: str | Path, competition: str, message: str | None = None, dry_run: bool = False, api=None
) -> str:
    """Validate a submission zip, then upload it with the Kaggle API; returns the message sent.

    `dry_run` validates and prints what would be sent, without touching the network. `api` is a
    Kaggle client (`competition_submit(file_name, message, competition)`); by default an
    authenticated `KaggleApi`.
    """
    path = Path(path)
    problems = validate(path)
    if problems:
        raise DogganError(f"{path}: not uploading an invalid submission\n  " + "\n  ".join(problems))
    message = message or default_message()
    size = path.stat().st_size / 1e6
    if dry_run:
        print(f"dry run: would upload {path} ({size:.1f} MB, valid) to {competition} with message: {message}")
        return message
    if api is None:
        from doggan.kaggle_api import authenticate

        api = authenticate()
    log.info("uploading %s (%.1f MB) to %s", path, size, competition)
    try:
        result = api.competition_submit(str(path), message, competition)
    except OSError as exc:  # requests' errors are OSErrors
        from doggan.kaggle_api import explain

        raise explain(exc, f"upload of {path} to {competition}", competition) from None
    reply = getattr(result, "message", "") or ""
    if reply == UPLOAD_FAILED:
        raise DogganError(f"upload of {path} to {competition} failed: Kaggle answered '{reply}'")
    print(f"submitted {path} to {competition}: {message}" + (f" (Kaggle: {reply})" if reply else ""))
    return message
