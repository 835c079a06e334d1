"""The memorization check: how close each generated image sits to a real one, and what counts as a copy.

Kaggle's backbones (tf2015, nasnet) keep Kaggle's rule exactly: 1 - |cos| of their features, eps
0.1 (public) or 0.25 (private). Other backbones put distances on another scale, so their eps is
calibrated on the real images: real photos held out one at a time from the rest show how far new
photos of the same kind sit from their nearest neighbour, and eps is a safety factor times a low
quantile of those distances. The offline stand-in's features summarise layout and sharpness, made
to rank image sets, not to tell a copy from a look-alike, so its check compares a copy-detection
descriptor instead: small centred thumbnails, matched in both orientations, which flips, JPEG
re-encoding and light noise barely move.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from doggan.errors import DogganError
from doggan.output.grids import save_grid
from doggan.scoring import mifid

EPS = {"public": mifid.KAGGLE_EPS_PUBLIC, "private": mifid.KAGGLE_EPS_PRIVATE}
KAGGLE_BACKBONES = ("tf2015", "nasnet")
THUMBNAIL_BACKBONES = ("standin",)  # backbones whose features cannot tell a copy from a look-alike
THUMB = 32  # side of the stored real thumbnails (the grid and the descriptor)
DESCRIPTOR_SIDE = 16  # side of the descriptor: 2x2 blocks of the thumbnail averaged
HELDOUT_QUANTILE = 0.05  # eps is calibrated on this low quantile of the held-out distances ...
SAFETY_FACTOR = 0.5  # ... times this factor
MAX_HELDOUT = 2000  # real images held out for the calibration (a fixed-seed random choice)
FLAGGED = (220, 30, 30)  # frame of the grid's pairs closer than eps


@dataclass(frozen=True)
class Match:
    distances: np.ndarray  # per generated image: 1 - |cos| to its nearest real image
    nearest: np.ndarray  # the index of that real image


def space(backbone: str) -> str:
    """Where distances are measured: "backbone" features, or the "thumbnails" copy descriptor."""
    return "thumbnails" if backbone in THUMBNAIL_BACKBONES else "backbone"


def thumbnails(images: np.ndarray) -> np.ndarray:
    """Uint8 THUMB x THUMB RGB thumbnails (Lanczos), of real images (stored) and generated ones alike."""
    return np.stack(
        [np.asarray(Image.fromarray(i).convert("RGB").resize((THUMB, THUMB), Image.LANCZOS)) for i in images]
    )


def descriptors(thumbs: np.ndarray) -> np.ndarray:
    """Unit rows: the thumbnails averaged down to 16x16, minus their mean (blind to overall brightness).

    Averaging washes out pixel noise and JPEG blocking; a flat image gives a zero row (never a copy).
    """
    n, side = len(thumbs), DESCRIPTOR_SIDE
    block = thumbs.shape[1] // side
    small = np.asarray(thumbs, np.float64).reshape(n, side, block, side, block, -1).mean(axis=(2, 4))
    flat = (small - small.mean(axis=(1, 2, 3), keepdims=True)).reshape(n, -1)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-9)


def views(where: str, features: np.ndarray | None, thumbs: np.ndarray | None) -> list[np.ndarray]:
    """Unit rows of images in a space: the descriptor and its mirror image, or the backbone features."""
    if where == "thumbnails":
        return [descriptors(thumbs), descriptors(thumbs[:, :, ::-1])]
    features = np.asarray(features, np.float64)
    return [features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-300)]


def nearest(queries: list[np.ndarray], real: np.ndarray, exclude=None, block: int = 1024) -> Match:
    """Per query row, over its views: min over real rows of 1 - |cos|; real row `exclude[i]` never matches."""
    n = len(queries[0])
    distances, index = np.empty(n, np.float64), np.empty(n, np.int64)
    for start in range(0, n, block):
        stop = min(start + block, n)
        similarity = np.max([np.abs(q[start:stop] @ real.T) for q in queries], axis=0)
        if exclude is not None:
            similarity[np.arange(stop - start), exclude[start:stop]] = -1.0
        index[start:stop] = similarity.argmax(axis=1)
        distances[start:stop] = np.maximum(1.0 - similarity.max(axis=1), 0.0)
    return Match(distances, index)


def heldout_distances(real_views: list[np.ndarray], seed: int = 0) -> np.ndarray:
    """For up to MAX_HELDOUT real images (chosen at random), the distance to the nearest OTHER real image."""
    n = len(real_views[0])
    if n < 2:
        raise DogganError(f"the memorization threshold needs at least 2 real images, got {n}")
    held = np.sort(np.random.default_rng(seed).permutation(n)[:MAX_HELDOUT])
    return nearest([v[held] for v in real_views], real_views[0], exclude=held).distances


def calibrate(backbone: str, protocol: str, features: np.ndarray, thumbs: np.ndarray) -> dict:
    """The threshold record stored with the real statistics: eps, its source, the held-out numbers.

    Kaggle's backbones keep Kaggle's eps (the held-out numbers are context); others get the calibrated
    one. `heldout` (the distances themselves) is stored as an array, the rest as metadata.
    """
    where = space(backbone)
    heldout = heldout_distances(views(where, features, thumbs))
    quantile = float(np.quantile(heldout, HELDOUT_QUANTILE))
    record = {
        "memorization_space": where,
        "heldout_quantile": HELDOUT_QUANTILE,
        "heldout_distance": quantile,
        "heldout_median": float(np.median(heldout)),
        "n_heldout": len(heldout),
    }
    if backbone in KAGGLE_BACKBONES:
        record.update(eps=EPS[protocol], eps_source=f"kaggle_{protocol}")
    else:
        record.update(eps=SAFETY_FACTOR * quantile, eps_source="calibrated", safety_factor=SAFETY_FACTOR)
    return {"record": record, "heldout": heldout.astype(np.float32)}


def match(where: str, features: np.ndarray, images: np.ndarray, real: dict) -> Match:
    """Nearest real image of each generated one: Kaggle's computation on backbone features, or the
    descriptor in both orientations against the real thumbnails' (`real`: features, descriptors)."""
    if where == "backbone":
        distances, index = mifid.nearest_cosine_distance(features, real["features"])
        return Match(distances, index)
    return nearest(views(where, None, thumbnails(images)), real["descriptors"])


def save_pairs(path: Path, images: np.ndarray, thumbs: np.ndarray, found: Match, eps: float, n: int = 8):
    """Pairs of (generated image, its nearest real image), closest first; pairs closer than eps framed red."""
    pairs = []
    for i in np.argsort(found.distances, kind="stable")[:n]:
        size = (images.shape[2], images.shape[1])
        real = np.array(Image.fromarray(thumbs[found.nearest[i]]).resize(size, Image.NEAREST))
        pair = [images[i].copy(), real]
        if found.distances[i] < eps:
            for tile in pair:
                tile[[0, -1]], tile[:, [0, -1]] = FLAGGED, FLAGGED
        pairs += pair
    save_grid(path, np.stack(pairs), cols=2, scale=2)
