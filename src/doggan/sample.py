"""The embedded sample: a small synthetic Stanford-Dogs-style dataset, made on the spot.

Each photo holds 1-3 cartoon dogs (body, head, ears, legs, tail, eyes and nose; five breeds with
their own colours and shapes) on varied backgrounds (sky and ground, wall and floor, foliage)
with noise texture, and a Pascal VOC annotation with one box per dog. It is written exactly as
Kaggle ships the competition data, so every later stage runs on it unchanged, offline, and a GAN
learns its structure in minutes.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from doggan.archives import write_member
from doggan.files import atomic_path


class Breed(NamedTuple):
    wnid: str
    name: str
    body: tuple[int, int, int]
    patch: tuple[int, int, int]
    ear: str  # "up" (pointed) or "down" (floppy)
    build: float  # body height relative to its length


BREEDS = (
    Breed("n02085620", "Chihuahua", (222, 184, 135), (245, 222, 179), "up", 0.55),
    Breed("n02088364", "beagle", (250, 250, 245), (139, 69, 19), "down", 0.5),
    Breed("n02099601", "golden_retriever", (218, 165, 32), (238, 200, 90), "down", 0.45),
    Breed("n02110185", "Siberian_husky", (120, 120, 130), (245, 245, 245), "up", 0.45),
    Breed("n02106662", "German_shepherd", (40, 30, 25), (190, 130, 60), "up", 0.5),
)


class Dog(NamedTuple):
    breed: Breed
    box: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax (inclusive)


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int = 18) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _gradient(rng: np.random.Generator, rows: int, low: int, high: int) -> np.ndarray:
    top, bottom = rng.integers(low, high, 3), rng.integers(low, high, 3)
    t = np.linspace(0, 1, rows)[:, None]
    return top * (1 - t) + bottom * t


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """One of three scenes: sky over ground, a wall over a floor, or foliage; with noise texture."""
    kind = int(rng.integers(3))
    if kind == 2:  # foliage: a coarse random field blown up, greens and browns
        coarse = rng.uniform(0.4, 1.0, (max(2, height // 40), max(2, width // 40), 1)) * _jitter(
            rng, (90, 120, 60), 50
        )
        field = Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BICUBIC)
        image = np.asarray(field, np.float64)
    else:
        horizon = int(height * rng.uniform(0.3, 0.65))
        low, high = (120, 255) if kind == 0 else (90, 230)
        column = np.concatenate(
            [_gradient(rng, horizon, low, high), _gradient(rng, height - horizon, 20, 160)]
        )
        image = np.broadcast_to(column[:, None, :], (height, width, 3))
    noise = rng.normal(0, rng.uniform(2, 14), (height, width, 3))
    return Image.fromarray(np.clip(image + noise, 0, 255).astype(np.uint8))


def _draw_dog(draw: ImageDraw.ImageDraw, rng: np.random.Generator, dog: Dog) -> None:
    """Draw a dog filling its box: facing left or right, legs down, head raised."""
    x0, y0, x1, y1 = dog.box
    w, h = x1 - x0, y1 - y0
    b = dog.breed
    body, patch = _jitter(rng, b.body), _jitter(rng, b.patch)
    right = bool(rng.integers(2))

    def fx(u: float) -> float:  # horizontal position in box units, mirrored when facing left
        return x0 + (u if right else 1 - u) * w

    def rect(u0: float, v0: float, u1: float, v1: float) -> list[float]:
        xa, xb = sorted((fx(u0), fx(u1)))
        return [xa, y0 + v0 * h, xb, y0 + v1 * h]

    body_top = 0.38
    body_bottom = min(0.8, body_top + b.build * 0.8)
    for u in (0.12, 0.25, 0.55, 0.66):  # legs
        draw.rectangle(rect(u, body_bottom - 0.1, u + 0.08, 1.0), fill=body)
    tail = [fx(0.08), y0 + (body_top + 0.08) * h, fx(0.0), y0 + 0.12 * h]
    draw.line(tail, fill=body, width=max(2, w // 18))
    draw.ellipse(rect(0.02, body_top, 0.78, body_bottom), fill=body)
    draw.ellipse(rect(0.25, body_top + 0.05, 0.55, body_bottom - 0.02), fill=patch)
    draw.ellipse(rect(0.6, 0.08, 0.98, 0.5), fill=body)  # head
    draw.ellipse(rect(0.82, 0.28, 1.0, 0.46), fill=patch)  # muzzle
    if b.ear == "up":
        for u in (0.62, 0.8):
            draw.polygon(
                [(fx(u), y0 + 0.16 * h), (fx(u + 0.07), y0), (fx(u + 0.14), y0 + 0.14 * h)], fill=body
            )
    else:
        draw.ellipse(rect(0.6, 0.1, 0.72, 0.42), fill=patch)
    r = max(1.5, w * 0.025)
    ex, ey = fx(0.83), y0 + 0.22 * h
    draw.ellipse([ex - r, ey - r, ex + r, ey + r], fill=(10, 10, 10))
    nx, ny = fx(0.985), y0 + 0.32 * h
    draw.ellipse([nx - 1.3 * r, ny - r, nx + 1.3 * r, ny + r], fill=(20, 15, 15))


def _place_dogs(rng: np.random.Generator, width: int, height: int) -> list[Dog]:
    """1-3 dogs of one breed (as in Stanford Dogs, where a photo's folder names its breed)."""
    breed = BREEDS[int(rng.integers(len(BREEDS)))]
    dogs = []
    for _ in range(int(rng.choice([1, 1, 2, 3]))):
        side = int(min(width, height) * rng.uniform(0.35, 0.8))
        w = int(side * rng.uniform(0.9, 1.2))
        w, h = min(w, width - 2), min(side, height - 2)
        x0 = int(rng.integers(0, width - w))
        y0 = int(rng.integers(0, height - h))
        dogs.append(Dog(breed, (x0, y0, x0 + w, y0 + h)))
    return dogs


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
    """One JPEG photo (quality 90) with its dogs."""
    width, height = int(rng.integers(200, 501)), int(rng.integers(160, 401))
    image = _background(rng, width, height)
    dogs = _place_dogs(rng, width, height)
    draw = ImageDraw.Draw(image)
    for dog in dogs:
        _draw_dog(draw, rng, dog)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
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
