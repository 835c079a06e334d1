import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from doggan.annotations import Box
from doggan.crop import check_box, crop_stage, load_crops, square_window
from doggan.errors import DogganError
from doggan.params import CropParams

PARAMS = CropParams(size=32, workers=1, preview=4)


def jpeg(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def voc(boxes, breed="beagle") -> bytes:
    objects = "".join(
        f"<object><name>{breed}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for a, b, c, d in boxes
    )
    return f"<annotation>{objects}</annotation>".encode()


def write_raw(raw, photos: dict, notes: dict, extra_members=()):
    """photos: {id: bytes}; notes: {id: xml bytes}; extra_members: (name, bytes) for all-dogs.zip."""
    raw.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(raw / "all-dogs.zip", "w") as zf:
        for image_id, data in photos.items():
            zf.writestr(f"all-dogs/{image_id}.jpg", data)
        for name, data in extra_members:
            zf.writestr(name, data)
    with zipfile.ZipFile(raw / "Annotation.zip", "w") as zf:
        for image_id, xml in notes.items():
            zf.writestr(f"Annotation/n02088364-beagle/{image_id}", xml)


def run(tmp_path, params=PARAMS):
    out = tmp_path / "out"
    report = crop_stage(tmp_path / "raw", params, out / "crops.npz", out / "report.json", out / "preview.png")
    return report, out


def test_square_window_grows_moves_inside_and_clips():
    assert square_window(Box("d", 40, 40, 60, 50), 200, 100, 0.1) == (39, 34, 61, 56)
    x0, y0, x1, y1 = square_window(Box("d", 0, 0, 30, 20), 200, 100, 0.5)
    assert (x0, y0) == (0, 0) and x1 - x0 == y1 - y0 == 45
    assert square_window(Box("d", 0, 0, 200, 90), 200, 100, 0.2) == (0, 0, 200, 100)


def test_check_box_clips_and_names_what_it_skips():
    assert check_box(Box("d", -5, -5, 50, 300), 100, 100, 4) == (Box("d", 0, 0, 50, 100), None)
    assert check_box(Box("d", 50, 10, 10, 60), 100, 100, 4)[1] == "inverted box"
    assert check_box(Box("d", 150, 10, 190, 60), 100, 100, 4)[1] == "empty box or box outside the image"
    assert check_box(Box("d", 10, 10, 12, 60), 100, 100, 4)[1] == "box smaller than crop.min_box"


def test_every_crop_holds_its_dog_and_little_else(tmp_path):
    rng = np.random.default_rng(0)
    photos, notes = {}, {}
    for i in range(6):
        w, h = int(rng.integers(300, 500)), int(rng.integers(250, 400))
        image = np.zeros((h, w, 3), np.uint8)
        image[...] = (0, 0, 255)
        boxes = []
        for _ in range(int(rng.integers(1, 3))):
            bw = int(rng.integers(60, 120))
            bh = int(bw * rng.uniform(0.9, 1.1))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            image[y : y + bh, x : x + bw] = (255, 0, 0)
            boxes.append((x, y, x + bw, y + bh))
        photos[f"n_{i}"] = jpeg(Image.fromarray(image), "PNG")
        notes[f"n_{i}"] = voc(boxes)
    write_raw(tmp_path / "raw", photos, notes)
    report, out = run(tmp_path)
    crops = load_crops(out / "crops.npz")
    assert report["crops"] == report["objects"] == len(crops.images)
    for crop in crops.images.astype(int):
        red = (crop[..., 0] > 200) & (crop[..., 2] < 60)
        assert red.mean() > 0.6, "the dog fills most of its crop"
        assert red[10:22, 10:22].mean() > 0.95, "the centre of the crop is the dog"


def test_modes_become_rgb_or_gray(tmp_path):
    base = Image.fromarray(np.full((80, 80, 3), (200, 30, 30), np.uint8))
    photos = {
        "gray": jpeg(base.convert("L")),
        "cmyk": jpeg(base.convert("CMYK")),
        "palette": jpeg(base.convert("P"), "PNG"),
        "png_in_jpeg": jpeg(base, "PNG"),
    }
    notes = {k: voc([(10, 10, 70, 70)]) for k in photos}
    write_raw(tmp_path / "raw", photos, notes)
    report, out = run(tmp_path)
    crops = load_crops(out / "crops.npz")
    assert report["crops"] == 4 and crops.images.shape == (4, 32, 32, 3)
    gray_report, out = run(tmp_path, PARAMS.model_copy(update={"channels": 1}))
    assert load_crops(out / "crops.npz").images.shape == (4, 32, 32, 1)


def test_hostile_and_broken_inputs_are_counted_not_fatal(tmp_path):
    good = jpeg(Image.fromarray(np.full((64, 64, 3), 128, np.uint8)))
    photos = {"ok": good, "truncated": good[: len(good) // 2], "garbage": b"not an image", "lonely": good}
    photos.update(doctype=good, broken=good)
    notes = {
        "ok": voc([(5, 5, 60, 60), (40, 10, 20, 30), (100, 100, 120, 120)]),
        "truncated": voc([(5, 5, 60, 60)]),
        "garbage": voc([(5, 5, 60, 60)]),
        "orphan": voc([(5, 5, 60, 60)]),
    }
    write_raw(tmp_path / "raw", photos, notes, [("../evil.jpg", good), ("/abs.jpg", good)])
    with zipfile.ZipFile(tmp_path / "raw/Annotation.zip", "a") as zf:
        zf.writestr("Annotation/x/doctype", b'<!DOCTYPE a [<!ENTITY e "x">]><annotation/>')
        zf.writestr("Annotation/x/broken", b"<annotation><object>")
    report, out = run(tmp_path)
    skipped = report["skipped_by_reason"]
    assert report["crops"] == 1
    assert skipped["inverted box"] == 1
    assert skipped["empty box or box outside the image"] == 1
    assert skipped["image failed to decode"] == 2
    assert skipped["image without annotation"] == 1
    assert skipped["annotation without image"] == 1
    assert skipped["XML with DOCTYPE or entities"] == 1
    assert skipped["malformed XML"] == 1
    assert skipped["unsafe archive member (path with '..')"] == 1
    assert skipped["unsafe archive member (absolute path)"] == 1
    assert not (tmp_path / "evil.jpg").exists()
    assert sorted(p.name for p in out.iterdir()) == ["crops.npz", "preview.png", "report.json"]


def test_folder_source_is_centre_cropped(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    image = np.zeros((60, 100, 3), np.uint8)
    image[:, 20:80] = 255
    with zipfile.ZipFile(raw / "images.zip", "w") as zf:
        zf.writestr("images/a.png", jpeg(Image.fromarray(image), "PNG"))
    report, out = run(tmp_path)
    crop = load_crops(out / "crops.npz").images[0]
    assert report["crops"] == 1 and crop.min() > 200


@pytest.mark.parametrize("content", [None, b"", b"not a zip"], ids=["missing", "empty", "not zip"])
def test_bad_archive_is_a_clear_error_naming_it(tmp_path, content):
    raw = tmp_path / "raw"
    raw.mkdir()
    if content is not None:
        (raw / "all-dogs.zip").write_bytes(content)
    with pytest.raises(DogganError, match="all-dogs.zip"):
        run(tmp_path)
