"""What Kaggle checks in a submission: 10,000 decodable 64×64 RGB PNGs at the root of a zip.

`validate` is the project's stable check, run by the submission stage before it ends and by the
upload before anything is sent; it reads the zip only, with PIL, and loads no model or client.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from pathlib import Path

from PIL import Image

from doggan.data.archives import unsafe_reason

N_IMAGES = 10_000  # Kaggle's rule: exactly this many images
IMAGE_SIZE = 64
# Kaggle's per-file upload limit (500 MB); 10,000 64×64 PNGs take 125 MB even stored uncompressed.
MAX_UPLOAD_BYTES = 500 * 1024 * 1024
# A 64×64 8-bit RGB PNG holds 12,352 bytes of raw scanlines; anything far larger is not one.
MAX_ENTRY_BYTES = 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LINES_PER_KIND = 5
IMAGE_NAME = re.compile(r"(0|[1-9][0-9]*)\.png")
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
