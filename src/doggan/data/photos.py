"""The whole real photos as Kaggle's MiFID evaluator saw them: squashed to 64×64 with antialiasing.

Kaggle's evaluator compared submissions with the full dog photos, each resized (not cropped) with
PIL's antialiasing filter, so these are decoded in full, without the crop stage's reduced decoding.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from doggan.data.archives import ArchiveError, is_image_name, open_zip, safe_members

log = logging.getLogger("doggan")


def photos_archive(raw_dir: str | Path) -> Path:
    """The photo archive of a raw folder: all-dogs.zip, or images.zip for the folder source."""
    raw_dir = Path(raw_dir)
    folder = raw_dir / "images.zip"
    return folder if folder.exists() else raw_dir / "all-dogs.zip"


def _members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members, _ = safe_members(zf)
    return sorted((i for i in members if is_image_name(i.filename)), key=lambda i: i.filename)


def count_photos(raw_dir: str | Path) -> int:
    """How many photos the archive holds (`iter_photos` yields these, less any that fail to decode)."""
    with open_zip(photos_archive(raw_dir)) as zf:
        return len(_members(zf))


def squash(data: bytes, size: int = 64) -> np.ndarray:
    """One photo as size×size RGB uint8, resized whole with Image.LANCZOS (PIL's antialias filter)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.LANCZOS))


def iter_photos(raw_dir: str | Path, size: int = 64, batch_size: int = 256) -> Iterator[np.ndarray]:
    """Uint8 batches (B, size, size, 3) of every decodable photo, in sorted member order."""
    path = photos_archive(raw_dir)
    batch, failed = [], []
    with open_zip(path) as zf:
        members = _members(zf)
        if not members:
            raise ArchiveError(f"{path}: no photos in the archive")
        for info in members:
            try:
                batch.append(squash(zf.read(info), size))
            except (OSError, ValueError, SyntaxError, zipfile.BadZipFile, Image.DecompressionBombError):
                failed.append(info.filename)
                continue
            if len(batch) == batch_size:
                yield np.stack(batch)
                batch = []
    if batch:
        yield np.stack(batch)
    if failed:
        log.warning("%s: %d photos failed to decode and were left out, e.g. %s", path, len(failed), failed[0])
