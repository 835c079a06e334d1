"""Safe reading of zip archives: members are checked before anything is read from them."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from doggan.errors import DogganError


class ArchiveError(DogganError):
    """An archive that is missing, empty, corrupt or not a zip."""


def unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why a member must not be read (absolute path, '..', link, device), or None when it is safe."""
    name = info.filename
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
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
