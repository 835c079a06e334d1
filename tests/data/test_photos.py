import io
import logging
import zipfile

import numpy as np
import pytest
from PIL import Image

from doggan.data.photos import count_photos, iter_photos
from doggan.errors import DogganError


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def write_photos(path, photos: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in photos.items():
            zf.writestr(name, data)


def test_whole_photos_are_squashed_with_lanczos_not_cropped(tmp_path):
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, :150] = (255, 0, 0)
    image[:, 150:] = (0, 0, 255)
    photo = Image.fromarray(image)
    write_photos(tmp_path / "all-dogs.zip", {"all-dogs/a.jpg": encode(photo)})
    (batch,) = list(iter_photos(tmp_path, size=64))
    assert batch.shape == (1, 64, 64, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[0], np.asarray(photo.resize((64, 64), Image.LANCZOS)))
    assert batch[0, 32, 5, 0] == 255 and batch[0, 32, 58, 2] == 255, "both halves kept: a squash"


def test_batches_follow_sorted_member_order_and_every_mode_becomes_rgb(tmp_path):
    base = Image.new("RGB", (40, 30), (200, 100, 50))
    photos = {
        "all-dogs/c.jpg": encode(base.convert("CMYK"), "JPEG"),
        "all-dogs/a.jpg": encode(base),  # PNG inside a .jpg
        "all-dogs/b.jpg": encode(base.convert("L"), "JPEG"),
        "all-dogs/e.jpg": encode(base.convert("P")),
        "all-dogs/d.jpg": encode(base, "JPEG"),
    }
    write_photos(tmp_path / "all-dogs.zip", photos)
    batches = list(iter_photos(tmp_path, size=16, batch_size=2))
    assert [b.shape for b in batches] == [(2, 16, 16, 3), (2, 16, 16, 3), (1, 16, 16, 3)]
    photos_in_order = np.concatenate(batches)
    gray = photos_in_order[1, 8, 8]
    assert gray[0] == gray[1] == gray[2], "b (grayscale) is second"
    for i in (0, 2, 3, 4):
        assert np.abs(photos_in_order[i, 8, 8].astype(int) - (200, 100, 50)).max() <= 12
    again = np.concatenate(list(iter_photos(tmp_path, size=16, batch_size=3)))
    np.testing.assert_array_equal(photos_in_order, again)


def test_undecodable_photos_are_left_out_and_counted(tmp_path, caplog):
    good = encode(Image.new("RGB", (20, 20), "white"))
    write_photos(
        tmp_path / "all-dogs.zip",
        {
            "all-dogs/a.jpg": good,
            "all-dogs/b.jpg": b"not an image",
            "all-dogs/notes.txt": b"x",
            "../c.jpg": good,
        },
    )
    assert count_photos(tmp_path) == 2
    with caplog.at_level(logging.WARNING, logger="doggan"):
        batches = list(iter_photos(tmp_path))
    assert sum(len(b) for b in batches) == 1 and "1 photos failed to decode" in caplog.text


def test_the_folder_source_archive_is_used_when_present(tmp_path):
    write_photos(tmp_path / "all-dogs.zip", {"all-dogs/a.jpg": encode(Image.new("RGB", (8, 8), "white"))})
    write_photos(
        tmp_path / "images.zip", {f"images/{i}.png": encode(Image.new("L", (28, 28), i)) for i in range(3)}
    )
    assert count_photos(tmp_path) == 3
    assert np.concatenate(list(iter_photos(tmp_path, size=28)))[:, 0, 0, 0].tolist() == [0, 1, 2]


@pytest.mark.parametrize("content", [None, b""], ids=["missing", "empty"])
def test_missing_or_empty_archive_is_a_clear_error(tmp_path, content):
    if content is not None:
        (tmp_path / "all-dogs.zip").write_bytes(content)
    with pytest.raises(DogganError, match="all-dogs.zip"):
        count_photos(tmp_path)
    with pytest.raises(DogganError, match="all-dogs.zip"):
        next(iter_photos(tmp_path))
