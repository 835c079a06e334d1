"""The error type for problems a user can fix: the CLI prints its message, not a traceback."""

from __future__ import annotations

from pathlib import Path


class DogganError(Exception):
    """Bad input or setup, described in one message that names the file or key and the problem."""


class HandOverError(DogganError):
    """A file one stage hands to another that is missing, truncated, corrupted or not what the reader
    expects: names the file, what is wrong with it, and the command that remakes it."""

    def __init__(self, path: str | Path, problem: str, stage: str):
        self.path, self.problem, self.stage = Path(path), problem, stage
        super().__init__(f"{path}: {problem}; re-run {stage} to remake it: `dvc repro -f {stage}`")

    def __reduce__(self):
        return type(self), (self.path, self.problem, self.stage)
