"""Atomic writes: temp files named by their run's pid, removed once that run is dead; refused writes named."""

import errno
import os
import subprocess
import sys

import pytest

from doggan.errors import DogganError
from doggan.files import HOST, WriteError, atomic_path, refusal, remove_stale, scratch_dir, write_bytes


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_write_removes_the_temp_files_of_dead_runs_and_keeps_those_of_live_ones_and_other_machines(
    tmp_path,
):
    dead, live = dead_pid(), os.getppid()
    stale = tmp_path / f".out.zip.{dead}@{HOST}.tmp-abcd1234.zip"
    stale_dir = tmp_path / f".out.zip.{dead}@{HOST}.tmp-efgh5678"
    running = tmp_path / f".out.zip.{live}@{HOST}.tmp-ijkl9012.zip"
    other = tmp_path / f".other.zip.{dead}@{HOST}.tmp-mnop3456.zip"
    elsewhere = tmp_path / f".out.zip.{dead}@another-machine.tmp-qrst7890.zip"  # a shared folder
    stale.write_bytes(b"half")
    (stale_dir / "inner").mkdir(parents=True)
    running.write_bytes(b"being written")
    other.write_bytes(b"another target's")
    elsewhere.write_bytes(b"another machine's")
    write_bytes(tmp_path / "out.zip", b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out.zip", running.name, other.name, elsewhere.name]
    )
    assert remove_stale(tmp_path / "other.zip") == [other]


def test_temp_files_carry_the_writers_pid(tmp_path):
    with atomic_path(tmp_path / "a.npz") as tmp:
        assert tmp.name.startswith(f".a.npz.{os.getpid()}@{HOST}.tmp-") and tmp.suffix == ".npz"
    with scratch_dir(tmp_path / "b.zip") as folder:
        assert folder.is_dir() and folder.name.startswith(f".b.zip.{os.getpid()}@{HOST}.tmp-")
    assert not folder.exists()


def test_a_parent_that_is_a_file_is_one_line_naming_the_output(tmp_path):
    (tmp_path / "submission").write_text("a file where a folder belongs")
    with pytest.raises(WriteError) as err:
        write_bytes(tmp_path / "submission" / "images.zip", b"x")
    assert isinstance(err.value, DogganError) and err.value.errno == errno.ENOTDIR
    assert (
        str(err.value)
        == f"{tmp_path / 'submission/images.zip'}: a parent folder is a file — nothing was written"
    )


def test_a_refusal_inside_the_block_names_the_output_not_the_temp_file(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(WriteError) as err, atomic_path(target) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert str(err.value) == f"{target}: no space left on device — nothing was written"
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_stay_bugs():
    assert refusal(OSError(errno.ENOENT, "No such file", "x")) is None
    assert refusal(ValueError("x")) is None
    assert refusal(OSError(errno.EROFS, "Read-only file system", "/ro/f")) == "/ro/f: read-only file system"
