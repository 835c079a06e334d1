"""`doggan generate`: draw images from a trained generator to look at and play with.

PNGs into a folder or a zip, a sample grid, a breed of a conditional model, and a GIF walking through
the latent space; all drawn in batches by `doggan.output.sampling`, the way the submission draws them, and
all written atomically.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from doggan.errors import DogganError
from doggan.files import atomic_path
from doggan.output.critic import draw
from doggan.output.grids import make_grid, save_grid
from doggan.output.sampling import (
    META_FILE,
    Generator,
    load_generator,
    render,
    sample_labels,
    sample_noise,
)

BATCH = 500  # the submission's default generator batch
GRID = 64  # images tiled by --grid: the first of those drawn
WALK_PATHS = 9  # walks side by side in each frame of the GIF (a 3x3 grid)
FRAME_MS = 80


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The `generate` subcommand and its options."""
    cmd = sub.add_parser("generate", help="draw PNGs, a grid or a latent walk from a trained generator")
    cmd.add_argument("--model", default="models", help="folder of generator.keras and generator.json")
    cmd.add_argument("--n", type=int, default=GRID, help="images to draw (64)")
    cmd.add_argument("--out", help="where the PNGs go: a .zip, else a folder")
    cmd.add_argument("--grid", help=f"a PNG tiling the first {GRID} of the --n images")
    cmd.add_argument("--walk", help="a GIF interpolating between random latent points")
    cmd.add_argument("--walk-points", type=int, default=4, help="latent points the walk passes (4)")
    cmd.add_argument("--walk-steps", type=int, default=12, help="frames from one point to the next (12)")
    cmd.add_argument("--breed", help="the breed a conditional model draws (default: all, as trained)")
    cmd.add_argument("--truncation", type=float, default=0.0, help="redraw normal noise beyond ±this")
    cmd.add_argument(
        "--best-of", type=int, default=1, help="keep the best of K candidates per image by the trained D (1)"
    )
    cmd.add_argument("--seed", type=int, default=0)


def load(model_dir: str | Path, breed: str | None) -> Generator:
    """The generator of `model_dir`, drawing only `breed` when one is named."""
    try:
        gen = load_generator(model_dir)
    except FileNotFoundError as exc:
        raise DogganError(str(exc)) from None
    if breed is None:
        return gen
    k = class_index(gen, breed, Path(model_dir) / META_FILE)
    return replace(gen, class_probs=tuple(float(i == k) for i in range(gen.n_classes)))


def class_index(gen: Generator, breed: str, meta_path: Path) -> int:
    """The class of a breed name (case aside), with an error listing the valid names."""
    if not gen.n_classes:
        raise DogganError(f"{meta_path}: unconditional generator; --breed needs train.conditional: true")
    if not gen.breeds:
        raise DogganError(f"{meta_path}: records no breed names; retrain to draw a breed by name")
    names = [name.casefold() for name in gen.breeds]
    if breed.casefold() not in names:
        raise DogganError(f"{meta_path}: unknown breed {breed!r}; valid: {', '.join(gen.breeds)}")
    return names.index(breed.casefold())


def png_bytes(image: np.ndarray) -> bytes:
    """One uint8 image (H, W, C), gray or RGB, as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def numbered(batches: Iterable[np.ndarray]) -> Iterator[tuple[str, bytes]]:
    """(`0.png`, bytes), (`1.png`, bytes) … for the images of consecutive batches."""
    index = 0
    for batch in batches:
        for image in batch:
            yield f"{index}.png", png_bytes(image)
            index += 1


def write_zip(batches: Iterable[np.ndarray], path: Path) -> None:
    """The images as 0.png … stored in a zip, atomically."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for name, data in numbered(batches):
            zf.writestr(name, data)


def write_folder(batches: Iterable[np.ndarray], path: Path) -> None:
    """The images as 0.png … in a folder, filled beside it and then swapped in (replacing an old one)."""
    if path.exists() and not path.is_dir():
        raise DogganError(f"{path}: exists and is not a folder (name a .zip to write a zip)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        for name, data in numbered(batches):
            (tmp / name).write_bytes(data)
        old = path.parent / f"{tmp.name}.old"
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation between rows of `a` and `b` at fractions `t` (T,): (T, *a.shape)."""
    cos = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    angle = np.arccos(np.clip(cos, -1.0, 1.0))[None, :, None]
    t = t[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        wa, wb = np.sin((1 - t) * angle) / np.sin(angle), np.sin(t * angle) / np.sin(angle)
    straight = angle < 1e-6  # nearly parallel: the straight line is the arc
    wa, wb = np.where(straight, 1 - t, wa), np.where(straight, t, wb)
    return wa * a[None] + wb * b[None]


def walk_noise(
    rng: np.random.Generator, gen: Generator, points: int, steps: int, truncation: float
) -> np.ndarray:
    """Noise of a closed walk through `points` random latent points for each of WALK_PATHS paths:
    (points * steps, WALK_PATHS, z_dim), spherical between normal points, straight between uniform ones."""
    keys = [sample_noise(rng, WALK_PATHS, gen.z_dim, gen.noise, truncation) for _ in range(points)]
    t = np.arange(steps) / steps
    legs = []
    for a, b in zip(keys, keys[1:] + keys[:1], strict=True):
        if gen.noise == "uniform":
            legs.append((1 - t)[:, None, None] * a[None] + t[:, None, None] * b[None])
        else:
            legs.append(slerp(a, b, t))
    return np.concatenate(legs).astype(np.float32)


def write_walk(gen: Generator, path: Path, seed: int, truncation: float, points: int, steps: int) -> int:
    """A looping GIF of WALK_PATHS latent walks side by side; returns its number of frames.

    A conditional model keeps each path's class (the breed, or one drawn as trained) all the way.
    """
    rng = np.random.default_rng(seed)
    z = walk_noise(rng, gen, points, steps, truncation)
    frames, paths = z.shape[:2]
    labels = np.tile(sample_labels(rng, paths, gen.class_probs), frames) if gen.n_classes else None
    images = np.concatenate(list(render(gen, z.reshape(frames * paths, -1), labels, BATCH)))
    pictures = []
    for frame in images.reshape(frames, paths, *images.shape[1:]):
        grid = make_grid(frame, cols=int(np.sqrt(paths)))
        picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
        pictures.append(picture.resize((picture.width * 2, picture.height * 2), Image.NEAREST))
    with atomic_path(path, suffix=".gif") as tmp:
        pictures[0].save(tmp, save_all=True, append_images=pictures[1:], duration=FRAME_MS, loop=0)
    return frames


def kept(batches: Iterable[np.ndarray], into: list[np.ndarray], limit: int) -> Iterator[np.ndarray]:
    """Pass batches through, keeping copies of their first `limit` images in `into`."""
    for batch in batches:
        room = limit - sum(len(b) for b in into)
        if room > 0:
            into.append(batch[:room])
        yield batch


def drawn(gen: Generator, args: argparse.Namespace) -> Iterator[np.ndarray]:
    """The --n images in batches, each the best of --best-of by the discriminator beside the generator."""
    off = "--best-of 1"
    return draw(gen, args.model, args.n, args.best_of, args.seed, BATCH, args.truncation, off=off)


def first_images(batches: Iterable[np.ndarray]) -> list[np.ndarray]:
    """The first GRID images of `batches`, drawing only the batches that hold them."""
    first: list[np.ndarray] = []
    for _ in kept(batches, first, GRID):
        if sum(len(b) for b in first) >= GRID:
            break
    return first


def run(args: argparse.Namespace) -> int:
    """Run `doggan generate`: each output asked for, from one generator and one seed."""
    if not (args.out or args.grid or args.walk):
        raise DogganError("generate: nothing to write; give --out, --grid or --walk")
    for name in ("n", "walk_points", "walk_steps", "best_of"):
        if getattr(args, name) < 1:
            raise DogganError(f"generate: --{name.replace('_', '-')} must be at least 1")
    gen = load(args.model, args.breed)
    first: list[np.ndarray] = []
    if args.out:
        out = Path(args.out)
        batches = kept(drawn(gen, args), first, GRID)
        (write_zip if out.suffix.lower() == ".zip" else write_folder)(batches, out)
        print(f"{out}: {args.n} images")
    if args.grid:
        first = first or first_images(drawn(gen, args))
        save_grid(args.grid, np.concatenate(first), scale=2)
        print(f"{args.grid}: grid of {sum(len(b) for b in first)} images")
    if args.walk:
        frames = write_walk(
            gen, Path(args.walk), args.seed, args.truncation, args.walk_points, args.walk_steps
        )
        print(f"{args.walk}: {frames} frames")
    return 0
