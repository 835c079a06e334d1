"""Atomic output writing: a stage interrupted at any point leaves either the old file or the new one.

A write goes to a temp file beside its target, `.<name>.<pid>@<host>.tmp-<random><suffix>`, renamed
onto the target only when whole. The pid and host in the name let the next write of the same target on
the same machine remove the temp files of runs that were killed, while leaving those of a run still
writing (two runs at once, or another machine sharing the folder) alone.
A write the machine refuses (full disk, file-size limit, read-only or forbidden folder) raises a
`WriteError`: one line naming the output, and nothing written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from doggan.errors import DogganError

_UMASK = os.umask(0)
os.umask(_UMASK)

# The machine's refusals of a write, in the words of the error line; anything else is a bug or a read.
REFUSALS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (the file-size limit was reached)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a parent folder is a file",
}


class WriteError(DogganError, OSError):
    """An output the machine refused to write: still an OSError (errno, filename), shown as one line."""

    def __init__(self, code: int, path: str | Path):
        OSError.__init__(self, code, REFUSALS[code], str(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror} — nothing was written"


def refusal(exc: BaseException) -> str | None:
    """The one-line message for an OSError the machine raised while writing, else None (a bug)."""
    if isinstance(exc, WriteError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in REFUSALS and exc.filename:
        return f"{exc.filename}: {REFUSALS[exc.errno]}"
    return None


HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "localhost"


def _temp_prefix(path: Path, pid: int | str) -> str:
    return f".{path.name}.{pid}@{HOST}.tmp-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(path: str | Path) -> list[Path]:
    """Remove the temp files (or folders) of `path` left by this machine's runs whose process is gone;
    returns those removed."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)" + re.escape(f"@{HOST}.tmp-"))
    removed = []
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            match = pattern.match(entry.name)
            if match and not _alive(int(match.group(1))):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def _prepare(path: Path) -> None:
    """The target's folder, made if missing; a parent that is a file is refused as ENOTDIR."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteError(errno.ENOTDIR, path) from None
    remove_stale(path)


@contextlib.contextmanager
def refused_as(path: Path) -> Iterator[None]:
    """Turn the machine's refusal to write inside the block into a `WriteError` naming `path`.

    An error about no file, `path` itself or its temp files (and files inside temp folders) names
    `path`; one about another file (its folder, an input the block reads) keeps that file's name.
    """
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        if exc.errno not in REFUSALS:
            raise
        name = os.path.abspath(exc.filename) if exc.filename else ""
        temps = os.path.abspath(path.parent / f".{path.name}.")
        ours = not name or name == os.path.abspath(path) or name.startswith(temps)
        raise WriteError(exc.errno, path if ours else exc.filename) from exc


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    with refused_as(path):
        _prepare(path)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent,
            prefix=_temp_prefix(path, os.getpid()),
            suffix=suffix if suffix is not None else path.suffix,
        )
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            os.chmod(tmp_path, 0o666 & ~_UMASK)
            os.replace(tmp_path, path)
        finally:
            tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def scratch_dir(path: str | Path) -> Iterator[Path]:
    """A temp folder beside `path` for a tool that writes `path`'s content itself (a downloader):
    named like `atomic_path`'s temp files, so a killed run's folder is removed by the next one."""
    path = Path(path)
    with refused_as(path):
        _prepare(path)
        folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path, os.getpid())))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj: object, sort_keys: bool = True) -> None:
    """Write JSON atomically; `sort_keys=False` keeps the given order (metrics shown in that order)."""
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n").encode())


def digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file, read in 1 MB blocks: for weights pinned by a checksum, and for files
    whose format keeps none (HDF5), so a flipped byte is caught when they are read."""
    hasher = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            hasher.update(block)
    return hasher.hexdigest()
