"""The offline stand-in orders images as a person does: held-out photos of the embedded sample score
best, then the same photos lightly blurred, then with a transposed convolution's checkerboard of dots
laid over them, then cut in 16-px tiles and shuffled, then colour blobs; by FID and by every measure
beside it."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

from doggan.data.photos import iter_photos
from doggan.data.sample import write_sample
from doggan.scoring import backbones, measures, mifid

ORDER = ("held_out", "blurred", "dotted", "tiles", "blobs")
TILE = 16
DOTS = (2, 6)  # grey levels either side, drawn per image: as faint and as strong as in a stride-2
# transposed convolution's 64-px samples (the checkerboard's amplitude over their 8-px windows)


def photos(raw):
    return np.concatenate(list(iter_photos(raw, 64, 64)))


def shuffle_tiles(images, rng):
    """Each image cut in TILE x TILE tiles, put back in a random order."""
    n = images.shape[1] // TILE
    out = []
    for image in images:
        tiles = image.reshape(n, TILE, n, TILE, 3).transpose(0, 2, 1, 3, 4).reshape(n * n, TILE, TILE, 3)
        mixed = tiles[rng.permutation(n * n)].reshape(n, n, TILE, TILE, 3).transpose(0, 2, 1, 3, 4)
        out.append(mixed.reshape(image.shape))
    return np.stack(out)


def dotted(images, rng):
    """A checkerboard of 2x2-px squares (period 4 px) laid over each image, at an amplitude and phase
    drawn per image: the dots that stride-2 transposed convolutions leave on a generator's samples."""
    y, x = np.mgrid[: images.shape[1], : images.shape[2]]
    out = []
    for image in images:
        dy, dx = rng.integers(0, 4, 2)
        sign = np.where(((y + dy) // 2 + (x + dx) // 2) % 2 == 0, 1, -1)[..., None]
        out.append(np.clip(image.astype(np.int16) + rng.integers(DOTS[0], DOTS[1] + 1) * sign, 0, 255))
    return np.stack(out).astype(np.uint8)


def blobs(n, seed=0):
    """Smooth random colour fields: 4x4 random colours, upsampled bicubically."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 4, 4, 3), np.uint8)
    return np.stack([np.asarray(Image.fromarray(s).resize((64, 64), Image.BICUBIC)) for s in small])


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """300 real photos (seed 0); 150 held-out photos (seed 1) and their degradations."""
    root = tmp_path_factory.mktemp("offline")
    write_sample(root / "real", 300, seed=0)
    write_sample(root / "held", 150, seed=1)
    held = photos(root / "held")
    blurred = [np.asarray(Image.fromarray(i).filter(ImageFilter.GaussianBlur(1))) for i in held]
    references = {
        "held_out": held,
        "blurred": np.stack(blurred),
        "dotted": dotted(held, np.random.default_rng(0)),
        "tiles": shuffle_tiles(held, np.random.default_rng(0)),
        "blobs": blobs(len(held)),
    }
    return photos(root / "real"), references


def scores(backbone, real, references):
    """FID and the measures of each reference set against the real photos."""
    real_features = backbones.features(backbone, [real])
    out = {}
    for name, images in references.items():
        fake = backbones.features(backbone, [images])
        fid = mifid.frechet_distance(*mifid.statistics(fake), *mifid.statistics(real_features))
        out[name] = {"fid": fid, **measures.measures(real_features, fake)}
    return out


def ordered(table, key, falling):
    column = [table[name][key] for name in ORDER]
    return column == sorted(column, reverse=falling)


def test_standin_orders_held_out_blurred_dotted_tiles_blobs_on_every_measure(sample):
    real, references = sample
    table = scores(backbones.standin(), real, references)
    for key in ("fid", "kid"):
        assert ordered(table, key, falling=False), (key, table)
    for key in ("precision", "density", "recall", "coverage"):
        assert ordered(table, key, falling=True), (key, table)
    assert table["blurred"]["precision"] < 0.8 * table["held_out"]["precision"], table


def test_dots_are_a_checkerboard_of_2px_squares():
    flat = np.full((20, 8, 8, 3), 100, np.uint8)
    dots = dotted(flat, np.random.default_rng(2)).astype(int) - 100
    assert (dots[..., 0] == dots[..., 2]).all() and (dots.sum((1, 2)) == 0).all()
    for grey in dots[..., 0]:
        amplitude = grey.max()
        assert DOTS[0] <= amplitude <= DOTS[1] and (np.abs(grey) == amplitude).all()
        assert (grey[:, 2:] == -grey[:, :-2]).all() and (grey[2:] == -grey[:-2]).all()


def test_tiles_are_shuffled_whole():
    images = np.arange(2 * 32 * 32 * 3, dtype=np.uint8).reshape(2, 32, 32, 3)
    shuffled = shuffle_tiles(images, np.random.default_rng(1))
    corners = [(y, x) for y in (0, TILE) for x in (0, TILE)]
    for image, mixed in zip(images, shuffled, strict=True):
        tiles = {image[y : y + TILE, x : x + TILE].tobytes() for y, x in corners}
        assert {mixed[y : y + TILE, x : x + TILE].tobytes() for y, x in corners} == tiles
