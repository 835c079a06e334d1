"""The download stage: bring a data source into `data/raw` in the Kaggle competition's layout.

`all-dogs.zip` holds `all-dogs/<image_id>.jpg`; `Annotation.zip` holds
`Annotation/<wnid>-<Breed>/<image_id>` (Pascal VOC XML). The folder source writes `images.zip`, and so
do the Keras datasets (mnist, cifar10): their training images as PNGs, as if from a folder of photos.
Data already on this machine (the folder and local sources) is read by `doggan.data.local_data`.
Kaggle archives are kept in `data.download_dir` between runs and fetched again only when missing
or damaged; the Kaggle client can be passed in (`api`), which is how the tests stand in for it.
"""

from __future__ import annotations

import logging
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from doggan.data import kaggle_api
from doggan.data.archives import (
    ArchiveError,
    copy_member,
    is_image_name,
    is_intact,
    open_zip,
    safe_members,
)
from doggan.data.keras_datasets import KERAS_DATASETS, write_keras_dataset
from doggan.data.local_data import refuse_inside, write_folder, write_local
from doggan.data.sample import write_sample
from doggan.errors import DogganError
from doggan.files import REFUSALS, atomic_path, remove_stale, scratch_dir
from doggan.params import DataParams

log = logging.getLogger("doggan")
RAW_FILES = ("all-dogs.zip", "Annotation.zip", "images.zip")
COMPETITION_FILES = {"all-dogs.zip": "all-dogs", "Annotation.zip": "Annotation"}


def _has_dir(names: list[str], folder: str) -> bool:
    return any(folder in PurePosixPath(n).parts[:-1] for n in names)


def _holds_competition(names: list[str]) -> bool:
    """The competition bundle holds its two zips, or (unpacked) their two folders."""
    files = {PurePosixPath(n).name for n in names}
    return set(COMPETITION_FILES) <= files or all(_has_dir(names, d) for d in COMPETITION_FILES.values())


def _download(call: Callable[[str], None], path: Path, what: str, competition: str | None = None) -> Path:
    """Run one client download of `path`, with readable errors. The client writes into a scratch folder
    beside it, and the file takes its name when whole: a killed download leaves no partial archive."""
    log.info("%s into %s", what, path.parent)
    with scratch_dir(path) as folder:
        try:
            call(str(folder))
        except DogganError:
            raise
        except Exception as exc:  # the client raises requests/urllib3 errors of many kinds
            if isinstance(exc, OSError) and exc.errno in REFUSALS:
                raise
            raise kaggle_api.explain(exc, what, competition) from None
        if not (folder / path.name).is_file():
            raise DogganError(f"{what}: the Kaggle client wrote no {path.name}")
        os.replace(folder / path.name, path)
    return path


def _place(source: Path, target: Path) -> None:
    """Hard-link `source` as `target` (no copy of gigabytes), or copy it atomically across devices."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def _count(raw_dir: Path) -> dict:
    counts = {}
    for name, key in (
        ("all-dogs.zip", "images"),
        ("images.zip", "images"),
        ("Annotation.zip", "annotations"),
    ):
        if (raw_dir / name).exists():
            with open_zip(raw_dir / name) as zf:
                counts[key] = sum(not i.is_dir() for i in zf.infolist())
    return counts


def normalise(archive: Path, out_dir: Path, images_dir: str, notes_dir: str) -> dict:
    """Rewrite photos found below a folder named `images_dir` and annotations below `notes_dir`
    (in breed folders) as the competition's all-dogs.zip and Annotation.zip in `out_dir`."""
    counts = {"images": 0, "annotations": 0}
    with (
        open_zip(archive) as source,
        atomic_path(out_dir / "all-dogs.zip") as images_tmp,
        atomic_path(out_dir / "Annotation.zip") as notes_tmp,
        zipfile.ZipFile(images_tmp, "w") as images,
        zipfile.ZipFile(notes_tmp, "w") as notes,
    ):
        members, refused = safe_members(source)
        for name, reason in refused.items():
            log.warning("%s: skipped member %s (%s)", archive, name, reason)
        for info in sorted(members, key=lambda i: i.filename):
            path = PurePosixPath(info.filename)
            if images_dir in path.parts[:-1] and is_image_name(info.filename):
                copy_member(source, info, images, f"all-dogs/{path.stem}.jpg")
                counts["images"] += 1
            elif notes_dir in path.parts[:-2] and not path.name.startswith("."):
                copy_member(source, info, notes, f"Annotation/{path.parent.name}/{path.name}")
                counts["annotations"] += 1
        if not counts["images"]:
            raise ArchiveError(f"{archive}: no photos in a folder named {images_dir}")
    return counts


def _unpack_competition(bundle: Path, download_dir: Path) -> None:
    """Take all-dogs.zip and Annotation.zip out of the competition's bundle (or rebuild them)."""
    with open_zip(bundle) as zf:
        members, _ = safe_members(zf)
        by_name = {PurePosixPath(i.filename).name: i for i in members}
        if not set(COMPETITION_FILES) <= set(by_name):
            normalise(bundle, download_dir, "all-dogs", "Annotation")
            return
        for name in COMPETITION_FILES:
            with (
                atomic_path(download_dir / name) as tmp,
                zf.open(by_name[name]) as src,
                open(tmp, "wb") as dst,
            ):
                shutil.copyfileobj(src, dst, 1 << 20)


def fetch_competition(competition: str, download_dir: Path, raw_dir: Path, api=None) -> None:
    """The competition's two archives in `raw_dir`, downloaded only when the kept ones are not intact."""
    kept = {name: download_dir / name for name in COMPETITION_FILES}

    def intact(name: str) -> bool:
        return is_intact(kept[name], lambda names: _has_dir(names, COMPETITION_FILES[name]))

    if all(intact(name) for name in kept):
        log.info("%s: competition archives present and intact, not downloading again", download_dir)
    else:
        bundle = download_dir / f"{competition}.zip"
        if not is_intact(bundle, _holds_competition):
            api = api or kaggle_api.authenticate()
            _download(
                lambda folder: api.competition_download_files(
                    competition, path=folder, force=True, quiet=False
                ),
                bundle,
                f"download of competition {competition}",
                competition,
            )
            if not is_intact(bundle, _holds_competition):
                raise DogganError(f"{bundle}: the download is not a zip holding all-dogs and Annotation")
        _unpack_competition(bundle, download_dir)
        broken = [str(kept[name]) for name in kept if not intact(name)]
        if broken:
            raise DogganError(f"{', '.join(broken)}: damaged inside the competition download")
        bundle.unlink()
    for name, path in kept.items():
        _place(path, raw_dir / name)


def fetch_dataset(dataset: str, download_dir: Path, raw_dir: Path, api=None) -> None:
    """Stanford Dogs (`images/Images/...`, `annotations/Annotation/...`) in the competition layout."""
    bundle = download_dir / f"{dataset.split('/')[-1]}.zip"

    def wanted(names: list[str]) -> bool:
        return _has_dir(names, "Images") and _has_dir(names, "Annotation")

    if is_intact(bundle, wanted):
        log.info("%s: present and intact, not downloading again", bundle)
    else:
        api = api or kaggle_api.authenticate()
        _download(
            lambda folder: api.dataset_download_files(dataset, path=folder, force=True, quiet=False),
            bundle,
            f"download of dataset {dataset}",
        )
        if not is_intact(bundle, wanted):
            raise DogganError(f"{bundle}: the download is not a zip holding Images and Annotation folders")
    normalise(bundle, raw_dir, "Images", "Annotation")


def fetch(params: DataParams, raw_dir: Path, api=None) -> dict:
    """Write the chosen source into `raw_dir` (and nothing else); `api` replaces the Kaggle client."""
    raw_dir = Path(raw_dir)
    if params.source == "local":
        refuse_inside(Path(params.path), raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    download_dir = Path(params.download_dir)
    if params.source == "sample":
        write_sample(raw_dir, params.sample_images, params.sample_seed)
    elif params.source == "folder":
        write_folder(Path(params.folder), raw_dir)
    elif params.source == "local":
        write_local(Path(params.path), raw_dir)
    elif params.source in KERAS_DATASETS:
        write_keras_dataset(params.source, raw_dir, params.max_images)
    elif params.source == "kaggle":
        fetch_competition(params.competition, download_dir, raw_dir, api)
    else:
        fetch_dataset(params.dataset, download_dir, raw_dir, api)
    written = (
        ("images.zip",) if params.source == "folder" or params.source in KERAS_DATASETS else COMPETITION_FILES
    )
    for name in RAW_FILES:  # a previous source's files, once this one's are whole; killed runs' temp files
        remove_stale(raw_dir / name)
        if name not in written:
            (raw_dir / name).unlink(missing_ok=True)
    summary = {"source": params.source, **_count(raw_dir)}
    log.info("download: %s", summary)
    return summary
