import io
import zipfile
from pathlib import Path

import pytest

from doggan.download import fetch
from doggan.errors import DogganError
from doggan.params import DataParams
from doggan.sample import write_sample


class HTTPError(Exception):
    def __init__(self, status):
        super().__init__(f"{status} Client Error")
        self.response = type("Response", (), {"status_code": status})()


class FakeKaggle:
    """Stands in for KaggleApi at the network boundary: serves archives the test built."""

    def __init__(self, archive: bytes, status: int | None = None):
        self.archive, self.status, self.calls = archive, status, []

    def _serve(self, name, path):
        self.calls.append(name)
        if self.status:
            raise HTTPError(self.status)
        Path(path, f"{name.split('/')[-1]}.zip").write_bytes(self.archive)

    def competition_download_files(self, competition, path=None, force=False, quiet=True):
        self._serve(competition, path)

    def dataset_download_files(self, dataset, path=None, force=False, quiet=True, unzip=False):
        self._serve(dataset, path)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    raw = tmp_path_factory.mktemp("sample")
    write_sample(raw, 6, seed=1)
    return raw


def competition_zip(sample) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in ("all-dogs.zip", "Annotation.zip"):
            zf.writestr(name, (sample / name).read_bytes())
    return buffer.getvalue()


def stanford_zip(sample) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out, zipfile.ZipFile(sample / "Annotation.zip") as notes:
        with zipfile.ZipFile(sample / "all-dogs.zip") as photos:
            folders = {Path(n).name: Path(n).parent.name for n in notes.namelist()}
            for name in photos.namelist():
                image_id = Path(name).stem
                out.writestr(f"images/Images/{folders[image_id]}/{image_id}.jpg", photos.read(name))
        for name in notes.namelist():
            out.writestr(
                f"annotations/Annotation/{Path(name).parent.name}/{Path(name).name}", notes.read(name)
            )
    return buffer.getvalue()


def test_kaggle_downloads_once_and_refetches_a_truncated_archive(tmp_path, sample):
    params = DataParams(source="kaggle", download_dir=str(tmp_path / "dl"))
    api = FakeKaggle(competition_zip(sample))
    fetch(params, tmp_path / "raw", api=api)
    for name in ("all-dogs.zip", "Annotation.zip"):
        assert (tmp_path / "raw" / name).read_bytes() == (sample / name).read_bytes()
    fetch(params, tmp_path / "raw", api=api)
    assert api.calls == ["generative-dog-images"], "an intact archive is not downloaded again"
    archive = tmp_path / "dl/generative-dog-images.zip"
    archive.write_bytes(archive.read_bytes()[:-100])
    fetch(params, tmp_path / "raw", api=api)
    assert len(api.calls) == 2


def test_forbidden_competition_says_to_accept_the_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_KEY", "s3cr3t-key")
    params = DataParams(source="kaggle", download_dir=str(tmp_path / "dl"))
    with pytest.raises(DogganError, match="rules") as err:
        fetch(params, tmp_path / "raw", api=FakeKaggle(b"", status=403))
    assert "s3cr3t-key" not in str(err.value)


def test_missing_credentials_say_where_to_put_them(tmp_path, monkeypatch):
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DogganError, match=r"kaggle\.json.*KAGGLE_USERNAME"):
        fetch(DataParams(source="kaggle", download_dir=str(tmp_path)), tmp_path / "raw")


def test_stanford_is_normalised_into_the_competition_layout(tmp_path, sample):
    params = DataParams(source="stanford", download_dir=str(tmp_path / "dl"))
    fetch(params, tmp_path / "raw", api=FakeKaggle(stanford_zip(sample)))
    for name in ("all-dogs.zip", "Annotation.zip"):
        with zipfile.ZipFile(tmp_path / "raw" / name) as ours, zipfile.ZipFile(sample / name) as theirs:
            assert sorted(ours.namelist()) == sorted(theirs.namelist())


def test_folder_source_collects_images_and_rejects_an_empty_folder(tmp_path, sample):
    folder = tmp_path / "faces"
    (folder / "sub").mkdir(parents=True)
    with zipfile.ZipFile(sample / "all-dogs.zip") as zf:
        for i, name in enumerate(zf.namelist()[:3]):
            (folder / ("sub" if i else ".") / f"{i}.jpg").write_bytes(zf.read(name))
    (folder / "notes.txt").write_text("not an image")
    fetch(DataParams(source="folder", folder=str(folder)), tmp_path / "raw")
    with zipfile.ZipFile(tmp_path / "raw/images.zip") as zf:
        assert len(zf.namelist()) == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DogganError, match="no images"):
        fetch(DataParams(source="folder", folder=str(empty)), tmp_path / "raw2")
