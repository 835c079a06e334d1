"""Data already on this machine: a folder of any images, or the dog data where a notebook host mounts it.

The `local` source reads, from a folder that may be a read-only mount, the competition's
`all-dogs.zip` and `Annotation.zip`, their extracted `all-dogs/` and `Annotation/` folders (at any
depth, as Kaggle mounts them: `.../all-dogs/all-dogs/*.jpg`), or Stanford Dogs' `Images/<breed>/`
and `Annotation/<breed>/` folders, and writes them into `data/raw` in the competition's layout.
Nothing is ever written under that folder: zips are copied (a hard link would share the file's
mode with the DVC cache, which makes its files read-only), folders are zipped into `data/raw`.
"""

from __future__ import annotations

import logging
import os
import shutil
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from doggan.data.archives import is_image_name, is_intact, open_zip, safe_members, write_member
from doggan.errors import DogganError
from doggan.files import atomic_path

log = logging.getLogger("doggan")
ZIPS = {"all-dogs.zip": "all-dogs", "Annotation.zip": "Annotation"}
LAYOUTS = (
    "the competition's all-dogs.zip and Annotation.zip, their extracted all-dogs/ and Annotation/ "
    "folders (at any depth), or Stanford Dogs' images/Images/<breed>/ and annotations/Annotation/<breed>/"
)


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


@dataclass
class Found:
    """What a scan of `data.path` saw: zips by name, and folders by kind with their file counts."""

    zips: dict[str, list[Path]] = field(default_factory=lambda: {name: [] for name in ZIPS})
    photos: Counter = field(default_factory=Counter)  # all-dogs folders: photos directly inside
    stanford: Counter = field(default_factory=Counter)  # Images folders: photos in breed folders
    notes: Counter = field(default_factory=Counter)  # Annotation folders: files in breed folders

    def describe(self) -> list[str]:
        lines = [f"{name} at {path}" for name, paths in self.zips.items() for path in paths]
        for label, counter in (
            ("all-dogs folder", self.photos),
            ("Stanford Images folder", self.stanford),
            ("Annotation folder", self.notes),
        ):
            lines += [f"{label} {path} ({n} files)" for path, n in sorted(counter.items())]
        return lines


def _visible(name: str) -> bool:
    return not name.startswith(".") and name != "__MACOSX"


def scan(root: Path) -> Found:
    """Walk `root` once (read only), noting the competition zips and the photo and annotation folders."""
    found = Found()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if _visible(d))
        here = Path(folder)
        for name in ZIPS:
            if name in files:
                found.zips[name].append(here / name)
        photos = sum(is_image_name(f) for f in files)
        notes = sum(_visible(f) for f in files)
        if here.name == "all-dogs" and photos:
            found.photos[here] += photos
        if here.parent.name == "Images" and photos:
            found.stanford[here.parent] += photos
        if here.parent.name == "Annotation" and notes:
            found.notes[here.parent] += notes
    return found


def _shallowest(paths) -> Path | None:
    """The candidate nearest to the root (ties by name); the others are reported and left alone."""
    ordered = sorted(paths, key=lambda p: (len(p.parts), str(p)))
    if len(ordered) > 1:
        log.warning(
            "data.path: several candidates, using %s (not %s)", ordered[0], ", ".join(map(str, ordered[1:]))
        )
    return ordered[0] if ordered else None


def _copy_zip(source: Path, target: Path, folder: str) -> None:
    """Copy a competition zip into data/raw; it must hold its folder and pass its CRC checks."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
        if not is_intact(tmp, lambda names: any(folder in PurePosixPath(n).parts[:-1] for n in names)):
            raise DogganError(
                f"{source}: not the competition's {target.name} (no {folder}/ inside, or damaged)"
            )


def _files(folder: Path, keep) -> Iterator[Path]:
    return (p for p in sorted(folder.iterdir()) if p.is_file() and _visible(p.name) and keep(p.name))


def _breeds(folder: Path) -> list[Path]:
    return [d for d in sorted(folder.iterdir()) if d.is_dir() and _visible(d.name)]


def _zip_photos(folder: Path, target: Path, in_breeds: bool) -> None:
    """Photos of an all-dogs folder (flat) or a Stanford Images folder (breed folders) as all-dogs.zip."""
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w") as out:
        for breed in _breeds(folder) if in_breeds else [folder]:
            for path in _files(breed, is_image_name):
                write_member(out, f"all-dogs/{path.stem}.jpg", path.read_bytes())


def _zip_notes(folder: Path, target: Path) -> None:
    """The breed folders of an Annotation folder as Annotation.zip (`Annotation/<breed>/<image_id>`)."""
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w") as out:
        for breed in _breeds(folder):
            for path in _files(breed, lambda _: True):
                name = f"Annotation/{breed.name}/{path.name}"
                write_member(out, name, path.read_bytes(), zipfile.ZIP_DEFLATED)


def refuse_inside(root: Path, raw_dir: Path) -> None:
    """data/raw must not lie under data.path: nothing is ever written there."""
    if Path(raw_dir).resolve().is_relative_to(Path(root).resolve()):
        raise DogganError(
            f"data.path {root}: holds the output folder {raw_dir}; nothing is written under data.path, "
            "so point it at the folder of the data itself"
        )


def _missing(root: Path, found: Found, missing: list[str]) -> DogganError:
    lines = found.describe() or [
        "nothing usable; its entries: " + (", ".join(sorted(p.name for p in root.iterdir())[:12]) or "none")
    ]
    return DogganError(
        f"data.path {root}: incomplete dog data, no {' and no '.join(missing)}.\n  found: "
        + "\n  found: ".join(lines)
        + f"\n  doggan reads {LAYOUTS}"
    )


def write_local(root: Path, raw_dir: Path) -> None:
    """The dog data under `root` (read only) as `raw_dir/all-dogs.zip` and `raw_dir/Annotation.zip`."""
    root = Path(root)
    if not root.is_dir():
        raise DogganError(f"data.path {root}: not a folder (data.source local reads {LAYOUTS})")
    refuse_inside(root, raw_dir)
    found = scan(root)
    photos_zip, notes_zip = (_shallowest(found.zips[name]) for name in ZIPS)
    photos_dir = _shallowest(found.photos) if not photos_zip else None
    stanford_dir = _shallowest(found.stanford) if not (photos_zip or photos_dir) else None
    notes_dir = _shallowest(found.notes) if not notes_zip else None
    missing = []
    if not (photos_zip or photos_dir or stanford_dir):
        missing.append("photos (all-dogs.zip, an all-dogs/ folder of .jpg, or Images/<breed>/)")
    if not (notes_zip or notes_dir):
        missing.append("annotations (Annotation.zip or Annotation/<breed>/<image_id>)")
    if missing:
        raise _missing(root, found, missing)
    if photos_zip:
        _copy_zip(photos_zip, raw_dir / "all-dogs.zip", "all-dogs")
    else:
        _zip_photos(photos_dir or stanford_dir, raw_dir / "all-dogs.zip", in_breeds=not photos_dir)
    if notes_zip:
        _copy_zip(notes_zip, raw_dir / "Annotation.zip", "Annotation")
    else:
        _zip_notes(notes_dir, raw_dir / "Annotation.zip")
    log.info(
        "data.path: photos from %s, annotations from %s",
        photos_zip or photos_dir or stanford_dir,
        notes_zip or notes_dir,
    )
