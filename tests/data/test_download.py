import hashlib
import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from doggan.data.download import fetch
from doggan.data.sample import write_sample
from doggan.errors import DogganError
from doggan.files import HOST
from doggan.params import DataParams


class HTTPError(OSError):
    """Shaped like requests.HTTPError: an OSError with the response attached."""

    def __init__(self, status):
        super().__init__(f"{status} Client Error: Forbidden for url: https://www.kaggle.com/api/v1/x")
        self.response = type("Response", (), {"status_code": status})()


class FakeKaggle:
    """Stands in for KaggleApi at the network boundary: serves archives the test built.

    Like the client, it writes `<competition>.zip` or `<dataset slug>.zip` into `path`.
    """

    def __init__(self, archive: bytes, status: int | None = None):
        self.archive, self.status, self.calls = archive, status, []

    def _serve(self, name, path):
        self.calls.append(name)
        if self.status:
            raise HTTPError(self.status)
        Path(path).mkdir(parents=True, exist_ok=True)
        Path(path, f"{name.split('/')[-1]}.zip").write_bytes(self.archive)

    def competition_download_files(self, competition, path=None, force=False, quiet=True):
        self._serve(competition, path)

    def dataset_download_files(self, dataset, path=None, force=False, quiet=True, unzip=False, licenses=()):
        self._serve(dataset, path)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    raw = tmp_path_factory.mktemp("sample")
    write_sample(raw, 6, seed=1)
    return raw


def zip_of(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def members(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def competition_zip(sample) -> bytes:
    """The competition's download: a zip holding all-dogs.zip and Annotation.zip."""
    return zip_of({name: (sample / name).read_bytes() for name in ("all-dogs.zip", "Annotation.zip")})


def stanford_zip(sample) -> bytes:
    """The Stanford Dogs dataset as Kaggle Datasets serves it."""
    notes = members(sample / "Annotation.zip")
    breed = {Path(name).name: Path(name).parent.name for name in notes}
    layout = {
        f"images/Images/{breed[Path(name).stem]}/{Path(name).name}": data
        for name, data in members(sample / "all-dogs.zip").items()
    }
    layout.update(
        {f"annotations/Annotation/{Path(n).parent.name}/{Path(n).name}": d for n, d in notes.items()}
    )
    layout["images/Images/.DS_Store"] = b"junk"
    return zip_of(layout)


def test_kaggle_downloads_once_keeps_the_archives_and_refetches_a_truncated_one(tmp_path, sample):
    params = DataParams(source="kaggle", download_dir=str(tmp_path / "dl"))
    api = FakeKaggle(competition_zip(sample))
    summary = fetch(params, tmp_path / "raw", api=api)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Annotation.zip", "all-dogs.zip"]
    for name in ("all-dogs.zip", "Annotation.zip"):
        assert (tmp_path / "raw" / name).read_bytes() == (sample / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["Annotation.zip", "all-dogs.zip"]
    assert summary == {"source": "kaggle", "images": 6, "annotations": 6}

    fetch(params, tmp_path / "raw", api=api)
    assert api.calls == ["generative-dog-images"], "intact archives are not downloaded again"

    kept = tmp_path / "dl/all-dogs.zip"
    kept.write_bytes(kept.read_bytes()[:-300])
    fetch(params, tmp_path / "raw", api=api)
    assert len(api.calls) == 2, "a truncated archive is downloaded again"
    assert (tmp_path / "raw/all-dogs.zip").read_bytes() == (sample / "all-dogs.zip").read_bytes()


def test_kaggle_bundle_with_unpacked_folders_is_rebuilt_in_the_layout(tmp_path, sample):
    unpacked = {**members(sample / "all-dogs.zip"), **members(sample / "Annotation.zip")}
    params = DataParams(source="kaggle", download_dir=str(tmp_path / "dl"))
    fetch(params, tmp_path / "raw", api=FakeKaggle(zip_of(unpacked)))
    for name in ("all-dogs.zip", "Annotation.zip"):
        assert members(tmp_path / "raw" / name) == members(sample / name)


def test_a_truncated_download_is_an_error_naming_it(tmp_path, sample):
    params = DataParams(source="kaggle", download_dir=str(tmp_path / "dl"))
    with pytest.raises(DogganError, match="generative-dog-images.zip"):
        fetch(params, tmp_path / "raw", api=FakeKaggle(competition_zip(sample)[:-5000]))


def test_forbidden_competition_says_to_accept_the_rules(tmp_path, kaggle_key, monkeypatch):
    monkeypatch.setenv("KAGGLE_KEY", kaggle_key)
    params = DataParams(source="kaggle", download_dir=str(tmp_path / "dl"))
    with pytest.raises(DogganError, match=r"kaggle\.com/c/generative-dog-images/rules") as err:
        fetch(params, tmp_path / "raw", api=FakeKaggle(b"", status=403))
    assert kaggle_key not in str(err.value)


@pytest.mark.usefixtures("kaggle_home")
def test_missing_credentials_say_where_to_put_them(tmp_path, explains_kaggle_setup):
    with pytest.raises(DogganError) as err:
        fetch(DataParams(source="kaggle", download_dir=str(tmp_path / "dl")), tmp_path / "raw")
    explains_kaggle_setup(str(err.value))


def test_stanford_is_normalised_into_the_competition_layout(tmp_path, sample):
    params = DataParams(source="stanford", download_dir=str(tmp_path / "dl"))
    api = FakeKaggle(stanford_zip(sample))
    fetch(params, tmp_path / "raw", api=api)
    for name in ("all-dogs.zip", "Annotation.zip"):
        assert members(tmp_path / "raw" / name) == members(sample / name)
    fetch(params, tmp_path / "raw", api=api)
    assert api.calls == ["jessicali9530/stanford-dogs-dataset"]


def test_folder_source_collects_images_only(tmp_path, sample):
    photos = list(members(sample / "all-dogs.zip").values())
    folder = tmp_path / "faces"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(photos[0])
    (folder / "sub/b.jpg").write_bytes(photos[1])
    (folder / ".hidden.jpg").write_bytes(photos[2])
    (folder / "notes.txt").write_text("not an image")
    fetch(DataParams(source="sample", sample_images=8), tmp_path / "raw")
    summary = fetch(DataParams(source="folder", folder=str(folder)), tmp_path / "raw")
    assert [p.name for p in (tmp_path / "raw").iterdir()] == ["images.zip"], "only this source's archive"
    assert members(tmp_path / "raw/images.zip") == {"images/a.jpg": photos[0], "images/sub__b.jpg": photos[1]}
    assert summary == {"source": "folder", "images": 2}


def test_folder_source_reads_a_zip_and_skips_unsafe_members(tmp_path, sample):
    photo = next(iter(members(sample / "all-dogs.zip").values()))
    archive = tmp_path / "digits.zip"
    archive.write_bytes(zip_of({"d/0.png": photo, "../evil.png": photo, "__MACOSX/d/._0.png": b"fork"}))
    fetch(DataParams(source="folder", folder=str(archive)), tmp_path / "raw")
    assert list(members(tmp_path / "raw/images.zip")) == ["images/d__0.png"]


@pytest.mark.parametrize("kind", ["empty folder", "missing"])
def test_folder_source_without_images_is_an_error(tmp_path, kind):
    folder = tmp_path / "empty"
    if kind == "empty folder":
        folder.mkdir()
    with pytest.raises(DogganError, match=r"empty: .*data\.folder"):
        fetch(DataParams(source="folder", folder=str(folder)), tmp_path / "raw")
    assert not (tmp_path / "raw/images.zip").exists()


def test_sample_source_is_deterministic(tmp_path):
    first = fetch(DataParams(sample_images=8, sample_seed=4), tmp_path / "a")
    fetch(DataParams(sample_images=8, sample_seed=4), tmp_path / "b")
    assert first == {"source": "sample", "images": 8, "annotations": 8}
    for name in ("all-dogs.zip", "Annotation.zip"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


# --- Keras datasets, from a Keras cache the tests build in the real files' formats -----------------------


def fake_mnist(home: Path, n: int = 12) -> tuple:
    """`<home>/datasets/mnist.npz` with the keys, dtypes and shapes of the real file, n training digits."""
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y_train = rng.integers(0, 10, n).astype(np.uint8)
    (home / "datasets").mkdir(parents=True)
    np.savez(
        home / "datasets" / "mnist.npz",
        x_train=x_train,
        y_train=y_train,
        x_test=x_train[:2],
        y_test=y_train[:2],
    )
    return x_train, y_train


def decoded(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {name: np.asarray(Image.open(io.BytesIO(zf.read(name)))) for name in zf.namelist()}


def test_mnist_source_writes_the_training_digits_as_an_images_archive(tmp_path, monkeypatch):
    x_train, y_train = fake_mnist(tmp_path / "keras")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    summary = fetch(DataParams(source="mnist", max_images=10), tmp_path / "raw")
    assert summary == {"source": "mnist", "images": 10}
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["images.zip"]
    images = decoded(tmp_path / "raw" / "images.zip")
    assert sorted(images) == sorted(f"images/{y_train[i]}__{i:05d}.png" for i in range(10))
    for i in range(10):
        np.testing.assert_array_equal(images[f"images/{y_train[i]}__{i:05d}.png"], x_train[i])


def test_cifar10_source_reads_the_batches_keras_unpacks(tmp_path, monkeypatch):
    folder = tmp_path / "keras" / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    planes = rng.integers(0, 256, (5, 2, 3, 32, 32), dtype=np.uint8)  # batch, image, channel, row, column
    for b in range(5):
        batch = {b"data": planes[b].reshape(2, 3072), b"labels": [b, 9 - b]}
        (folder / f"data_batch_{b + 1}").write_bytes(pickle.dumps(batch))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    fetch(DataParams(source="cifar10"), tmp_path / "raw")
    images = decoded(tmp_path / "raw" / "images.zip")
    assert len(images) == 10
    first = images["images/0__00000.png"]
    assert first.shape == (32, 32, 3)
    np.testing.assert_array_equal(first, planes[0, 0].transpose(1, 2, 0))
    assert "images/5__00009.png" in images


def test_offline_keras_dataset_says_which_file_to_place_where(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: connections are refused
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DogganError) as err:
        fetch(DataParams(source="mnist"), tmp_path / "raw")
    message = str(err.value)
    assert "cannot download https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz" in message
    assert f"place mnist.npz at {tmp_path / 'keras' / 'datasets' / 'mnist.npz'}" in message
    assert not (tmp_path / "raw" / "images.zip").exists()


def test_a_damaged_cached_dataset_is_named(tmp_path, monkeypatch):
    (tmp_path / "keras" / "datasets").mkdir(parents=True)
    (tmp_path / "keras" / "datasets" / "mnist.npz").write_bytes(b"not an npz")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(DogganError, match="mnist.npz: not the mnist dataset as Keras caches it"):
        fetch(DataParams(source="mnist"), tmp_path / "raw")


# --- data already on this machine (data.source local), on read-only trees --------------------------------


def snapshot(root: Path) -> dict:
    """Every path under `root` with its mode, size, modification time and content digest."""
    state = {}
    for path in sorted([root, *root.rglob("*")]):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        state[path.relative_to(root).as_posix()] = (info.st_mode, info.st_size, info.st_mtime_ns, digest)
    return state


@pytest.fixture
def read_only():
    """Make a tree read only (chmod -R a-w) and return its snapshot; write permission comes back after."""
    frozen = []

    def freeze(root: Path) -> dict:
        frozen.append(root)
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return snapshot(root)

    yield freeze
    for root in frozen:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def unpack(files: dict, root: Path) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


COMPETITION = ("all-dogs.zip", "Annotation.zip")


def local_tree(sample: Path, root: Path, layout: str) -> None:
    """The sample laid out as notebook hosts mount the competition or Stanford Dogs."""
    photos, notes = members(sample / "all-dogs.zip"), members(sample / "Annotation.zip")
    if layout == "competition zips":
        unpack({f"generative-dog-images/{n}": (sample / n).read_bytes() for n in COMPETITION}, root)
    elif layout == "kaggle folders":
        unpack({f"input/generative-dog-images/all-dogs/{n}": d for n, d in photos.items()}, root)
        unpack({f"input/generative-dog-images/Annotation/{n}": d for n, d in notes.items()}, root)
    else:
        stanford = members(io.BytesIO(stanford_zip(sample)))
        unpack({f"stanford-dogs-dataset/{n}": d for n, d in stanford.items()}, root)


@pytest.mark.parametrize("layout", ["competition zips", "kaggle folders", "stanford folders"])
def test_local_source_reads_a_read_only_tree_into_the_competition_layout(tmp_path, sample, read_only, layout):
    root = tmp_path / "mount"
    local_tree(sample, root, layout)
    before = read_only(root)
    summary = fetch(DataParams(source="local", path=str(root)), tmp_path / "raw")
    assert snapshot(root) == before, "nothing under data.path changed or was added"
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(COMPETITION)
    for name in COMPETITION:
        assert members(tmp_path / "raw" / name) == members(sample / name)
    assert summary == {"source": "local", "images": 6, "annotations": 6}


def test_local_source_with_a_partial_layout_says_what_it_found(tmp_path, sample, read_only):
    root = tmp_path / "mount"
    unpack({f"input/all-dogs/{n}": d for n, d in members(sample / "all-dogs.zip").items()}, root)
    before = read_only(root)
    with pytest.raises(DogganError) as err:
        fetch(DataParams(source="local", path=str(root)), tmp_path / "raw")
    message = str(err.value)
    assert f"data.path {root}: incomplete dog data, no annotations" in message
    assert f"found: all-dogs folder {root / 'input/all-dogs/all-dogs'} (6 files)" in message
    assert snapshot(root) == before
    assert not list((tmp_path / "raw").glob("*.zip"))


def test_local_source_names_a_missing_folder_and_a_damaged_zip(tmp_path, sample, read_only):
    with pytest.raises(DogganError, match="data.path .*nowhere: not a folder"):
        fetch(DataParams(source="local", path=str(tmp_path / "nowhere")), tmp_path / "raw")
    root = tmp_path / "mount"
    local_tree(sample, root, "competition zips")
    photos = root / "generative-dog-images/all-dogs.zip"
    photos.write_bytes(photos.read_bytes()[:-300])
    before = read_only(root)
    with pytest.raises(DogganError, match=f"{photos}: not the competition's all-dogs.zip"):
        fetch(DataParams(source="local", path=str(root)), tmp_path / "raw")
    assert snapshot(root) == before
    assert not (tmp_path / "raw/all-dogs.zip").exists()


def test_local_source_refuses_an_output_folder_under_data_path(tmp_path, sample, read_only):
    root = tmp_path / "project"
    local_tree(sample, root, "competition zips")
    unpack({"data/raw/all-dogs.zip": b"kept"}, root)
    before = read_only(root)
    with pytest.raises(DogganError, match="holds the output folder"):
        fetch(DataParams(source="local", path=str(root)), root / "data/raw")
    assert snapshot(root) == before


def test_local_source_needs_a_path():
    with pytest.raises(ValueError, match="data.source 'local' needs data.path"):
        DataParams(source="local")


class BrokenOff(FakeKaggle):
    """A client whose download breaks off half-way, as a killed one does: half the archive written."""

    def _serve(self, name, path):
        self.calls.append(name)
        Path(path, f"{name.split('/')[-1]}.zip").write_bytes(self.archive[: len(self.archive) // 2])
        raise ConnectionError("connection reset")


def test_a_broken_off_download_leaves_no_partial_archive_and_a_killed_ones_folder_goes(tmp_path, sample):
    params = DataParams(source="kaggle", download_dir=str(tmp_path / "dl"))
    with pytest.raises(DogganError, match="ConnectionError"):
        fetch(params, tmp_path / "raw", api=BrokenOff(competition_zip(sample)))
    assert list((tmp_path / "dl").iterdir()) == []
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    killed = tmp_path / "dl" / f".generative-dog-images.zip.{int(ended.stdout)}@{HOST}.tmp-abcd1234"
    killed.mkdir()
    (killed / "generative-dog-images.zip").write_bytes(b"half an archive")
    fetch(params, tmp_path / "raw", api=FakeKaggle(competition_zip(sample)))
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["Annotation.zip", "all-dogs.zip"]
