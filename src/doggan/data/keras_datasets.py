"""MNIST and CIFAR-10 as data sources: Keras' own downloads, written as a folder of photos would be.

Keras' loaders (keras.datasets.<name>.load_data) keep each dataset in the Keras cache; the training
images are read from there and written as PNGs in `data/raw/images.zip`, which crop centre-crops.
A missing dataset is downloaded by Keras into a scratch folder beside its place in the cache and
takes that place only whole, so a killed download leaves nothing a later run would read, and two
runs downloading at once each read a whole copy. DOGGAN_<NAME>_URL (DOGGAN_MNIST_URL,
DOGGAN_CIFAR10_URL) points at a mirror; another URL un-pins the checksum, as for the weights.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from doggan.data.archives import write_member
from doggan.errors import DogganError
from doggan.files import REFUSALS, atomic_path, scratch_dir

log = logging.getLogger("doggan")


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


def origin(name: str) -> tuple[str, str | None]:
    """Where a dataset is downloaded from and its pinned sha256: Keras' origin, or DOGGAN_<NAME>_URL's
    mirror (not pinned)."""
    spec = KERAS_DATASETS[name]
    url = os.environ.get(f"DOGGAN_{name.upper()}_URL") or spec.origin
    return url, spec.file_hash if url == spec.origin else None


def _download(name: str, cached: Path) -> None:
    """Keras' download (and unpacking) of `name` in a scratch folder, then moved whole to `cached`;
    when another run placed it first, that copy is kept."""
    import keras

    spec = KERAS_DATASETS[name]
    url, file_hash = origin(name)
    log.info("%s: not in the Keras cache (%s), downloading %s", name, cached, url)
    with scratch_dir(cached) as scratch:
        try:
            keras.utils.get_file(
                spec.fname,
                url,
                file_hash=file_hash,
                cache_dir=str(scratch),
                cache_subdir=".",
                extract=name != "mnist",
            )
        except Exception as exc:  # urllib, hashing and archive errors of many kinds
            if isinstance(exc, OSError) and exc.errno in REFUSALS:
                raise
            raise DogganError(
                f"data.source {name}: cannot download {url} ({exc}). Without network access, "
                f"place {spec.place} at {cached} (that file is what keras.datasets.{name}.load_data() "
                "keeps in the Keras cache; $KERAS_HOME moves it)"
            ) from None
        try:
            os.replace(scratch / spec.cached, cached)
        except OSError:
            if not cached.exists():
                raise


def load_keras_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's or CIFAR-10's training split from the Keras cache; downloaded there once (by Keras, from its
    loader's origin, checksum verified) when it is missing, with instructions when that cannot be done."""
    cached = keras_home() / "datasets" / KERAS_DATASETS[name].cached
    if not cached.exists():
        _download(name, cached)
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
