"""Safe reading and reproducible writing of zip archives.

Members are checked before anything is read from them; members written here carry a fixed date and
mode, so the same content always gives the same bytes.
"""

from __future__ import annotations

import posixpath
import shutil
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

from doggan.errors import DogganError

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ArchiveError(DogganError):
    """An archive that is missing, empty, corrupt or not a zip."""


def unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why a member must not be read (absolute path, '..', link, device), or None when it is safe."""
    name = info.filename
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "path with '..'"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "special file"
    return None


def open_zip(path: str | Path) -> zipfile.ZipFile:
    """Open a zip archive, with a clear error naming the file when it is missing or not a zip."""
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: archive not found")
    if path.stat().st_size == 0:
        raise ArchiveError(f"{path}: archive is empty")
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{path}: not a valid zip archive ({exc})") from None


def safe_members(zf: zipfile.ZipFile) -> tuple[list[zipfile.ZipInfo], dict[str, str]]:
    """Split members into the regular files that are safe to read and the refused ones with reasons."""
    safe, refused = [], {}
    for info in zf.infolist():
        reason = unsafe_reason(info)
        if reason:
            refused[info.filename] = reason
        elif not info.is_dir():
            safe.append(info)
    return safe, refused


def is_image_name(name: str) -> bool:
    """True for an image file name that is no hidden file or macOS resource fork (`__MACOSX/._x.jpg`)."""
    hidden = any(part.startswith(".") and part != "." or part == "__MACOSX" for part in name.split("/"))
    return not hidden and posixpath.splitext(name)[1].lower() in IMAGE_SUFFIXES


def is_intact(path: str | Path, wanted: Callable[[list[str]], bool] | None = None) -> bool:
    """True when `path` is a zip whose members all pass their CRC check and whose names satisfy `wanted`.

    `wanted` matters for archives of stored zips: a truncated one can still open, as the last zip
    stored inside it.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            if wanted is not None and not wanted(zf.namelist()):
                return False
            return zf.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def write_member(zf: zipfile.ZipFile, name: str, data: bytes, compress: int = zipfile.ZIP_STORED) -> None:
    """Add `data` as `name` with a fixed date and mode (reproducible bytes)."""
    info = zipfile.ZipInfo(name, ZIP_DATE)
    info.compress_type = compress
    info.external_attr = 0o100644 << 16
    zf.writestr(info, data)


def copy_member(source: zipfile.ZipFile, info: zipfile.ZipInfo, target: zipfile.ZipFile, name: str) -> None:
    """Stream one member into another archive under `name`; photos stored, other files deflated."""
    out = zipfile.ZipInfo(name, ZIP_DATE)
    out.compress_type = zipfile.ZIP_STORED if is_image_name(name) else zipfile.ZIP_DEFLATED
    out.external_attr = 0o100644 << 16
    with source.open(info) as src, target.open(out, "w") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
