import io
import json
import stat
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from doggan.crops.boxes import check_box, square_window
from doggan.crops.crop import crop_stage
from doggan.crops.decode import decode, is_truncated, jpeg_size, reduction, resize
from doggan.crops.file import load_crops
from doggan.crops.photo_crops import crop_image
from doggan.data.annotations import Box
from doggan.errors import DogganError
from doggan.params import CropParams

PARAMS = CropParams(size=32, workers=1, preview=4)
RED, BLUE = (220, 20, 20), (20, 20, 220)


def encode(image: Image.Image | np.ndarray, fmt: str = "JPEG", **options) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def voc(boxes, breed="beagle") -> bytes:
    objects = "".join(
        f"<object><name>{breed}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for a, b, c, d in boxes
    )
    return f"<annotation>{objects}</annotation>".encode()


GOOD = encode(np.full((64, 64, 3), 128, np.uint8))
GOOD_NOTE = voc([(4, 4, 60, 60)])
NOISY = encode(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8), quality=90)


def claiming(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header claims another size (a decompression bomb when large)."""
    sof = min(i for i in (data.find(b"\xff\xc0"), data.find(b"\xff\xc2")) if i > 0)
    return data[: sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[sof + 9 :]


def write_raw(raw, photos: dict, notes: dict, photo_members=(), note_members=()):
    """photos/notes: {image_id: bytes}; *_members: extra (ZipInfo or name, bytes) written as given."""
    raw.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(raw / "all-dogs.zip", "w") as zf:
        for image_id, data in photos.items():
            zf.writestr(f"all-dogs/{image_id}.jpg", data)
        for member, data in photo_members:
            zf.writestr(member, data)
    with zipfile.ZipFile(raw / "Annotation.zip", "w") as zf:
        for image_id, xml in notes.items():
            zf.writestr(f"Annotation/n02088364-beagle/{image_id}", xml)
        for member, data in note_members:
            zf.writestr(member, data)


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
    assert check_box(Box("d", 10, 10, 10, 60), 100, 100, 4)[1] == "empty box"
    assert check_box(Box("d", 150, 10, 190, 60), 100, 100, 4)[1] == "box outside the image"
    assert check_box(Box("d", 10, 10, 12, 60), 100, 100, 4)[1] == "box smaller than crop.min_box"


def test_truncation_is_told_apart_from_data_after_the_end():
    photo = encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), quality=90)
    png = encode(np.zeros((64, 64, 3), np.uint8), "PNG")
    assert not is_truncated(photo) and not is_truncated(photo + b"trailing metadata\xff\xd8")
    assert is_truncated(photo[: len(photo) * 2 // 3])
    assert not is_truncated(png) and is_truncated(png[:-20])


@pytest.mark.parametrize(
    "options",
    [{}, {"progressive": True}, {"exif": b"Exif\x00\x00" + bytes(300)}, {"mode": "L"}, {"mode": "CMYK"}],
    ids=["baseline", "progressive", "exif", "gray", "cmyk"],
)
def test_jpeg_size_reads_the_frame_header_like_pillow(options):
    mode = options.pop("mode", "RGB")
    data = encode(Image.new(mode, (123, 45)), **options)
    assert jpeg_size(data) == Image.open(io.BytesIO(data)).size == (123, 45)
    assert jpeg_size(b"\xff\xd8\x00garbage") is None and jpeg_size(claiming(data, 0, 45)) is None


def test_resize_uses_the_down_filter_to_shrink_and_the_up_filter_to_enlarge():
    rng = np.random.default_rng(1)
    small, large = rng.integers(0, 256, (16, 16, 3), np.uint8), rng.integers(0, 256, (64, 64, 3), np.uint8)
    params = CropParams(size=32, interpolation_down="area", interpolation_up="nearest")
    up = resize(small, 32, params)
    assert set(map(tuple, up.reshape(-1, 3))) <= set(map(tuple, small.reshape(-1, 3))), "nearest copies"
    np.testing.assert_array_equal(
        resize(large, 32, params), cv2.resize(large, (32, 32), interpolation=cv2.INTER_AREA)
    )
    cubic = resize(small, 32, params.model_copy(update={"interpolation_up": "cubic"}))
    assert not set(map(tuple, cubic.reshape(-1, 3))) <= set(map(tuple, small.reshape(-1, 3)))


@pytest.mark.parametrize(("window", "factor"), [(31, 1), (63, 1), (64, 2), (127, 2), (128, 4), (4096, 8)])
def test_reduction_keeps_at_least_the_crop_size(window, factor):
    assert reduction(window, 32) == factor


def test_reduced_decoding_matches_a_full_decode():
    rng = np.random.default_rng(2)
    coarse = rng.integers(0, 256, (12, 16, 3), np.uint8)
    photo = np.asarray(Image.fromarray(coarse).resize((480, 360), Image.BICUBIC))
    data = encode(photo, quality=95)
    full = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert decode(data, 3, 4).shape == (90, 120, 3)
    for x0, y0, side in [(96, 40, 120), (101, 43, 121), (96, 40, 296)]:  # on the block grid, off it; 1/2, 1/8
        box = Box("d", x0, y0, x0 + side, y0 + side)
        (crop, _), *_ = crop_image(data, [box], CropParams(size=32, margin=0.0))[0]
        errors = [  # against crops of the full photo, from windows up to half a block away
            np.abs(
                crop.astype(int)
                - cv2.resize(full[y : y + side, x : x + side], (32, 32), interpolation=cv2.INTER_AREA)
            ).mean()
            for x in range(x0 - 4, x0 + 5)
            for y in range(y0 - 4, y0 + 5)
        ]
        assert min(errors) < 3.5, (x0, y0, side)


def photos_with_red_dogs(n, seed=0):
    """JPEG photos, blue background, 1-3 red 'dogs' each, and their annotations."""
    rng = np.random.default_rng(seed)
    photos, notes = {}, {}
    for i in range(n):
        w, h = int(rng.integers(300, 500)), int(rng.integers(250, 400))
        image = np.empty((h, w, 3), np.uint8)
        image[...] = BLUE
        boxes = []
        for _ in range(int(rng.integers(1, 4))):
            bw = int(rng.integers(40, 200))
            bh = int(bw * rng.uniform(0.8, 1.2))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            boxes.append((x, y, x + bw, y + bh))
        for x0, y0, x1, y1 in boxes:  # drawn after the boxes are chosen: overlaps stay red
            image[y0:y1, x0:x1] = RED
        photos[f"n02088364_{i}"] = encode(image, quality=95)
        notes[f"n02088364_{i}"] = voc(boxes)
    return photos, notes


def test_every_crop_holds_its_dog_and_little_else(tmp_path):
    photos, notes = photos_with_red_dogs(10)
    write_raw(tmp_path / "raw", photos, notes)
    report, out = run(tmp_path, PARAMS.model_copy(update={"workers": 2}))
    crops = load_crops(out / "crops.npz")
    assert report["crops"] == report["objects"] == len(crops.images) > 10, "photos with several dogs"
    for crop in crops.images.astype(int):
        red = (crop[..., 0] > 160) & (crop[..., 2] < 90)
        assert red.mean() > 0.6, "the dog fills most of its crop"
        assert red[10:22, 10:22].mean() > 0.95, "the centre of the crop is the dog"
    assert list(crops.breeds) == ["beagle"] and set(crops.labels) == {0}
    assert sorted(set(crops.ids)) == sorted(photos)


def test_one_worker_and_a_pool_give_the_same_file(tmp_path):
    photos, notes = photos_with_red_dogs(12, seed=3)
    write_raw(tmp_path / "raw", photos, notes)
    _, out = run(tmp_path, PARAMS)
    alone = load_crops(out / "crops.npz")
    _, out = run(tmp_path, PARAMS.model_copy(update={"workers": 2}))
    pooled = load_crops(out / "crops.npz")
    for a, b in zip(alone, pooled, strict=True):
        np.testing.assert_array_equal(a, b)


def test_crops_beyond_the_shared_room_keep_annotation_order(tmp_path):
    """Photos of 1-6 dogs, in chunks of several photos, overflow the shared arena's 2 slots per photo
    in places; order and pixels still hold."""
    rng = np.random.default_rng(5)
    photos, notes, boxes = {}, {}, {}
    for i in range(40):
        image = rng.integers(0, 256, (120, 300, 3), np.uint8)
        boxes[f"n02088364_{i}"] = [
            (x, 20, x + 40, 90) for x in range(5, 5 + 48 * int(rng.integers(1, 7)), 48)
        ]
        photos[f"n02088364_{i}"] = encode(image, quality=90)
        notes[f"n02088364_{i}"] = voc(boxes[f"n02088364_{i}"])
    write_raw(tmp_path / "raw", photos, notes)
    expected = [
        crop
        for image_id in sorted(photos)
        for crop, _ in crop_image(photos[image_id], [Box("beagle", *b) for b in boxes[image_id]], PARAMS)[0]
    ]
    assert len(expected) > 2 * len(photos)
    for workers in (1, 2):
        report, out = run(tmp_path, PARAMS.model_copy(update={"workers": workers}))
        crops = load_crops(out / "crops.npz")
        assert report["crops"] == len(expected)
        np.testing.assert_array_equal(crops.images, np.stack(expected))
        assert list(crops.ids) == [i for i in sorted(photos) for _ in boxes[i]]


def test_modes_become_rgb_or_gray(tmp_path):
    base = Image.fromarray(np.full((80, 80, 3), RED, np.uint8))
    photos = {
        "gray": encode(base.convert("L")),
        "cmyk": encode(base.convert("CMYK")),
        "palette": encode(base.convert("P"), "PNG"),
        "rgba": encode(base.convert("RGBA"), "PNG"),
        "png_in_jpeg": encode(base, "PNG"),
        "gif": encode(base.convert("P"), "GIF"),
    }
    write_raw(tmp_path / "raw", photos, {k: voc([(10, 10, 70, 70)]) for k in photos})
    report, out = run(tmp_path)
    crops = load_crops(out / "crops.npz")
    assert report["crops"] == len(photos) and crops.images.shape == (len(photos), 32, 32, 3)
    colour = dict(zip(crops.ids, crops.images[:, 16, 16].astype(int), strict=True))
    luma = round(0.299 * RED[0] + 0.587 * RED[1] + 0.114 * RED[2])
    assert np.abs(colour.pop("gray") - luma).max() <= 3
    for image_id, pixel in colour.items():
        assert np.abs(pixel - RED).max() <= 10, image_id  # palettes quantise a little
    _, out = run(tmp_path, PARAMS.model_copy(update={"channels": 1}))
    gray = load_crops(out / "crops.npz").images
    assert gray.shape == (len(photos), 32, 32, 1) and np.abs(gray[:, 16, 16, 0].astype(int) - luma).max() <= 8


def test_report_holds_numbers_at_the_top_level(tmp_path):
    write_raw(
        tmp_path / "raw", {"a": GOOD, "b": GOOD}, {"a": voc([(4, 4, 60, 60), (9, 9, 5, 30)]), "b": GOOD_NOTE}
    )
    report, out = run(tmp_path)
    assert json.loads((out / "report.json").read_text()) == report
    assert {k: report[k] for k in ("images", "annotations", "objects", "crops", "skipped_total")} == {
        "images": 2,
        "annotations": 2,
        "objects": 3,
        "crops": 2,
        "skipped_total": 1,
    }
    assert report["skipped"] == {"inverted box": 1} and report["examples"] == {
        "inverted box": ["Annotation/n02088364-beagle/a"]
    }
    assert Image.open(out / "preview.png").size[0] > 32


def link(name: str, target: str) -> tuple[zipfile.ZipInfo, str]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><object><name>&lol3;</name><bndbox><xmin>4</xmin><ymin>4</ymin><xmax>60</xmax><ymax>60</ymax>
</bndbox></object></annotation>"""


def xxe(target: str) -> bytes:
    return (
        f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "{target}">]><annotation><object>'
        "<name>&x;</name><bndbox><xmin>4</xmin><ymin>4</ymin><xmax>60</xmax><ymax>60</ymax></bndbox>"
        "</object></annotation>"
    ).encode()


HOSTILE = {  # case: (photos, notes, photo_members, note_members, reason counted once)
    "absolute path": ({}, {}, [("/etc/evil.jpg", GOOD)], [], "unsafe archive member (absolute path)"),
    "dot-dot": ({}, {}, [("all-dogs/../../evil.jpg", GOOD)], [], "unsafe archive member (path with '..')"),
    "symlink": (
        {},
        {},
        [],
        [link("Annotation/x/evil", "/etc/passwd")],
        "unsafe archive member (symbolic link)",
    ),
    "internal entity": (
        {"bad": GOOD},
        {
            "bad": b'<!DOCTYPE a [<!ENTITY e "dog">]><annotation><object><name>&e;</name></object>'
            b"</annotation>"
        },
        [],
        [],
        "XML with DOCTYPE or entities",
    ),
    "billion laughs": ({"bad": GOOD}, {"bad": BILLION_LAUGHS}, [], [], "XML with DOCTYPE or entities"),
    "xxe local file": (
        {"bad": GOOD},
        {"bad": xxe("file:///etc/passwd")},
        [],
        [],
        "XML with DOCTYPE or entities",
    ),
    "xxe url": ({"bad": GOOD}, {"bad": xxe("http://127.0.0.1:9/x")}, [], [], "XML with DOCTYPE or entities"),
    "malformed xml": ({"bad": GOOD}, {"bad": b"<annotation><object>"}, [], [], "malformed XML"),
    "empty xml": ({"bad": GOOD}, {"bad": b""}, [], [], "empty XML"),
    "no objects": ({"bad": GOOD}, {"bad": b"<annotation/>"}, [], [], "annotation without objects"),
    "box outside": ({"bad": GOOD}, {"bad": voc([(100, 100, 120, 120)])}, [], [], "box outside the image"),
    "inverted box": ({"bad": GOOD}, {"bad": voc([(50, 10, 20, 40)])}, [], [], "inverted box"),
    "zero-area box": ({"bad": GOOD}, {"bad": voc([(20, 10, 20, 40)])}, [], [], "empty box"),
    "undecodable": (
        {"bad": b"\xff\xd8 not really a jpeg"},
        {"bad": GOOD_NOTE},
        [],
        [],
        "image failed to decode",
    ),
    "decompression bomb": (
        {"bad": claiming(GOOD, 60000, 60000)},
        {"bad": GOOD_NOTE},
        [],
        [],
        "image too large",
    ),
    "truncated": ({"bad": NOISY[: len(NOISY) * 2 // 3]}, {"bad": GOOD_NOTE}, [], [], "truncated image"),
    "annotation alone": ({}, {"bad": GOOD_NOTE}, [], [], "annotation without image"),
    "image alone": ({"bad": GOOD}, {}, [], [], "image without annotation"),
    "not an image": ({}, {}, [("all-dogs/readme.txt", b"hello")], [], "not an image file"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_or_broken_input_is_counted_and_the_rest_is_cropped(tmp_path, case):
    photos, notes, photo_members, note_members, reason = HOSTILE[case]
    write_raw(
        tmp_path / "raw", {"ok": GOOD, **photos}, {"ok": GOOD_NOTE, **notes}, photo_members, note_members
    )
    before = sorted(p.name for p in tmp_path.iterdir())
    report, out = run(tmp_path)
    assert report["skipped"] == {reason: 1}
    assert report["crops"] == 1 and list(load_crops(out / "crops.npz").breeds) == ["beagle"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "out"])
    assert sorted(p.name for p in out.iterdir()) == ["crops.npz", "preview.png", "report.json"]


def test_a_box_partly_outside_is_clipped_and_kept(tmp_path):
    write_raw(tmp_path / "raw", {"a": GOOD}, {"a": voc([(-30, 20, 40, 200)])})
    report, _ = run(tmp_path)
    assert report["crops"] == 1 and report["skipped_total"] == 0


@pytest.mark.parametrize("damage", ["data", "encrypted"])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_corrupted_or_encrypted_member_is_counted(tmp_path, damage, workers):
    write_raw(tmp_path / "raw", {"ok": GOOD, "bad": GOOD}, {"ok": GOOD_NOTE, "bad": GOOD_NOTE})
    archive = tmp_path / "raw/all-dogs.zip"
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("all-dogs/bad.jpg")
    if damage == "data":
        data[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF  # a byte of its data: CRC mismatch
    else:  # the encryption flag in its local header and its directory entry: no password to read it
        data[info.header_offset + 6] |= 1
        entry = (
            data.find(b"all-dogs/bad.jpg", data.find(b"PK\x01\x02")) - 46
        )  # its name ends the entry's header
        data[entry + 8] |= 1
    archive.write_bytes(bytes(data))
    report, _ = run(tmp_path, PARAMS.model_copy(update={"workers": workers}))
    assert report["skipped"] == {"unreadable archive member": 1} and report["crops"] == 1


def test_nothing_usable_is_an_error_and_writes_nothing(tmp_path):
    write_raw(tmp_path / "raw", {"a": GOOD}, {"a": voc([(50, 10, 20, 40)])})
    with pytest.raises(DogganError, match="no usable crops"):
        run(tmp_path)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_folder_source_is_centre_cropped(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    image = np.zeros((60, 100, 3), np.uint8)
    image[:, 20:80] = 255
    with zipfile.ZipFile(raw / "images.zip", "w") as zf:
        zf.writestr("images/a.png", encode(image, "PNG"))
        zf.writestr("images/sub__a.jpg", encode(image))
    report, out = run(tmp_path)
    crops = load_crops(out / "crops.npz")
    assert report["crops"] == 2 and crops.images[:, 2:-2, 2:-2].min() > 200
    assert sorted(crops.ids) == ["a.png", "sub__a.jpg"]


@pytest.mark.parametrize("content", [None, b"", b"not a zip"], ids=["missing", "empty", "not zip"])
@pytest.mark.parametrize("name", ["all-dogs.zip", "Annotation.zip"])
def test_bad_archive_is_a_clear_error_naming_it(tmp_path, content, name):
    write_raw(tmp_path / "raw", {"a": GOOD}, {"a": GOOD_NOTE})
    (tmp_path / "raw" / name).unlink()
    if content is not None:
        (tmp_path / "raw" / name).write_bytes(content)
    with pytest.raises(DogganError, match=name):
        run(tmp_path)
