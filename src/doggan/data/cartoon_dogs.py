"""Cartoon dogs for the embedded sample: five breeds told apart by coat, ears, tail and build, in poses.

A dog is drawn to fill its box, in profile facing left or right, standing, sitting, lying or
running; parts are ovals and thick strokes placed in box units (u across, v down, facing right).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import ImageDraw

Colour = tuple[int, int, int]


class Breed(NamedTuple):
    wnid: str
    name: str
    coat: Colour  # legs and neck
    saddle: Colour  # the back
    belly: Colour  # chest, belly, tail tip and face mask
    face: Colour  # the head
    muzzle: Colour
    ear_colour: Colour
    ears: str  # "up" (pointed) or "down" (floppy)
    ear_size: float
    tail: str  # "thin", "flag", "feather", "curl" or "brush"
    legs: float  # leg thickness, in box heights
    head: float  # head size relative to the body
    mask: bool  # a pale face mask around the eye
    eye: Colour


BREEDS = (
    Breed(
        "n02085620",
        "Chihuahua",
        (222, 184, 135),
        (205, 160, 110),
        (245, 222, 179),
        (222, 184, 135),
        (245, 222, 179),
        (235, 190, 150),
        "up",
        1.6,
        "thin",
        0.045,
        1.3,
        False,
        (15, 10, 10),
    ),
    Breed(
        "n02088364",
        "beagle",
        (250, 248, 240),
        (45, 35, 30),
        (250, 248, 240),
        (165, 85, 30),
        (250, 248, 240),
        (139, 69, 19),
        "down",
        1.3,
        "flag",
        0.065,
        1.0,
        False,
        (40, 20, 10),
    ),
    Breed(
        "n02099601",
        "golden_retriever",
        (218, 165, 32),
        (205, 150, 30),
        (240, 205, 110),
        (218, 165, 32),
        (230, 185, 80),
        (190, 130, 25),
        "down",
        1.0,
        "feather",
        0.07,
        0.95,
        False,
        (40, 20, 10),
    ),
    Breed(
        "n02110185",
        "Siberian_husky",
        (125, 125, 135),
        (90, 90, 100),
        (245, 245, 245),
        (110, 110, 120),
        (245, 245, 245),
        (110, 110, 120),
        "up",
        1.0,
        "curl",
        0.065,
        1.0,
        True,
        (70, 140, 230),
    ),
    Breed(
        "n02106662",
        "German_shepherd",
        (190, 130, 60),
        (35, 28, 24),
        (210, 160, 90),
        (190, 130, 60),
        (30, 25, 22),
        (45, 35, 30),
        "up",
        1.35,
        "brush",
        0.075,
        1.0,
        False,
        (30, 20, 10),
    ),
)

# Per pose: box aspect range (width / height), body ovals (u, v, ru, rv, degrees), near and far legs
# ((u, v) hip to (u, v) paw), the head centre, the tail root and the tail's base direction (degrees,
# 0 = backwards, 90 = up).
POSES = {
    "stand": {
        "aspect": (1.1, 1.5),
        "body": [(0.45, 0.5, 0.31, 0.2, 0)],
        "near": [((0.64, 0.55), (0.66, 0.97)), ((0.27, 0.55), (0.25, 0.97))],
        "far": [((0.57, 0.55), (0.58, 0.95)), ((0.2, 0.55), (0.18, 0.95))],
        "head": (0.8, 0.26),
        "tail": ((0.15, 0.45), 40),
    },
    "sit": {
        "aspect": (0.75, 0.95),
        "body": [(0.38, 0.73, 0.24, 0.19, 0), (0.53, 0.52, 0.15, 0.24, -25)],
        "near": [((0.62, 0.6), (0.64, 0.97)), ((0.3, 0.82), (0.46, 0.96))],
        "far": [((0.55, 0.6), (0.55, 0.96))],
        "head": (0.66, 0.22),
        "tail": ((0.16, 0.86), -10),
    },
    "lie": {
        "aspect": (1.6, 2.2),
        "body": [(0.42, 0.68, 0.32, 0.21, 0)],
        "near": [((0.66, 0.8), (0.95, 0.92)), ((0.25, 0.8), (0.4, 0.94))],
        "far": [((0.62, 0.78), (0.9, 0.86))],
        "head": (0.77, 0.36),
        "tail": ((0.1, 0.7), -5),
    },
    "run": {
        "aspect": (1.4, 1.8),
        "body": [(0.45, 0.45, 0.33, 0.18, -5)],
        "near": [((0.66, 0.5), (0.95, 0.78)), ((0.27, 0.5), (0.03, 0.76))],
        "far": [((0.6, 0.5), (0.78, 0.95)), ((0.22, 0.5), (0.14, 0.95))],
        "head": (0.84, 0.22),
        "tail": ((0.12, 0.42), 15),
    },
}
TAILS = {  # tail style: bends (degrees, applied along 3 segments), length and width in box heights
    "thin": ((20, 40, 40), 0.3, 0.035),
    "flag": ((10, 0, 0), 0.32, 0.05),
    "feather": ((-50, -20, -10), 0.38, 0.08),
    "curl": ((60, 90, 90), 0.3, 0.07),
    "brush": ((-70, -15, -10), 0.42, 0.09),
}


def jitter(rng: np.random.Generator, colour: Colour, amount: int = 18) -> Colour:
    offsets = rng.integers(-amount, amount + 1, 3).tolist()
    return tuple(min(255, max(0, c + o)) for c, o in zip(colour, offsets, strict=True))


def shade(colour: Colour, factor: float) -> Colour:
    return tuple(int(min(255, c * factor)) for c in colour)


class Frame(NamedTuple):
    """A box seen in box units; `right` mirrors u when the dog faces left."""

    x0: float
    y0: float
    w: float
    h: float
    right: bool

    def at(self, u: float, v: float) -> tuple[float, float]:
        return self.x0 + (u if self.right else 1 - u) * self.w, self.y0 + v * self.h

    def oval(self, draw, u, v, ru, rv, degrees, fill, square: bool = False) -> None:
        """An oval (radii in box units; `square`: both in box heights), rotated, as a polygon."""
        t = np.linspace(0, 2 * np.pi, 28, endpoint=False)
        a = np.radians(degrees if self.right else -degrees)
        rx, ry = (ru * self.h if square else ru * self.w), rv * self.h
        cx, cy = self.at(u, v)
        xs = cx + rx * np.cos(t) * np.cos(a) - ry * np.sin(t) * np.sin(a)
        ys = cy + rx * np.cos(t) * np.sin(a) + ry * np.sin(t) * np.cos(a)
        draw.polygon(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=fill)

    def stroke(self, draw, points, width, fill) -> None:
        """A thick polyline through box-unit points, with round ends and joints; width in box heights."""
        px = [self.at(u, v) for u, v in points]
        size = max(2, int(width * self.h))
        draw.line(px, fill=fill, width=size, joint="curve")
        for x, y in (px[0], px[-1]):
            draw.ellipse([x - size / 2, y - size / 2, x + size / 2, y + size / 2], fill=fill)


def _tail(draw: ImageDraw.ImageDraw, f: Frame, b: Breed, pose: dict, colour: Colour) -> None:
    (u, v), base = pose["tail"]
    bends, length, width = TAILS[b.tail]
    points, angle = [(u, v)], base
    for bend in bends:
        angle += bend
        u -= np.cos(np.radians(angle)) * length / 3 * f.h / f.w
        v -= np.sin(np.radians(angle)) * length / 3
        points.append((u, v))
    f.stroke(draw, points, width, colour)
    if b.tail == "flag":  # the beagle's white tip
        f.stroke(draw, points[-2:], width * 1.1, b.belly)


def _head(draw: ImageDraw.ImageDraw, rng: np.random.Generator, f: Frame, b: Breed, hu: float, hv: float):
    s = b.head * rng.uniform(0.9, 1.1) * 0.15
    k = f.h / f.w  # head parts are round: u offsets in box heights
    face, muzzle = jitter(rng, b.face, 12), jitter(rng, b.muzzle, 12)
    ear = jitter(rng, b.ear_colour, 12)
    if b.ears == "up":
        for du in (-0.55, 0.15):
            base_u, tip_v = hu + du * s * k, hv - (0.7 + 0.9 * b.ear_size) * s
            tri = [f.at(base_u - 0.35 * s * k, hv - 0.5 * s), f.at(base_u + 0.45 * s * k, hv - 0.6 * s)]
            draw.polygon([*tri, f.at(base_u - 0.1 * s * k, tip_v)], fill=ear)
    f.oval(draw, hu, hv, s, 0.9 * s, 0, face, square=True)
    if b.mask:
        f.oval(draw, hu + 0.35 * s * k, hv + 0.2 * s, 0.6 * s, 0.55 * s, 0, b.belly, square=True)
    f.oval(draw, hu + 0.85 * s * k, hv + 0.35 * s, 0.6 * s, 0.42 * s, 0, muzzle, square=True)
    if b.ears == "down":
        f.oval(draw, hu - 0.45 * s * k, hv + 0.35 * s, 0.35 * s, 0.95 * b.ear_size * s, 15, ear, square=True)
    r = max(1.2, 0.13 * s * f.h)
    ex, ey = f.at(hu + 0.3 * s * k, hv - 0.2 * s)
    draw.ellipse([ex - r, ey - r, ex + r, ey + r], fill=b.eye)
    nx, ny = f.at(hu + 1.4 * s * k, hv + 0.2 * s)
    draw.ellipse([nx - 1.3 * r, ny - r, nx + 1.3 * r, ny + r], fill=(20, 15, 15))


def draw_dog(draw: ImageDraw.ImageDraw, rng: np.random.Generator, breed: Breed, box, pose: str) -> None:
    """Draw a dog of `breed` filling `box` (xmin, ymin, xmax, ymax) in `pose`, facing a random way."""
    x0, y0, x1, y1 = box
    f = Frame(x0, y0, x1 - x0, y1 - y0, bool(rng.integers(2)))
    p = POSES[pose]
    coat, saddle, belly = jitter(rng, breed.coat), jitter(rng, breed.saddle), jitter(rng, breed.belly)
    legs = 1.5 * breed.legs * rng.uniform(0.85, 1.15)
    for hip, paw in p["far"]:
        f.stroke(draw, [hip, paw], legs, shade(coat, 0.8))
    _tail(draw, f, breed, p, saddle if breed.tail in ("brush", "curl") else coat)
    hu, hv = p["head"][0] + rng.uniform(-0.03, 0.03), p["head"][1] + rng.uniform(-0.05, 0.05)
    bu, bv = p["body"][-1][:2]
    f.stroke(draw, [(bu + 0.1, bv - 0.05), (hu, hv)], 0.16 * breed.head, coat)  # neck
    for u, v, ru, rv, degrees in p["body"]:
        f.oval(draw, u, v, ru, rv, degrees, saddle)
        f.oval(draw, u + 0.03, v + 0.5 * rv, 0.75 * ru, 0.45 * rv, degrees, belly)
    for hip, paw in p["near"]:
        f.stroke(draw, [hip, paw], legs, coat)
    _head(draw, rng, f, breed, hu, hv)
