"""Image grids: the preview PNGs that every stage writes for a person to look at."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from doggan.files import write_bytes


def make_grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile uint8 images (N, H, W, C) into one (rows*H, cols*W, C) array with a white border."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i, image in enumerate(images):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y : y + h, x : x + w] = image
    return grid


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Map images in [-1, 1] to uint8 [0, 255] with rounding."""
    return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid_png(images: np.ndarray, cols: int | None = None, scale: int = 1) -> bytes:
    grid = make_grid(images, cols)
    image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # about 5x faster than the default level
    return buffer.getvalue()


def save_grid(path: str | Path, images: np.ndarray, cols: int | None = None, scale: int = 1) -> None:
    """Write a uint8 image grid as a PNG, atomically."""
    write_bytes(path, grid_png(images, cols, scale))
