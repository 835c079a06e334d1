"""The download stage: bring a data source into `data/raw` in the Kaggle competition's layout.

`all-dogs.zip` holds `all-dogs/<image_id>.jpg`; `Annotation.zip` holds
`Annotation/<wnid>-<Breed>/<image_id>` (Pascal VOC XML). The folder source writes `images.zip`.
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from doggan import kaggle_api
from doggan.archives import ArchiveError, open_zip, safe_members
from doggan.crop import IMAGE_SUFFIXES
from doggan.errors import DogganError
from doggan.files import atomic_path
from doggan.params import DataParams
from doggan.sample import ZIP_DATE, write_sample

log = logging.getLogger("doggan")
RAW_FILES = ("all-dogs.zip", "Annotation.zip", "images.zip")


def is_intact(path: Path, expected: tuple[str, ...] = ()) -> bool:
    """True when `path` is a zip holding a member starting with each `expected` prefix, all CRCs good.

    The expected members matter: a truncated archive of stored zips can still parse, as a zip
    found inside it.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if not all(any(n.startswith(p) for n in names) for p in expected):
                return False
            return zf.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def _kaggle_archive(download_dir: Path, name: str, expected: tuple[str, ...], fetch_fn) -> Path:
    """The archive Kaggle serves, downloaded once and re-fetched only when missing or damaged."""
    path = download_dir / name
    if path.exists() and is_intact(path, expected):
        log.info("%s: present and intact, not downloading again", path)
        return path
    if path.exists():
        log.warning("%s: damaged or truncated, downloading again", path)
        path.unlink()
    download_dir.mkdir(parents=True, exist_ok=True)
    fetch_fn()
    if not is_intact(path, expected):
        raise DogganError(f"{path}: the download is not a valid zip archive")
    return path


def _copy_member(source: zipfile.ZipFile, info: zipfile.ZipInfo, target: zipfile.ZipFile, name: str) -> None:
    out = zipfile.ZipInfo(name, ZIP_DATE)
    out.compress_type = zipfile.ZIP_STORED if name.endswith(".jpg") else zipfile.ZIP_DEFLATED
    out.external_attr = 0o100644 << 16
    with source.open(info) as src, target.open(out, "w") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _normalise(archive: Path, raw_dir: Path, images_root: str, notes_root: str) -> dict:
    """Rewrite an archive holding photos under `images_root` and annotations under `notes_root`."""
    counts = {"images": 0, "annotations": 0}
    with (
        open_zip(archive) as source,
        atomic_path(raw_dir / "all-dogs.zip") as images_tmp,
        atomic_path(raw_dir / "Annotation.zip") as notes_tmp,
        zipfile.ZipFile(images_tmp, "w") as images,
        zipfile.ZipFile(notes_tmp, "w") as notes,
    ):
        members, refused = safe_members(source)
        for name, reason in refused.items():
            log.warning("%s: skipped member %s (%s)", archive, name, reason)
        for info in members:
            path = PurePosixPath(info.filename)
            if info.filename.startswith(images_root) and path.suffix.lower() in IMAGE_SUFFIXES:
                _copy_member(source, info, images, f"all-dogs/{path.stem}.jpg")
                counts["images"] += 1
            elif info.filename.startswith(notes_root) and len(path.parts) >= 2:
                _copy_member(source, info, notes, f"Annotation/{path.parent.name}/{path.name}")
                counts["annotations"] += 1
    if not counts["images"]:
        raise ArchiveError(f"{archive}: no photos under {images_root}")
    return counts


def _extract_competition(archive: Path, raw_dir: Path) -> dict:
    """Take all-dogs.zip and Annotation.zip out of the competition's download."""
    wanted = {"all-dogs.zip", "Annotation.zip"}
    with open_zip(archive) as zf:
        members, _ = safe_members(zf)
        by_name = {PurePosixPath(i.filename).name: i for i in members}
        found = {name: info for name, info in by_name.items() if name in wanted}
        missing = wanted - set(found)
        if missing:
            raise ArchiveError(f"{archive}: missing {', '.join(sorted(missing))}")
        for name, info in found.items():
            with atomic_path(raw_dir / name) as tmp, zf.open(info) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    return {name: (raw_dir / name).stat().st_size for name in sorted(wanted)}


def _folder_images(folder: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every image below a folder or inside a zip, in sorted order."""
    if folder.is_file():
        with open_zip(folder) as zf:
            members, _ = safe_members(zf)
            for info in sorted(members, key=lambda i: i.filename):
                if PurePosixPath(info.filename).suffix.lower() in IMAGE_SUFFIXES:
                    yield info.filename, zf.read(info)
        return
    if not folder.is_dir():
        raise DogganError(f"{folder}: data.folder is neither a folder nor a zip of images")
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.suffix.lower() in IMAGE_SUFFIXES:
            yield path.relative_to(folder).as_posix(), path.read_bytes()


def _write_folder(folder: Path, raw_dir: Path) -> dict:
    count = 0
    with atomic_path(raw_dir / "images.zip") as tmp, zipfile.ZipFile(tmp, "w") as out:
        for name, data in _folder_images(folder):
            flat = name.replace("/", "__")
            info = zipfile.ZipInfo(f"images/{flat}", ZIP_DATE)
            info.external_attr = 0o100644 << 16
            out.writestr(info, data)
            count += 1
    if not count:
        (raw_dir / "images.zip").unlink()
        raise DogganError(f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return {"images": count}


def fetch(params: DataParams, raw_dir: Path, api=None) -> dict:
    """Write the chosen source into `raw_dir`; `api` replaces the Kaggle client (tests use a fake)."""
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name in RAW_FILES:
        (raw_dir / name).unlink(missing_ok=True)
    download_dir = Path(params.download_dir)
    if params.source == "sample":
        summary = write_sample(raw_dir, params.sample_images, params.sample_seed)
    elif params.source == "folder":
        summary = _write_folder(Path(params.folder), raw_dir)
    else:
        api = api or kaggle_api.authenticate()
        if params.source == "kaggle":
            name, what = f"{params.competition}.zip", f"download of competition {params.competition}"
            expected = ("all-dogs.zip", "Annotation.zip")

            def get() -> None:
                api.competition_download_files(params.competition, path=str(download_dir), quiet=False)

        else:
            name, what = f"{params.dataset.split('/')[-1]}.zip", f"download of dataset {params.dataset}"
            expected = ("images/Images/", "annotations/Annotation/")

            def get() -> None:
                api.dataset_download_files(params.dataset, path=str(download_dir), quiet=False, unzip=False)

        try:
            archive = _kaggle_archive(download_dir, name, expected, get)
        except DogganError:
            raise
        except Exception as exc:  # the client raises requests/urllib3 errors of many kinds
            competition = params.competition if params.source == "kaggle" else None
            raise kaggle_api.explain(exc, what, competition) from None
        if params.source == "kaggle":
            summary = _extract_competition(archive, raw_dir)
        else:
            summary = _normalise(archive, raw_dir, "images/Images/", "annotations/Annotation/")
    log.info("download (%s): %s", params.source, summary)
    return summary
