"""The crop options taken from the 2019 winners: extreme boxes skipped, whole photos added."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from doggan import params
from doggan.crops.boxes import check_box
from doggan.crops.crop import crop_stage
from doggan.crops.file import load_crops
from doggan.data.annotations import Box
from doggan.params import CropParams, ParamsError

PARAMS = CropParams(size=32, workers=1, preview=4)
RED, GREEN, BLUE, WHITE = (220, 20, 20), (20, 200, 20), (20, 20, 220), (250, 250, 250)
ASPECT = "box aspect beyond crop.max_aspect"


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")  # lossless: crops can be checked pixel by pixel
    return buffer.getvalue()


def voc(boxes: list[tuple[str, int, int, int, int]]) -> bytes:
    objects = "".join(
        f"<object><name>{breed}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for breed, a, b, c, d in boxes
    )
    return f"<annotation>{objects}</annotation>".encode()


def write_raw(raw, photos: dict[str, bytes], notes: dict[str, bytes]) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(raw / "all-dogs.zip", "w") as zf:
        for image_id, data in photos.items():
            zf.writestr(f"all-dogs/{image_id}.jpg", data)
    with zipfile.ZipFile(raw / "Annotation.zip", "w") as zf:
        for image_id, xml in notes.items():
            zf.writestr(f"Annotation/n02088364-beagle/{image_id}", xml)


def run(tmp_path, **update):
    out = tmp_path / f"out-{'-'.join(f'{k}={v}' for k, v in sorted(update.items()))}"
    chosen = PARAMS.model_copy(update=update)
    report = crop_stage(tmp_path / "raw", chosen, out / "crops.npz", out / "report.json", out / "preview.png")
    return report, load_crops(out / "crops.npz")


def test_check_box_skips_boxes_beyond_the_aspect_limit_only_when_set():
    wide, tall = Box("d", 0, 0, 100, 20), Box("d", 0, 0, 20, 81)
    assert check_box(wide, 200, 200, 4) == (wide, None)
    assert check_box(wide, 200, 200, 4, 4.0) == (None, ASPECT)
    assert check_box(wide, 200, 200, 4, 5.0) == (wide, None)
    assert check_box(tall, 200, 200, 4, 4.0) == (None, ASPECT)
    assert check_box(Box("d", 0, 0, 20, 80), 200, 200, 4, 4.0)[1] is None, "h/w of exactly 4 is kept"


def test_max_aspect_skips_exactly_the_extreme_boxes_and_reports_them(tmp_path):
    """Each box is painted its own colour; the kept crops are the square and the 4:1 box, in order."""
    image = np.zeros((200, 200, 3), np.uint8)
    boxes = {  # colour: box; h/w of 1, 0.2, 4 and 9
        RED: (10, 10, 50, 50),
        GREEN: (10, 60, 110, 80),
        BLUE: (120, 10, 140, 90),
        WHITE: (150, 100, 160, 190),
    }
    for colour, (x0, y0, x1, y1) in boxes.items():
        image[y0:y1, x0:x1] = colour
    photos = {f"n02088364_{i}": png(image) for i in range(6)}
    write_raw(tmp_path / "raw", photos, {k: voc([("beagle", *b) for b in boxes.values()]) for k in photos})
    report, crops = run(tmp_path)
    assert report["crops"] == 4 * len(photos) and report["skipped_total"] == 0
    for workers in (1, 2):
        report, crops = run(tmp_path, max_aspect=4.0, workers=workers)
        assert report["skipped"] == {ASPECT: 2 * len(photos)} and report["crops"] == 2 * len(photos)
        assert report["objects"] == 4 * len(photos)
        notes = [f"Annotation/n02088364-beagle/n02088364_{i}" for i in (0, 0, 1)]
        assert report["examples"] == {ASPECT: notes}
        centres = [tuple(int(v) for v in crop[16, 16]) for crop in crops.images]
        assert centres == [RED, BLUE] * len(photos)


def banded(i: int) -> np.ndarray:
    """A 128×64 photo: green sides; a middle square, top half coloured by `i`, bottom half blue; a
    white top edge, which reflection keeps thin and edge padding would smear."""
    image = np.empty((64, 128, 3), np.uint8)
    image[...] = GREEN
    image[:32, 32:96] = (200, 20 * i, 20)
    image[32:, 32:96] = BLUE
    image[:4] = WHITE
    return image


def mean_blocks(image: np.ndarray, k: int) -> np.ndarray:
    h, w, c = image.shape
    return image.reshape(h // k, k, w // k, k, c).mean(axis=(1, 3))


EXPECTED = {  # the whole-photo crop of a banded photo at size 32, computed without OpenCV
    "pad": lambda image: mean_blocks(np.pad(image, ((32, 32), (0, 0), (0, 0)), mode="reflect"), 4),
    "center": lambda image: mean_blocks(image[:, 32:96], 2),
}
DOGS = [  # per photo: (breed, box); the largest box names the whole photo; 4 dogs overflow the arena
    [("beagle", 5, 40, 25, 60)],
    [("beagle", 5, 40, 25, 60), ("pug", 40, 10, 90, 60)],
    [
        ("pug", 100, 10, 120, 30),
        ("beagle", 5, 5, 30, 30),
        ("pug", 40, 40, 60, 60),
        ("beagle", 70, 40, 90, 60),
    ],
    [("pug", 10, 10, 12, 60)],  # too small for crop.min_box: the photo still gives its whole crop
]


@pytest.mark.parametrize("mode", ["pad", "center"])
def test_whole_photos_add_one_crop_per_photo_last_with_the_photo_pixels(tmp_path, mode):
    photos = {f"n02088364_{i}": png(banded(i)) for i in range(8)}
    dogs = {image_id: DOGS[i % len(DOGS)] for i, image_id in enumerate(photos)}
    write_raw(tmp_path / "raw", photos, {k: voc(v) for k, v in dogs.items()})
    _, boxes_only = run(tmp_path)
    results = [run(tmp_path, whole_photos=mode, workers=workers) for workers in (1, 2)]
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_array_equal(a, b)
    report, crops = results[0]
    assert report["whole_photos"] == len(photos) and report["crops"] == len(boxes_only.images) + len(photos)
    assert report["skipped"] == {"box smaller than crop.min_box": 2}
    breeds = crops.breeds[crops.labels]
    at, box_crops = 0, []
    for i, (image_id, photo_dogs) in enumerate(dogs.items()):
        n = sum(1 for _, x0, _, x1, _ in photo_dogs if x1 - x0 >= 4)
        assert list(crops.ids[at : at + n + 1]) == [image_id] * (n + 1)
        box_crops.extend(crops.images[at : at + n])
        whole = crops.images[at + n].astype(int)
        assert np.abs(whole - EXPECTED[mode](banded(i))).max() <= 1, image_id
        largest = max(photo_dogs, key=lambda d: (d[3] - d[1]) * (d[4] - d[2]))
        assert breeds[at + n] == largest[0]
        at += n + 1
    assert at == len(crops.images)
    np.testing.assert_array_equal(np.stack(box_crops), boxes_only.images)


def test_an_aspect_limit_below_one_is_refused_by_name():
    with pytest.raises(ParamsError, match="crop.max_aspect must be 0 .off. or at least 1"):
        params.parse({"crop": {"max_aspect": 0.5}})
    assert params.parse({"crop": {"max_aspect": 1}}).crop.max_aspect == 1.0
