"""MiFID backbone weights, downloaded once into a cache: Kaggle's 2015 Inception graph and Keras' files.

A download streams into a temp file beside its target with a progress bar; its size and checksum are
checked before it takes its name, so a truncated or altered file never reaches the cache. A short
connect timeout keeps an offline machine from waiting more than a few seconds. The URL, size and
checksum of each file can be overridden with DOGGAN_<KEY>_URL, _SIZE and _HASH (KEY: INCEPTION,
NASNET), for mirrors; another URL un-pins the real file's size and checksum.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import requests
from tqdm import tqdm

from doggan.errors import DogganError
from doggan.files import atomic_path, digest

log = logging.getLogger("doggan")
CONNECT_TIMEOUT = 4.0  # seconds to reach the server: what an offline machine loses
READ_TIMEOUT = 60.0  # seconds without a byte before a started download is given up
CHUNK = 1 << 20


class WeightsUnavailable(DogganError):
    """Weights that cannot be had now: offline, refused, truncated, or not the pinned file."""


@dataclass(frozen=True)
class Spec:
    """A weights file: its name in the cache, where it is downloaded from, and what pins it."""

    name: str
    url: str
    size: int = 0  # bytes; 0 = not pinned
    digest: str = ""  # sha256 (64 hex digits) or md5 (32, as Keras pins its files); "" = not pinned


@dataclass(frozen=True)
class Located:
    """Where a backbone's weights came from: `source` is path, cache, url (downloaded now) or standin."""

    path: str
    source: str
    url: str = ""


# The graph of TTUR's fid.py and of Kaggle's MiFID demo kernel; its size as the server sends it.
INCEPTION = Spec(
    "inception-2015-12-05.tgz",
    "https://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz",
    size=88_931_400,
)
# Keras' ImageNet files without the classifier, under the names and md5 sums Keras itself uses.
KERAS = {
    "keras_imagenet": Spec(
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        digest="bcbd6486424b2319ff4ef7d526e38f63",
    ),
    "nasnet": Spec(
        "nasnet_large_no_top.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/nasnet/NASNet-large-no-top.h5",
        digest="d81d89dc07e6e56530c4e77faddd61b5",
    ),
}
STANDIN = Located("", "standin")


def cache_dir() -> Path:
    """doggan's download cache: $DOGGAN_CACHE, else ~/.cache/doggan."""
    return Path(os.environ.get("DOGGAN_CACHE") or Path.home() / ".cache" / "doggan").expanduser()


def keras_cache() -> Path:
    """Where Keras keeps application weights ($KERAS_HOME/models, else ~/.keras/models)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "models"


def configured(key: str, spec: Spec) -> Spec:
    """`spec` with DOGGAN_<key>_URL, _SIZE and _HASH applied."""
    url, size, digest = (os.environ.get(f"DOGGAN_{key}_{part}", "") for part in ("URL", "SIZE", "HASH"))
    if url and url != spec.url:
        spec = Spec(spec.name, url)
    if size and not size.isdigit():
        raise DogganError(f"DOGGAN_{key}_SIZE: expected a number of bytes, got {size!r}")
    if digest and not re.fullmatch(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{64}", digest):
        raise DogganError(f"DOGGAN_{key}_HASH: expected a sha256 (64 hex digits) or md5 (32), got {digest!r}")
    return replace(spec, size=int(size) if size else spec.size, digest=digest.lower() or spec.digest)


def inception() -> Spec:
    """Kaggle's public-leaderboard graph, as overridden by DOGGAN_INCEPTION_*."""
    return configured("INCEPTION", INCEPTION)


def keras_weights(name: str) -> Spec:
    """Keras' ImageNet file for `keras_imagenet` or `nasnet` (the latter overridden by DOGGAN_NASNET_*)."""
    return configured("NASNET", KERAS[name]) if name == "nasnet" else KERAS[name]


def problem(path: Path, spec: Spec) -> str | None:
    """Why the file at `path` is not the one `spec` pins (size, checksum), or None when it is."""
    size = path.stat().st_size
    if spec.size and size != spec.size:
        return f"{size} bytes where {spec.size} were expected"
    algorithm = "md5" if len(spec.digest) == 32 else "sha256"
    if spec.digest and (found := digest(path, algorithm)) != spec.digest:
        return f"checksum {found} where {spec.digest} was expected"
    return None


def _reason(exc: Exception) -> str:
    """The useful end of a requests error ('[Errno 111] Connection refused'), else its type and text."""
    errno = re.search(r"\[Errno -?\d+\][^'\")]*", str(exc))
    return errno.group(0).strip() if errno else f"{type(exc).__name__}: {str(exc)[:200]}"


def _stream(response, out, spec: Spec, expected: int) -> int:
    """Copy the response body into `out` with a progress bar; the number of bytes received."""
    received = 0
    with tqdm(total=expected or None, unit="B", unit_scale=True, desc=spec.name, mininterval=1.0) as bar:
        try:
            for block in response.iter_content(CHUNK):
                out.write(block)
                received += len(block)
                bar.update(len(block))
        except requests.RequestException as exc:
            raise WeightsUnavailable(f"{spec.url}: download broke off ({_reason(exc)}); removed") from None
    return received


def _download(spec: Spec, target: Path) -> None:
    """Stream `spec.url` into `target`; nothing takes its name unless it is whole and the pinned file."""
    try:
        response = requests.get(spec.url, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    except requests.RequestException as exc:
        raise WeightsUnavailable(f"{spec.url}: cannot download ({_reason(exc)})") from None
    with response:
        if not response.ok:
            raise WeightsUnavailable(f"{spec.url}: cannot download (HTTP {response.status_code})")
        expected = int(response.headers.get("Content-Length") or 0)
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as out:
                received = _stream(response, out, spec, expected)
            if expected and received != expected:
                raise WeightsUnavailable(f"{spec.url}: truncated, {received} of {expected} bytes; removed")
            if why := problem(tmp, spec):
                raise WeightsUnavailable(f"{spec.url}: {why}; the download was removed")


def fetch(spec: Spec, folder: Path | None = None) -> Located:
    """`spec`'s file in `folder` (doggan's cache by default), downloaded if missing or not the pinned one."""
    target = Path(folder or cache_dir()) / spec.name
    if target.is_file():
        why = problem(target, spec)
        if why is None:
            return Located(str(target), "cache", spec.url)
        log.warning("%s: %s; downloading it again", target, why)
    log.info("downloading %s into %s", spec.url, target.parent)
    try:
        _download(spec, target)
    except OSError as exc:
        raise WeightsUnavailable(
            f"{target.parent}: cannot write the weights cache ({exc}); set DOGGAN_CACHE to a writable folder"
        ) from None
    if not spec.digest:
        log.info("%s: sha256 %s (not pinned)", target, digest(target))
    return Located(str(target), "url", spec.url)


def prefetch(private: bool = False) -> list[Located]:
    """What `doggan weights` fetches ahead of time: Kaggle's public graph, and NASNet-Large with `private`."""
    located = [fetch(inception())]
    if private:
        located.append(fetch(keras_weights("nasnet"), keras_cache()))
    return located
