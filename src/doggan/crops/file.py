"""The crops file: every crop of a dataset as one uint8 array (N×S×S×C), with breed labels and the
source id of each crop, in one .npz. Reading it needs only numpy, so training and evaluation do not
import the crop stage's decoders and process pool."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from doggan.errors import HandOverError
from doggan.files import atomic_path


class Crops(NamedTuple):
    images: np.ndarray  # (N, S, S, C) uint8
    labels: np.ndarray  # (N,) int32, index into breeds
    ids: np.ndarray  # (N,) str, source image id of each crop
    breeds: np.ndarray  # (K,) str


STAGE = "crop"  # the stage that writes the crops file


def save_crops(path: str | Path, crops: Crops) -> None:
    """Write crops as one .npz file (what np.savez writes), atomically.

    `crops.images` may also be a list of (k, S, S, C) segments, written one after the other as one
    array, so crops held in several buffers never need joining in memory first.
    """
    segments = crops.images if isinstance(crops.images, list) else [crops.images]
    shape = (sum(len(s) for s in segments), *segments[0].shape[1:])
    arrays = {
        "images": [np.ascontiguousarray(s, np.uint8) for s in segments],
        "labels": [np.ascontiguousarray(crops.labels, np.int32)],
        "ids": [np.asarray(crops.ids, dtype=str)],
        "breeds": [np.asarray(crops.breeds, dtype=str)],
    }
    with atomic_path(path, suffix=".npz") as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for name, parts in arrays.items():
            header = {
                "descr": np.lib.format.dtype_to_descr(parts[0].dtype),
                "fortran_order": False,
                "shape": shape if name == "images" else parts[0].shape,
            }
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_2_0(member, header)
                for part in parts:
                    member.write(memoryview(part).cast("B"))


def load_crops(path: str | Path) -> Crops:
    """Read a crops file written by `save_crops`, checked whole: a missing, truncated, corrupted or
    ill-shaped file is an error naming it and the command that remakes it."""
    path = Path(path)
    if not path.is_file():
        raise HandOverError(path, "crops file not found", STAGE)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in Crops._fields if name not in data.files]
            if missing:
                raise HandOverError(path, f"not a crops file: no {', '.join(missing)} array", STAGE)
            crops = Crops(*(data[name] for name in Crops._fields))
    except (zipfile.BadZipFile, EOFError, zlib.error, KeyError, ValueError, OSError) as exc:
        raise HandOverError(path, f"truncated or corrupted ({type(exc).__name__}: {exc})", STAGE) from None
    problem = _shape_problem(crops)
    if problem:
        raise HandOverError(path, problem, STAGE)
    return crops


def _shape_problem(crops: Crops) -> str:
    """What makes arrays unlike those `save_crops` writes, or "" when they are alike."""
    images, labels = crops.images, crops.labels
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) == 0:
        return f"images are {images.dtype} {images.shape}, expected a non-empty uint8 array (N, S, S, C)"
    if images.shape[1] != images.shape[2] or images.shape[3] not in (1, 3):
        return f"images are {images.shape[1:]}, expected square crops (S, S, C) of 1 or 3 channels"
    n, k = len(images), len(crops.breeds)
    if labels.shape != (n,) or labels.dtype.kind not in "iu" or crops.ids.shape != (n,):
        return f"labels {labels.dtype} {labels.shape} and ids {crops.ids.shape} do not match {n} crops"
    if crops.breeds.ndim != 1 or k == 0 or labels.min() < 0 or labels.max() >= k:
        return f"labels outside the {k} breeds"
    return ""
