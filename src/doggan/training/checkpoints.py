"""Resume from the newest intact checkpoint: one that cannot be read is reported by name and passed over.

A checkpoint cut short or altered on disk (its data or index file) fails to restore; resume then falls
back to the one before it, which the train stage keeps beside the newest for this.
"""

from __future__ import annotations

import logging
from pathlib import Path

import tensorflow as tf

from doggan.errors import DogganError

log = logging.getLogger("doggan")
KEEP = 2  # checkpoints kept: the newest and the one before it, which resume falls back to
START_OVER = "start over with `dvc exp run -S train.resume=false` (or remove {folder})"


def checkpoint_paths(folder: Path) -> list[str]:
    """The checkpoints in `folder`, oldest first, found by their index files rather than by the folder's
    `checkpoint` state file, which may be damaged as well."""
    numbered = []
    for index in Path(folder).glob("ckpt-*.index"):
        number = index.stem.removeprefix("ckpt-")
        if number.isdigit():
            numbered.append((int(number), str(Path(folder) / index.stem)))
    return [path for _, path in sorted(numbered)]


def restore_intact(checkpoint: tf.train.Checkpoint, folder: Path) -> str | None:
    """Restore the newest checkpoint in `folder` that reads whole into `checkpoint`, and return it (None
    when the folder holds none).

    Each one that cannot be restored is logged by name; once an older one restores, the newer damaged ones
    are removed and the folder's state file names the restored one as the latest, so saves and rollbacks
    go on from it. When none can be restored, a DogganError says how to start over.
    """
    paths, damaged = checkpoint_paths(folder), []
    for path in reversed(paths):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
        except Exception as exc:  # cut short (IndexError), altered (DataLossError), bad index, mismatch
            damaged.append((Path(path).name, _reason(exc)))
            log.warning("checkpoint %s cannot be restored (%s)", path, damaged[-1][1])
            continue
        for name, _ in damaged:
            for part in Path(folder).glob(f"{name}.*"):
                part.unlink()
        if damaged:
            removed = ", ".join(name for name, _ in damaged)
            log.warning("resuming from %s, the newest intact checkpoint (removed %s)", path, removed)
        kept = paths[: paths.index(path) + 1]
        tf.compat.v1.train.update_checkpoint_state(str(folder), path, all_model_checkpoint_paths=kept)
        return path
    if damaged:
        problems = "; ".join(f"{name}: {reason}" for name, reason in damaged)
        raise DogganError(
            f"{folder}: no checkpoint can be restored ({problems}); {START_OVER.format(folder=folder)}"
        )
    return None


def _reason(exc: Exception) -> str:
    """The error's type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
