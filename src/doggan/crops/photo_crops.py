"""One photo into its square crops: one per usable box and, when `crop.whole_photos` asks for it,
the whole photo as well, all from a single decode at the coarsest JPEG reduction that keeps every
crop at least `crop.size` wide."""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from doggan.crops.boxes import centre_square, check_box, largest, square_window
from doggan.crops.decode import JPEG_SIGNATURE, decode, image_size, reduction, resize
from doggan.data.annotations import Box
from doggan.params import CropParams


class Cut(NamedTuple):
    """A window of the photo (photo pixels) that becomes one crop."""

    window: tuple[int, int, int, int]  # x0, y0, x1, y1
    breed: str
    pad: bool  # padded to a square (a whole photo); otherwise the window is square already

    def side(self) -> int:
        """The side of the square this window becomes, in photo pixels."""
        x0, y0, x1, y1 = self.window
        return max(x1 - x0, y1 - y0) if self.pad else min(x1 - x0, y1 - y0)


def box_cuts(
    boxes: list[Box], width: int, height: int, params: CropParams, margin: float
) -> tuple[list[Cut], list[str]]:
    """The square window of every usable box, grown by `margin`, and the reason for each box skipped."""
    cuts, skips = [], []
    for box in boxes:
        clipped, reason = check_box(box, width, height, params.min_box, params.max_aspect)
        if reason:
            skips.append(reason)
        else:
            cuts.append(Cut(square_window(clipped, width, height, margin), clipped.breed, False))
    return cuts, skips


def whole_photo_cut(boxes: list[Box], width: int, height: int, mode: str) -> Cut:
    """The whole photo, labelled by its largest box: its centre square, or all of it padded to a square."""
    breed = largest(boxes).breed
    if mode == "center":
        box = centre_square(width, height, breed)
        return Cut((box.xmin, box.ymin, box.xmax, box.ymax), breed, False)
    return Cut((0, 0, width, height), breed, True)


def pad_square(pixels: np.ndarray) -> np.ndarray:
    """Pad the short side evenly to a square by reflection about the edge pixels (no edge repeated)."""
    h, w = pixels.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    return cv2.copyMakeBorder(pixels, top, side - h - top, left, side - w - left, cv2.BORDER_REFLECT_101)


def cut_out(pixels: np.ndarray, cut: Cut, factor: int, params: CropParams) -> np.ndarray:
    """The crop of one window from pixels decoded at 1/`factor`, resized to `crop.size`."""
    x0, y0, x1, y1 = cut.window
    # in decoded pixels: each covers factor×factor photo pixels, so windows snap to that grid
    a, b = round(x0 / factor), round(y0 / factor)
    c = min(a + max(1, round((x1 - x0) / factor)), pixels.shape[1])
    d = min(b + max(1, round((y1 - y0) / factor)), pixels.shape[0])
    region = pad_square(pixels[b:d, a:c]) if cut.pad else pixels[b:d, a:c]
    return resize(region, params.size, params)


def crop_image(data: bytes, boxes: list[Box] | None, params: CropParams) -> tuple[list, list[str]]:
    """Crop every box of one photo (or its centre square when `boxes` is None).

    Returns ([(crop, breed)], [reason per skipped box]); raises ImageError when the photo is unusable.
    With `crop.whole_photos` on, a photo with boxes also gives its whole-photo crop, always last.
    """
    width, height = image_size(data)
    if boxes is None:
        cuts, skips = box_cuts([centre_square(width, height, "image")], width, height, params, 0.0)
    else:
        cuts, skips = box_cuts(boxes, width, height, params, params.margin)
        if params.whole_photos != "none":
            cuts.append(whole_photo_cut(boxes, width, height, params.whole_photos))
    if not cuts:
        return [], skips
    factor = reduction(min(cut.side() for cut in cuts), params.size) if data[:2] == JPEG_SIGNATURE else 1
    pixels = decode(data, params.channels, factor)
    return [(cut_out(pixels, cut, factor, params), cut.breed) for cut in cuts], skips
