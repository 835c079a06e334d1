"""The embedded sample: a small synthetic Stanford-Dogs-style dataset, made on the spot.

Each photo holds 1-3 cartoon dogs of one breed (doggan.data.cartoon_dogs: five breeds, four poses) in
one of seven scenes (field, beach, snow, park, room, street, studio) with scenery behind them,
sometimes objects in front of them (a ball, a bush, a fence, a chair, a pot, a person's legs), and
its own lighting (brightness, colour cast, a light gradient, sensor noise, JPEG quality); with a
Pascal VOC annotation of one box per dog. It is written exactly as Kaggle ships the competition
data, so every later stage runs on it unchanged, offline, and a GAN learns its structure in minutes.
"""

from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from doggan.data.archives import write_member
from doggan.data.cartoon_dogs import BREEDS, POSES, Breed, draw_dog, jitter, shade
from doggan.files import atomic_path

__all__ = ["BREEDS", "Breed", "Dog", "make_photo", "voc_xml", "write_sample"]

MAX_W, MAX_H = 500, 400
SCENES = ("field", "beach", "snow", "park", "room", "street", "studio")
SKY = ((135, 190, 235), (200, 220, 240), (250, 200, 150), (120, 130, 150))  # clear, hazy, dusk, overcast
GROUND = {
    "field": ((70, 140, 50), (110, 160, 60)),
    "beach": ((225, 205, 160), (200, 180, 140)),
    "snow": ((240, 242, 248), (215, 225, 240)),
    "street": ((120, 120, 125), (90, 90, 95)),
}
INDOOR = ((230, 220, 200), (190, 210, 225), (225, 190, 180), (200, 215, 185), (245, 245, 240))
FLOOR = ((150, 100, 60), (120, 80, 50), (190, 170, 140), (100, 110, 130))


class Dog(NamedTuple):
    breed: Breed
    box: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax (inclusive)


NOISE_LEVELS = (1, 3, 5, 8, 11)  # sensor noise standard deviations, grey levels


@functools.cache
def _noise_bank(sigma: int) -> Image.Image:
    """Gaussian sensor noise around grey 128 (fixed seed) that photos take windows of: cheaper than
    fresh noise per photo."""
    unit = np.random.default_rng(2019).standard_normal((MAX_H + 64, MAX_W + 64, 3), dtype=np.float32)
    return Image.fromarray(np.clip(128 + sigma * unit, 0, 255).astype(np.uint8))


def _bands(
    rng: np.random.Generator, height: int, width: int, stops: list[tuple[float, tuple]]
) -> Image.Image:
    """Horizontal colour bands with gradients: `stops` are (fraction of the height, colour) from the top."""
    rows = np.linspace(0, 1, height)
    fractions = [s for s, _ in stops]
    colours = np.array([jitter(rng, c, 20) for _, c in stops], np.float32)
    column = np.stack([np.interp(rows, fractions, colours[:, k]) for k in range(3)], axis=1)
    return Image.fromarray(column[:, None, :].astype(np.uint8)).resize((width, height), Image.NEAREST)


def _outdoor(rng: np.random.Generator, draw: ImageDraw.ImageDraw, w: int, h: int, horizon: int, kind: str):
    """Clouds, a sun, trees, a house or a fence on the horizon."""
    for _ in range(int(rng.integers(0, 4))):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, horizon * 0.8), rng.uniform(10, 40)
        for dx in (-r, 0, r):
            draw.ellipse(
                [cx + dx - r, cy - r * 0.6, cx + dx + r, cy + r * 0.6], fill=jitter(rng, (245, 245, 250), 8)
            )
    if rng.random() < 0.3:
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, horizon * 0.5), rng.uniform(8, 20)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 240, 180))
    if kind == "beach":
        draw.rectangle([0, horizon - h * 0.08, w, horizon], fill=jitter(rng, (40, 110, 170), 25))
        return
    for _ in range(int(rng.integers(0, 4))):
        x, size = rng.uniform(0, w), rng.uniform(0.15, 0.4) * h
        draw.rectangle(
            [x - size * 0.06, horizon - size * 0.6, x + size * 0.06, horizon + 2], fill=(90, 60, 35)
        )
        green = (240, 245, 250) if kind == "snow" else jitter(rng, (50, 110, 45), 30)
        draw.ellipse([x - size * 0.35, horizon - size, x + size * 0.35, horizon - size * 0.45], fill=green)
    if rng.random() < 0.3:
        x, s = rng.uniform(0, w * 0.8), rng.uniform(0.15, 0.3) * h
        draw.rectangle([x, horizon - s, x + 1.3 * s, horizon], fill=jitter(rng, (200, 170, 140), 40))
        draw.polygon(
            [(x - 0.1 * s, horizon - s), (x + 0.65 * s, horizon - 1.6 * s), (x + 1.4 * s, horizon - s)],
            fill=jitter(rng, (150, 50, 40), 30),
        )
    if rng.random() < 0.3:
        colour, top = jitter(rng, (235, 230, 220), 20), horizon - rng.uniform(0.05, 0.15) * h
        draw.rectangle([0, top, w, top + 4], fill=colour)
        for x in np.arange(rng.uniform(0, 30), w, rng.uniform(20, 45)):
            draw.rectangle([x, top - 6, x + 5, horizon + 4], fill=colour)


def _indoor(rng: np.random.Generator, draw: ImageDraw.ImageDraw, w: int, h: int, horizon: int, kind: str):
    """A window, a picture, a door or a sofa against the wall; boards or tiles on the floor."""
    if kind == "street":  # brick wall over pavement
        brick, step = jitter(rng, (160, 75, 55), 30), rng.uniform(10, 18)
        for row, y in enumerate(np.arange(0, horizon, step)):
            for x in np.arange(-(row % 2) * step, w, 2 * step):
                draw.rectangle([x + 1, y + 1, x + 2 * step - 1, y + step - 1], fill=jitter(rng, brick, 12))
        return
    if kind == "studio":
        return
    for _ in range(int(rng.integers(1, 3))):
        x, y, s = rng.uniform(0, w * 0.85), rng.uniform(0.05, 0.3) * h, rng.uniform(0.12, 0.3) * h
        frame = jitter(rng, (240, 240, 235) if rng.random() < 0.5 else (110, 70, 40), 15)
        draw.rectangle([x, y, x + s * rng.uniform(0.8, 1.5), y + s], fill=frame)
        draw.rectangle([x + 4, y + 4, x + s * 0.8 - 4, y + s - 4], fill=jitter(rng, (150, 190, 230), 60))
    if rng.random() < 0.4:
        x, s = rng.uniform(0, w * 0.6), rng.uniform(0.3, 0.5) * w
        colour = jitter(rng, (120, 60, 70) if rng.random() < 0.5 else (70, 90, 130), 30)
        draw.rectangle([x, horizon - 0.25 * h, x + s, horizon + 0.05 * h], fill=colour)
        draw.rectangle([x, horizon - 0.4 * h, x + s, horizon - 0.2 * h], fill=shade(colour, 0.85))
    lines = jitter(rng, (80, 55, 40), 20)
    for y in np.arange(horizon + 8, h, rng.uniform(10, 30)):
        draw.line([0, y, w, y], fill=lines, width=1)


def _background(rng: np.random.Generator, width: int, height: int) -> tuple[Image.Image, int]:
    """A scene and its horizon (where the floor or ground starts)."""
    kind = SCENES[int(rng.integers(len(SCENES)))]
    horizon = int(height * rng.uniform(0.3, 0.6))
    top = horizon / height
    if kind == "park":  # foliage: a coarse random field blown up, greens and browns
        coarse = rng.uniform(0.4, 1.0, (int(rng.integers(3, 9)), int(rng.integers(3, 12)), 1))
        coarse = (coarse * jitter(rng, (90, 120, 60), 50)).astype(np.uint8)
        return Image.fromarray(coarse).resize((width, height), Image.BICUBIC), int(height * 0.2)
    if kind in GROUND:
        sky = SKY[int(rng.integers(len(SKY)))]
        near, far = GROUND[kind]
        stops = [(0, sky), (top - 0.01, shade(sky, 1.1)), (top, far), (1, near)]
    elif kind == "studio":
        backdrop = jitter(rng, INDOOR[int(rng.integers(len(INDOOR)))], 60)
        stops = [(0, shade(backdrop, 0.8)), (top, backdrop), (1, shade(backdrop, 0.9))]
    else:
        wall, floor = INDOOR[int(rng.integers(len(INDOOR)))], FLOOR[int(rng.integers(len(FLOOR)))]
        stops = [(0, wall), (top - 0.01, wall), (top, shade(floor, 0.8)), (1, floor)]
    image = _bands(rng, height, width, stops)
    scenery = _outdoor if kind in ("field", "beach", "snow") else _indoor
    scenery(rng, ImageDraw.Draw(image), width, height, horizon, kind)
    return image, horizon


def _place_dogs(rng: np.random.Generator, width: int, height: int, horizon: int) -> list[tuple[Dog, str]]:
    """1-3 dogs of one breed (as in Stanford Dogs, where a photo's folder names its breed), with
    their poses, standing on the ground below the horizon where they fit, nearer ones larger."""
    breed = BREEDS[int(rng.integers(len(BREEDS)))]
    n = int(rng.choice([1, 1, 1, 2, 3]))
    dogs = []
    for _ in range(n):
        pose = list(POSES)[int(rng.integers(len(POSES)))]
        aspect = rng.uniform(*POSES[pose]["aspect"])
        h = int(min(height, width / aspect) * (rng.uniform(0.45, 0.95) if n == 1 else rng.uniform(0.3, 0.6)))
        w = int(h * aspect)
        w, h = max(8, min(w, width - 2)), max(8, min(h, height - 2))
        x0 = int(rng.integers(0, width - w))
        low = min(max(0, horizon - h + h // 4), height - h - 1)
        y0 = int(rng.integers(low, height - h))
        dogs.append((Dog(breed, (x0, y0, x0 + w, y0 + h)), pose))
    return sorted(dogs, key=lambda d: d[0].box[3])


def _occluders(rng: np.random.Generator, draw: ImageDraw.ImageDraw, dogs: list[Dog], width: int, height: int):
    """Now and then something in front of a dog: a ball, a bush, a fence, a chair, a pot or legs."""
    if rng.random() > 0.45:
        return
    x0, y0, x1, y1 = dogs[int(rng.integers(len(dogs)))].box
    bw, bh = x1 - x0, y1 - y0
    x, y = rng.uniform(x0, x1), rng.uniform(y0 + bh * 0.4, y1)
    kind = int(rng.integers(6))
    if kind == 0:  # ball
        r = bh * rng.uniform(0.1, 0.2)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=jitter(rng, (220, 40, 40), 60))
    elif kind == 1:  # bush
        for _ in range(4):
            r, dx, dy = bh * rng.uniform(0.12, 0.22), rng.uniform(-0.2, 0.2) * bw, rng.uniform(-0.1, 0.1) * bh
            draw.ellipse(
                [x + dx - r, y + dy - r, x + dx + r, y + dy + r], fill=jitter(rng, (40, 100, 40), 25)
            )
    elif kind == 2:  # fence in front
        colour, top = jitter(rng, (200, 180, 150), 40), y - bh * 0.2
        draw.rectangle([0, top, width, top + max(3, bh * 0.05)], fill=colour)
        for px in np.arange(rng.uniform(0, 40), width, rng.uniform(25, 60)):
            draw.rectangle([px, top - bh * 0.1, px + max(3, bw * 0.06), height], fill=colour)
    elif kind == 3:  # chair or table: a top and two legs
        colour, s = jitter(rng, (120, 80, 50), 30), bw * rng.uniform(0.3, 0.6)
        draw.rectangle([x - s, y - 0.05 * bh, x + s, y], fill=colour)
        for lx in (x - s, x + s - 0.06 * s):
            draw.rectangle([lx, y, lx + max(3, 0.08 * s), height], fill=colour)
    elif kind == 4:  # flower pot
        s = bh * rng.uniform(0.15, 0.3)
        draw.polygon(
            [(x - s, y - s), (x + s, y - s), (x + 0.7 * s, y + s), (x - 0.7 * s, y + s)],
            fill=jitter(rng, (180, 90, 50), 20),
        )
        draw.ellipse(
            [x - 1.2 * s, y - 2.2 * s, x + 1.2 * s, y - 0.8 * s], fill=jitter(rng, (60, 140, 60), 30)
        )
    else:  # a person's legs from the top of the photo down to the ground
        trousers, s = jitter(rng, (50, 60, 110), 40), max(4, bw * rng.uniform(0.06, 0.1))
        for lx in (x - 1.6 * s, x + 0.4 * s):
            draw.rectangle([lx, 0, lx + 1.2 * s, y], fill=trousers)
            draw.rectangle([lx - 0.2 * s, y, lx + 1.8 * s, y + 0.6 * s], fill=(30, 25, 25))


def _light(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """Brightness and a colour cast, a light gradient across the photo, and sensor noise."""
    w, h = image.size
    gains = rng.uniform(0.7, 1.35) * rng.uniform(0.85, 1.15, 3)
    image = image.point(np.minimum(255, np.arange(256) * gains[:, None]).astype(int).ravel().tolist())
    corners = rng.uniform(150, 255, (2, 2, 1)).repeat(3, axis=2).astype(np.uint8)
    ramp = Image.fromarray(corners).resize((w, h), Image.BILINEAR)
    image = ImageChops.multiply(image, ramp)
    sigma = NOISE_LEVELS[int(rng.integers(len(NOISE_LEVELS)))]
    ox, oy = int(rng.integers(0, 64)), int(rng.integers(0, 64))
    return ImageChops.add(image, _noise_bank(sigma).crop((ox, oy, ox + w, oy + h)), offset=-128)


def voc_xml(image_id: str, width: int, height: int, dogs: list[Dog]) -> bytes:
    """A Pascal VOC annotation in the Stanford Dogs style."""
    objects = "".join(
        f"\t<object>\n\t\t<name>{d.breed.name}</name>\n\t\t<pose>Unspecified</pose>\n"
        f"\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n\t\t<bndbox>\n"
        f"\t\t\t<xmin>{d.box[0]}</xmin>\n\t\t\t<ymin>{d.box[1]}</ymin>\n"
        f"\t\t\t<xmax>{d.box[2]}</xmax>\n\t\t\t<ymax>{d.box[3]}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for d in dogs
    )
    return (
        f"<annotation>\n\t<folder>{image_id.split('_')[0][1:]}</folder>\n"
        f"\t<filename>{image_id}</filename>\n\t<source>\n\t\t<database>doggan sample</database>\n"
        f"\t</source>\n\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n"
        f"\t\t<depth>3</depth>\n\t</size>\n\t<segment>0</segment>\n{objects}</annotation>\n"
    ).encode()


def make_photo(rng: np.random.Generator) -> tuple[bytes, int, int, list[Dog]]:
    """One JPEG photo (quality 70-95) with its dogs."""
    width, height = int(rng.integers(200, MAX_W + 1)), int(rng.integers(160, MAX_H + 1))
    image, horizon = _background(rng, width, height)
    placed = _place_dogs(rng, width, height, horizon)
    draw = ImageDraw.Draw(image)
    for dog, pose in placed:
        draw_dog(draw, rng, dog.breed, dog.box, pose)
    dogs = [dog for dog, _ in placed]
    _occluders(rng, draw, dogs, width, height)
    buffer = io.BytesIO()
    _light(rng, image).save(buffer, format="JPEG", quality=int(rng.integers(70, 96)))
    return buffer.getvalue(), width, height, dogs


def write_sample(raw_dir: str | Path, n_images: int = 300, seed: int = 0) -> dict:
    """Write `all-dogs.zip` and `Annotation.zip` for `n_images` synthetic photos; same seed, same bytes."""
    raw_dir = Path(raw_dir)
    rng = np.random.default_rng(seed)
    counters: dict[str, int] = {}
    n_dogs = 0
    with (
        atomic_path(raw_dir / "all-dogs.zip") as images_tmp,
        atomic_path(raw_dir / "Annotation.zip") as notes_tmp,
        zipfile.ZipFile(images_tmp, "w") as images,
        zipfile.ZipFile(notes_tmp, "w") as notes,
    ):
        for _ in range(n_images):
            jpeg, width, height, dogs = make_photo(rng)
            breed = dogs[0].breed
            counters[breed.wnid] = counters.get(breed.wnid, 0) + 1
            image_id = f"{breed.wnid}_{counters[breed.wnid]}"
            write_member(images, f"all-dogs/{image_id}.jpg", jpeg, zipfile.ZIP_STORED)
            xml = voc_xml(image_id, width, height, dogs)
            write_member(notes, f"Annotation/{breed.wnid}-{breed.name}/{image_id}", xml, zipfile.ZIP_DEFLATED)
            n_dogs += len(dogs)
    return {"images": n_images, "objects": n_dogs, "breeds": len(counters)}
