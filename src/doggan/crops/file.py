"""The crops file: every crop of a dataset as one uint8 array (N×S×S×C), with breed labels and the
source id of each crop, in one .npz. Reading it needs only numpy, so training and evaluation do not
import the crop stage's decoders and process pool."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from doggan.errors import DogganError
from doggan.files import atomic_path


class Crops(NamedTuple):
    images: np.ndarray  # (N, S, S, C) uint8
    labels: np.ndarray  # (N,) int32, index into breeds
    ids: np.ndarray  # (N,) str, source image id of each crop
    breeds: np.ndarray  # (K,) str


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
    """Read a crops file written by `save_crops`, with a clear error when it is missing or wrong."""
    path = Path(path)
    if not path.is_file():
        raise DogganError(f"{path}: crops file not found (run the crop stage)")
    try:
        with np.load(path, allow_pickle=False) as data:
            crops = Crops(data["images"], data["labels"], data["ids"], data["breeds"])
    except (KeyError, ValueError, OSError) as exc:
        raise DogganError(f"{path}: not a crops file ({exc})") from None
    if crops.images.ndim != 4 or crops.images.dtype != np.uint8 or len(crops.images) == 0:
        raise DogganError(f"{path}: expected a non-empty uint8 array (N, S, S, C) of crops")
    return crops
