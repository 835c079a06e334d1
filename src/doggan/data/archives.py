"""Safe reading and reproducible writing of zip archives.

Members are checked before anything is read from them; members written here carry a fixed date and
mode, so the same content always gives the same bytes.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from doggan.errors import DogganError

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a member's local file header, as zipfile reads it
UNSUPPORTED_FLAGS = 0x1 | 0x20 | 0x40  # encrypted, compressed patched data, strong encryption


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


def _data_start(zf: zipfile.ZipFile, info: zipfile.ZipInfo, raw: bytes) -> int:
    """Where a member's data begins after its local header, checked as `ZipFile.open` checks it."""
    if len(raw) < LOCAL_HEADER.size:
        raise zipfile.BadZipFile("Truncated file header")
    signature, _, _, flags, *_, name_length, extra_length = LOCAL_HEADER.unpack_from(raw)
    if signature != zipfile.stringFileHeader:
        raise zipfile.BadZipFile("Bad magic number for file header")
    encoding = "utf-8" if flags & 0x800 else getattr(zf, "metadata_encoding", None) or "cp437"  # 3.11+
    try:
        name = raw[LOCAL_HEADER.size : LOCAL_HEADER.size + name_length].decode(encoding)
    except UnicodeDecodeError:
        name = None
    if name != info.orig_filename:
        raise zipfile.BadZipFile(f"File name in directory {info.orig_filename!r} and header {name!r} differ.")
    return LOCAL_HEADER.size + name_length + extra_length


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes by positioned reads of the archive's file, with the checks of `ZipFile.read`.

    Header, size and CRC-32 are checked as zipfile checks them; an encrypted member is a BadZipFile.
    The file's offset never moves, so processes forked with the archive open share its file and its
    directory, read once, without reading each other's bytes.
    """
    if not hasattr(os, "pread"):
        return zf.read(info)
    if info.flag_bits & UNSUPPORTED_FLAGS:
        raise zipfile.BadZipFile(f"{info.orig_filename}: encrypted or patched member")
    fd, size = zf.fp.fileno(), info.compress_size
    raw = os.pread(fd, LOCAL_HEADER.size + len(info.filename) + len(info.extra) + size, info.header_offset)
    start = _data_start(zf, info, raw)
    if len(raw) < start + size:  # a local extra field longer than the directory's
        raw += os.pread(fd, start + size - len(raw), info.header_offset + len(raw))
    data = raw[start : start + size]
    if info.compress_type == zipfile.ZIP_STORED:
        data = data[: info.file_size]
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        data = zlib.decompressobj(-15).decompress(data, info.file_size) if info.file_size else b""
    else:
        data = zipfile.ZipExtFile(io.BytesIO(data), "r", info).read()
    if len(data) != info.file_size:
        raise EOFError(f"{info.orig_filename}: {len(data)} bytes of {info.file_size}")
    if zlib.crc32(data) != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.orig_filename!r}")
    return data


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
