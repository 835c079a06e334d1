"""Reading photos for the crop stage: sizes from the headers, truncation, decoding with the JPEG
decoder's own shrinking (OpenCV's reduced decoding, Pillow as the fallback) and resizing."""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image

from doggan.params import CropParams

INTERPOLATION = {
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}


def _rgb(flag: int) -> int:
    """A colour flag that has the decoder write RGB itself (no BGR image to convert afterwards)."""
    return flag & ~cv2.IMREAD_COLOR | cv2.IMREAD_COLOR_RGB


REDUCED = {  # decoder flags per shrink factor: (RGB, grayscale); JPEGs decode straight at 1/2, 1/4, 1/8
    1: (_rgb(cv2.IMREAD_COLOR), cv2.IMREAD_GRAYSCALE),
    2: (_rgb(cv2.IMREAD_REDUCED_COLOR_2), cv2.IMREAD_REDUCED_GRAYSCALE_2),
    4: (_rgb(cv2.IMREAD_REDUCED_COLOR_4), cv2.IMREAD_REDUCED_GRAYSCALE_4),
    8: (_rgb(cv2.IMREAD_REDUCED_COLOR_8), cv2.IMREAD_REDUCED_GRAYSCALE_8),
}
JPEG_SIGNATURE = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SOF_MARKERS = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))


class ImageError(Exception):
    """A photo that cannot be cropped; `reason` is its line in the report."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def resize(image: np.ndarray, size: int, params: CropParams) -> np.ndarray:
    """Resize to size×size: `interpolation_down` when shrinking, `interpolation_up` when enlarging."""
    shrink = image.shape[0] >= size and image.shape[1] >= size
    method = INTERPOLATION[params.interpolation_down if shrink else params.interpolation_up]
    out = cv2.resize(image, (size, size), interpolation=method)
    return out[..., None] if out.ndim == 2 else out


def is_truncated(data: bytes) -> bool:
    """A JPEG whose last scan has no end marker after it, or a PNG whose last IDAT has no IEND after it.

    Decoders fill the missing part with grey instead of failing. Entropy-coded JPEG data never holds
    the bytes FF D9 or FF DA, so this also accepts photos with data appended after their end.
    """
    if data[:2] == JPEG_SIGNATURE:
        if data.endswith(b"\xff\xd9"):  # the common case, found without scanning the whole file
            return False
        return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")
    if data[:8] == PNG_SIGNATURE:
        return data.rfind(b"IEND") < data.rfind(b"IDAT")
    return False


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None when the markers before it do not add up."""
    i = 2
    while i + 9 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker in SOF_MARKERS:
            height, width = (
                int.from_bytes(data[i + 5 : i + 7], "big"),
                int.from_bytes(data[i + 7 : i + 9], "big"),
            )
            return (width, height) if width and height else None
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the image header, without decoding; ImageError when unreadable or too large."""
    if is_truncated(data):
        raise ImageError("truncated image")
    size = jpeg_size(data) if data[:2] == JPEG_SIGNATURE else None
    if size is None:  # not a JPEG, or an unusual one: Pillow reads every format's header
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                size = Image.open(io.BytesIO(data)).size
        except Image.DecompressionBombError:
            raise ImageError("image too large") from None
        except (OSError, ValueError, SyntaxError):
            raise ImageError("image failed to decode") from None
    width, height = size
    if width * height > (Image.MAX_IMAGE_PIXELS or width * height):
        raise ImageError("image too large")
    return width, height


def _decode_pil(data: bytes, channels: int, factor: int) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.draft("L" if channels == 1 else "RGB", (image.width // factor, image.height // factor))
    return np.asarray(image.convert("L" if channels == 1 else "RGB"))


def reduction(window: int, size: int) -> int:
    """The JPEG decoder's shrink factor (1, 2, 4 or 8) that still leaves a window at least `size` wide.

    Reduced decoding averages each factor×factor block while decoding, so the crops stay properly
    filtered; a window then snaps to that block grid, which moves it by less than half an output pixel.
    """
    return max(f for f in REDUCED if f == 1 or window >= size * f)


def decode(data: bytes, channels: int, factor: int = 1) -> np.ndarray:
    """Decode to RGB (channels 3) or gray (channels 1); JPEGs shrunk by `factor` (1, 2, 4 or 8) while
    decoding. Grayscale, CMYK, palette and PNG-in-JPEG inputs all come out the same way."""
    factor = factor if data[:2] == JPEG_SIGNATURE else 1
    flag = REDUCED[factor][0 if channels == 3 else 1] | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if pixels is None:  # a format this OpenCV build cannot read: let Pillow try
        try:
            return _decode_pil(data, channels, factor)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            raise ImageError("image failed to decode") from None
    return pixels
