"""Box geometry for the crop stage: which boxes are usable, and the square window cut around each.

Pure arithmetic on annotation boxes in photo pixels; nothing here decodes an image.
"""

from __future__ import annotations

from doggan.data.annotations import Box


def square_window(box: Box, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """The square around a box, grown by `margin` of its longer side, moved inside the image, clipped."""
    side = max(box.xmax - box.xmin, box.ymax - box.ymin) * (1.0 + margin)
    side = min(side, max(width, height))
    cx, cy = (box.xmin + box.xmax) / 2, (box.ymin + box.ymax) / 2
    x0 = min(max(cx - side / 2, 0.0), max(width - side, 0.0))
    y0 = min(max(cy - side / 2, 0.0), max(height - side, 0.0))
    return (
        int(round(x0)),
        int(round(y0)),
        int(round(min(x0 + side, width))),
        int(round(min(y0 + side, height))),
    )


def check_box(
    box: Box, width: int, height: int, min_box: int, max_aspect: float = 0.0
) -> tuple[Box | None, str | None]:
    """Clip a box to the image; return (box, None) when usable, else (None, reason).

    `max_aspect` (0 = off) skips clipped boxes whose h/w or w/h exceeds it: slivers of a dog.
    """
    if box.xmin > box.xmax or box.ymin > box.ymax:
        return None, "inverted box"
    if box.xmin == box.xmax or box.ymin == box.ymax:
        return None, "empty box"
    clipped = Box(box.breed, max(box.xmin, 0), max(box.ymin, 0), min(box.xmax, width), min(box.ymax, height))
    w, h = clipped.xmax - clipped.xmin, clipped.ymax - clipped.ymin
    if w <= 0 or h <= 0:
        return None, "box outside the image"
    if min(w, h) < min_box:
        return None, "box smaller than crop.min_box"
    if max_aspect and max(w, h) > max_aspect * min(w, h):
        return None, "box aspect beyond crop.max_aspect"
    return clipped, None


def centre_square(width: int, height: int, breed: str) -> Box:
    """The largest square in the middle of the image, as a box."""
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    return Box(breed, x0, y0, x0 + side, y0 + side)


def largest(boxes: list[Box]) -> Box:
    """The box of largest area (the first of equals); what a whole-photo crop is labelled by."""
    return max(boxes, key=lambda b: max(b.xmax - b.xmin, 0) * max(b.ymax - b.ymin, 0))
