"""The download stage: bring a data source into `data/raw` in the Kaggle competition's layout.

`all-dogs.zip` holds `all-dogs/<image_id>.jpg`; `Annotation.zip` holds
`Annotation/<wnid>-<Breed>/<image_id>` (Pascal VOC XML). The folder source writes `images.zip`, and so
do the Keras datasets (mnist, cifar10): their training images as PNGs, as if from a folder of photos.
Kaggle archives are kept in `data.download_dir` between runs and fetched again only when missing
or damaged; the Kaggle client can be passed in (`api`), which is how the tests stand in for it.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import shutil
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from doggan import kaggle_api
from doggan.archives import (
    ArchiveError,
    copy_member,
    is_image_name,
    is_intact,
    open_zip,
    safe_members,
    write_member,
)
from doggan.errors import DogganError
from doggan.files import atomic_path
from doggan.params import DataParams
from doggan.sample import write_sample

log = logging.getLogger("doggan")
RAW_FILES = ("all-dogs.zip", "Annotation.zip", "images.zip")
COMPETITION_FILES = {"all-dogs.zip": "all-dogs", "Annotation.zip": "Annotation"}


def _has_dir(names: list[str], folder: str) -> bool:
    return any(folder in PurePosixPath(n).parts[:-1] for n in names)


def _holds_competition(names: list[str]) -> bool:
    """The competition bundle holds its two zips, or (unpacked) their two folders."""
    files = {PurePosixPath(n).name for n in names}
    return set(COMPETITION_FILES) <= files or all(_has_dir(names, d) for d in COMPETITION_FILES.values())


def _download(call: Callable[[], None], path: Path, what: str, competition: str | None = None) -> Path:
    """Run one client download that writes `path`, with readable errors and an integrity check."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    log.info("%s into %s", what, path.parent)
    try:
        call()
    except DogganError:
        raise
    except Exception as exc:  # the client raises requests/urllib3 errors of many kinds
        raise kaggle_api.explain(exc, what, competition) from None
    if not path.is_file():
        raise DogganError(f"{what}: the Kaggle client wrote no {path}")
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
                lambda: api.competition_download_files(
                    competition, path=str(download_dir), force=True, quiet=False
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
            lambda: api.dataset_download_files(dataset, path=str(download_dir), force=True, quiet=False),
            bundle,
            f"download of dataset {dataset}",
        )
        if not is_intact(bundle, wanted):
            raise DogganError(f"{bundle}: the download is not a zip holding Images and Annotation folders")
    normalise(bundle, raw_dir, "Images", "Annotation")


def _folder_images(folder: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every image below a folder or inside a zip, in sorted order."""
    if folder.is_file():
        with open_zip(folder) as zf:
            members, refused = safe_members(zf)
            for name, reason in refused.items():
                log.warning("%s: skipped member %s (%s)", folder, name, reason)
            for info in sorted(members, key=lambda i: i.filename):
                if is_image_name(info.filename):
                    yield info.filename, zf.read(info)
        return
    if not folder.is_dir():
        raise DogganError(f"{folder}: data.folder is neither a folder nor a zip of images")
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if is_image_name(name) and path.is_file() and not path.is_symlink():
            yield name, path.read_bytes()


def write_folder(folder: Path, raw_dir: Path) -> None:
    """Gather the images of a folder or zip into `raw_dir/images.zip` as `images/<path with __>`."""
    count = 0
    with atomic_path(raw_dir / "images.zip") as tmp:
        with zipfile.ZipFile(tmp, "w") as out:
            for name, data in _folder_images(folder):
                write_member(out, f"images/{name.replace('/', '__')}", data)
                count += 1
        if not count:
            raise DogganError(f"{folder}: no images found in data.folder (looked for image files)")


@dataclass(frozen=True)
class KerasDataset:
    """Where Keras' own loader (keras.datasets.<name>.load_data) downloads a dataset and what it caches."""

    origin: str
    file_hash: str
    fname: str  # get_file's name in <Keras home>/datasets
    cached: str  # what is read, relative to <Keras home>/datasets
    place: str  # what to put there by hand when offline


KERAS_DATASETS = {
    "mnist": KerasDataset(
        origin="https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
        file_hash="731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
        fname="mnist.npz",
        cached="mnist.npz",
        place="mnist.npz",
    ),
    "cifar10": KerasDataset(
        origin="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        file_hash="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        fname="cifar-10-batches-py-target",
        cached="cifar-10-batches-py-target/cifar-10-batches-py",
        place="the folder cifar-10-batches-py unpacked from cifar-10-python.tar.gz",
    ),
}
CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def keras_home() -> Path:
    """Keras' cache folder, chosen as Keras chooses it: $KERAS_HOME, else ~/.keras."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()


def _read_keras_dataset(name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The training split in Keras' cached format: uint8 images (N, H, W, C) and int labels (N,)."""
    try:
        if name == "mnist":
            with np.load(path, allow_pickle=False) as data:
                images, labels = data["x_train"][..., None], data["y_train"]
        else:
            parts = []
            for batch in CIFAR_BATCHES:
                with open(path / batch, "rb") as f:
                    # the archive's own format (Python pickles), read as keras.datasets.cifar10 reads it
                    parts.append(pickle.load(f, encoding="bytes"))
            data = np.concatenate([np.asarray(p[b"data"], np.uint8) for p in parts])
            images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            labels = np.concatenate([np.asarray(p[b"labels"]) for p in parts])
    except (OSError, KeyError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise DogganError(f"{path}: not the {name} dataset as Keras caches it ({exc})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
        raise DogganError(f"{path}: not the {name} dataset as Keras caches it (images {images.shape})")
    return images, labels.astype(np.int64).reshape(-1)


def load_keras_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's or CIFAR-10's training split from the Keras cache; downloaded there once (by Keras, from its
    loader's origin, checksum verified) when it is missing, with instructions when that cannot be done."""
    import keras

    spec = KERAS_DATASETS[name]
    home = keras_home()
    cached = home / "datasets" / spec.cached
    if not cached.exists():
        log.info("%s: not in the Keras cache (%s), downloading %s", name, cached, spec.origin)
        try:
            keras.utils.get_file(
                spec.fname,
                spec.origin,
                file_hash=spec.file_hash,
                cache_dir=str(home),
                extract=name != "mnist",
            )
        except Exception as exc:  # urllib, hashing and archive errors of many kinds
            raise DogganError(
                f"data.source {name}: cannot download {spec.origin} ({exc}). Without network access, "
                f"place {spec.place} at {cached} (that file is what keras.datasets.{name}.load_data() "
                "keeps in the Keras cache; $KERAS_HOME moves it)"
            ) from None
    return _read_keras_dataset(name, cached)


def write_keras_dataset(name: str, raw_dir: Path, max_images: int = 0) -> None:
    """The training images of a Keras dataset as PNGs in `raw_dir/images.zip`, named
    `images/<label>__<index>.png` as a folder of class folders would be (crop centre-crops them as is)."""
    images, labels = load_keras_dataset(name)
    if max_images:
        images, labels = images[:max_images], labels[:max_images]
    with atomic_path(raw_dir / "images.zip") as tmp, zipfile.ZipFile(tmp, "w") as out:
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            buffer = io.BytesIO()
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
            write_member(out, f"images/{label}__{index:05d}.png", buffer.getvalue())
    log.info("%s: %d training images written to %s", name, len(images), raw_dir / "images.zip")


def fetch(params: DataParams, raw_dir: Path, api=None) -> dict:
    """Write the chosen source into `raw_dir` (and nothing else); `api` replaces the Kaggle client."""
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    for path in raw_dir.iterdir():
        if path.name in RAW_FILES or any(path.name.startswith(f".{name}.") for name in RAW_FILES):
            path.unlink()
    download_dir = Path(params.download_dir)
    if params.source == "sample":
        write_sample(raw_dir, params.sample_images, params.sample_seed)
    elif params.source == "folder":
        write_folder(Path(params.folder), raw_dir)
    elif params.source in KERAS_DATASETS:
        write_keras_dataset(params.source, raw_dir, params.max_images)
    elif params.source == "kaggle":
        fetch_competition(params.competition, download_dir, raw_dir, api)
    else:
        fetch_dataset(params.dataset, download_dir, raw_dir, api)
    summary = {"source": params.source, **_count(raw_dir)}
    log.info("download: %s", summary)
    return summary
