import io
import zipfile

from PIL import Image

from doggan.data.annotations import parse
from doggan.data.photos import iter_photos
from doggan.data.sample import BREEDS, write_sample


def test_sample_is_deterministic_and_in_kaggle_layout(tmp_path):
    first = write_sample(tmp_path / "a", 12, seed=3)
    write_sample(tmp_path / "b", 12, seed=3)
    for name in ("all-dogs.zip", "Annotation.zip"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first["images"] == 12
    with zipfile.ZipFile(tmp_path / "a/all-dogs.zip") as images:
        photos = images.namelist()
    with zipfile.ZipFile(tmp_path / "a/Annotation.zip") as notes:
        annotations = notes.namelist()
        boxes = [parse(notes.read(n)) for n in annotations]
    assert all(p.startswith("all-dogs/") and p.endswith(".jpg") for p in photos)
    breed_dirs = {f"{b.wnid}-{b.name}" for b in BREEDS}
    for name, objects in zip(annotations, boxes, strict=True):
        top, folder, image_id = name.split("/")
        assert top == "Annotation" and folder in breed_dirs and f"all-dogs/{image_id}.jpg" in photos
        assert image_id.startswith(folder.split("-")[0] + "_")
        assert {box.breed for box in objects} == {folder.split("-", 1)[1]}, (
            "one breed per photo, its folder's"
        )
    assert sum(len(b) for b in boxes) == first["objects"]
    assert all(1 <= len(b) <= 3 for b in boxes)


def test_other_seed_gives_other_photos(tmp_path):
    write_sample(tmp_path / "a", 4, seed=0)
    write_sample(tmp_path / "b", 4, seed=1)
    assert (tmp_path / "a/all-dogs.zip").read_bytes() != (tmp_path / "b/all-dogs.zip").read_bytes()


def test_photos_vary_in_size_and_boxes_lie_inside_them(tmp_path):
    write_sample(tmp_path, 30, seed=5)
    sizes = set()
    with (
        zipfile.ZipFile(tmp_path / "all-dogs.zip") as images,
        zipfile.ZipFile(tmp_path / "Annotation.zip") as notes,
    ):
        for name in notes.namelist():
            image_id = name.rsplit("/", 1)[1]
            width, height = Image.open(io.BytesIO(images.read(f"all-dogs/{image_id}.jpg"))).size
            sizes.add((width, height))
            assert 200 <= width <= 500
            for box in parse(notes.read(name)):
                assert 0 <= box.xmin < box.xmax <= width and 0 <= box.ymin < box.ymax <= height
    assert len(sizes) > 20


def test_dogs_come_in_poses_and_photos_in_different_light(tmp_path):
    """Sitting dogs fill tall boxes, lying and running ones wide boxes; photos range from dim to bright."""
    write_sample(tmp_path, 60, seed=5)
    with zipfile.ZipFile(tmp_path / "Annotation.zip") as notes:
        boxes = [box for name in notes.namelist() for box in parse(notes.read(name))]
    aspects = [(b.xmax - b.xmin) / (b.ymax - b.ymin) for b in boxes]
    assert min(aspects) < 0.85 and max(aspects) > 1.7
    brightness = [image.mean() for batch in iter_photos(tmp_path, 64, 64) for image in batch]
    assert min(brightness) < 70 and max(brightness) > 180
