"""The Kaggle kernel folder `kaggle kernels push` reads, and the wheels dataset its notebook installs from.

Generative Dog Images was a code competition: Kaggle scored the `images.zip` a notebook wrote in its own
session, not an uploaded file. `write_kernel` writes that notebook (doggan.output.notebook) with the
params chosen here, and `kernel-metadata.json` attaching the competition's data, the wheels dataset and,
if named, a dataset holding Kaggle's Inception graph. `build_wheels` makes the wheels dataset.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.parser import Parser
from importlib.util import find_spec
from pathlib import Path

from doggan.errors import DogganError
from doggan.files import atomic_path, write_json

log = logging.getLogger("doggan")

COMPETITION = "generative-dog-images"
NOTEBOOK = "doggan.ipynb"
KAGGLE_LIMIT_MIN = 540  # a notebook session of the competition: 9 hours
RESERVE_MIN = 45  # after training: the submission, the evaluation, copying the outputs, and a margin
# doggan's requirements that Kaggle's Python image lacks. The image (Kaggle/docker-python) ships
# TensorFlow, Keras, NumPy, SciPy, Pillow, OpenCV, lxml, pydantic, tqdm, requests and the kaggle client;
# of the rest, these are what the stages import (ruamel.yaml for params, dvclive in train, which needs
# dvc). `--add NAME` adds more, e.g. tensorflow if the image's is outside doggan's range.
KAGGLE_LACKS = ("ruamel.yaml", "dvc", "dvclive")
# Other distributions that provide the same module as one doggan names.
ALTERNATIVES = {"opencv-python-headless": ("opencv-python", "opencv-contrib-python")}
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"  # binary wheels built here install on this one
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{3,48}[a-z0-9]")


@dataclass(frozen=True)
class Kernel:
    """What `doggan kernel` writes: whose notebook, which sources, which params, what clock."""

    owner: str
    slug: str = "doggan"
    title: str = ""
    params: Path = Path("params.yaml")
    overrides: tuple[str, ...] = ()
    wheels_dataset: str = ""  # OWNER/SLUG; default <owner>/doggan-wheels
    inception_dataset: str = ""  # OWNER/SLUG of a dataset holding classify_image_graph_def.pb or its .tgz
    internet: bool = False
    private: bool = True
    limit_min: float = KAGGLE_LIMIT_MIN
    reserve_min: float = RESERVE_MIN

    @property
    def id(self) -> str:
        return f"{self.owner}/{self.slug}"

    @property
    def wheels(self) -> str:
        return self.wheels_dataset or f"{self.owner}/doggan-wheels"


def _dataset(ref: str, option: str) -> str:
    if not re.fullmatch(r"[^/\s]+/[^/\s]+", ref):
        raise DogganError(f"{option} {ref!r}: expected a Kaggle dataset as OWNER/SLUG")
    return ref.split("/")[1]


def metadata(kernel: Kernel) -> dict:
    """kernel-metadata.json: every field `kaggle kernels push` reads, with the types it expects."""
    if not SLUG.fullmatch(kernel.slug):
        raise DogganError(f"--slug {kernel.slug!r}: 5-50 lowercase letters, digits and dashes")
    title = kernel.title or kernel.slug
    from slugify import slugify  # the kaggle client's own, a dependency of it

    if slugify(title) != kernel.slug:
        raise DogganError(f"--title {title!r} does not make the slug {kernel.slug!r} Kaggle would give it")
    datasets = [kernel.wheels, *([kernel.inception_dataset] if kernel.inception_dataset else [])]
    return {
        "id": kernel.id,
        "title": title,
        "code_file": NOTEBOOK,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": kernel.private,
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": kernel.internet,
        "dataset_sources": datasets,
        "competition_sources": [COMPETITION],
        "kernel_sources": [],
        "model_sources": [],
    }


def _override(params: dict, text: str) -> None:
    """Apply one `-S section.key=value` (the value read as YAML, as `dvc exp run -S` does)."""
    from ruamel.yaml import YAML

    key, sep, value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise DogganError(f"-S {text!r}: expected section.key=value, e.g. train.epochs=130")
    section = params.setdefault(parts[0], {})
    section[parts[1]] = YAML(typ="safe").load(value) if value.strip() else ""


def kernel_params(kernel: Kernel) -> str:
    """The params file the notebook runs with, as YAML (comments kept): the chosen file and overrides,
    the competition's mounted data as source, checked as the stages will check it."""
    from ruamel.yaml import YAML

    from doggan import params as params_lib

    if not kernel.params.is_file():
        raise DogganError(f"{kernel.params}: params file not found")
    yaml = YAML()
    params = yaml.load(kernel.params.read_text()) or {}
    for text in kernel.overrides:
        _override(params, text)
    params.setdefault("data", {}).update(source="local", path=f"/kaggle/input/{COMPETITION}")
    params.setdefault("eval", {})["inception_graph"] = ""  # the notebook points it into the dataset
    params.setdefault("train", {})
    text = _dump(yaml, params)
    checked = params_lib.parse(YAML(typ="safe").load(text), f"{kernel.params} with the notebook's values")
    _check_weights(checked, kernel)
    return text


def _dump(yaml, data) -> str:
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    return buffer.getvalue()


def _check_weights(p, kernel: Kernel) -> None:
    """A backbone whose weights the enclosed notebook could not fetch stops here, not after 8 hours."""
    backbone = p.eval.backbone
    if backbone == "auto" and not (kernel.internet or kernel.inception_dataset):
        log.warning(
            "eval.backbone auto without Kaggle's graph attached: the notebook's MiFID is the stand-in's"
        )
    if (
        kernel.internet
        or backbone in ("auto", "standin")
        or (backbone == "tf2015" and kernel.inception_dataset)
    ):
        return
    what = "Kaggle's Inception graph" if backbone == "tf2015" else "its Keras weights"
    raise DogganError(
        f"eval.backbone {backbone} needs {what}, which a notebook without internet cannot download: "
        "attach Kaggle's graph with --inception-dataset OWNER/SLUG (tf2015), allow --internet, "
        "or use eval.backbone auto"
    )


def write_kernel(folder: str | Path, kernel: Kernel) -> Path:
    """Write kernel-metadata.json and the notebook into `folder`; returns the notebook's path."""
    import nbformat

    from doggan import __version__
    from doggan.output import notebook

    if kernel.reserve_min >= kernel.limit_min:
        raise DogganError(
            f"--reserve-min {kernel.reserve_min} leaves no time to train in --limit-min {kernel.limit_min}"
        )
    folder = Path(folder)
    meta = metadata(kernel)
    inception = kernel.inception_dataset
    settings = {
        "COMPETITION": COMPETITION,
        "WHEELS_DATASET": _dataset(kernel.wheels, "--wheels-dataset"),
        "INCEPTION_DATASET": _dataset(inception, "--inception-dataset") if inception else "",
        "LIMIT_MIN": kernel.limit_min,
        "RESERVE_MIN": kernel.reserve_min,
    }
    built = notebook.build(settings, kernel_params(kernel), f"{meta['title']} (doggan {__version__})")
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / NOTEBOOK) as tmp:
        nbformat.write(built, str(tmp))
    write_json(folder / "kernel-metadata.json", meta, sort_keys=False)
    return folder / NOTEBOOK


# --- the wheels dataset -------------------------------------------------------------------------------


def project_root() -> Path:
    """The source checkout doggan runs from (its wheel is built from it)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "pyproject.toml").is_file() or not (root / "src" / "doggan").is_dir():
        raise DogganError(
            f"{root}: not a doggan source checkout; build the wheels from a clone installed with "
            "`pip install -e .`"
        )
    return root


def _pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if result.returncode:
        raise DogganError(f"pip {args[0]} failed:\n{(result.stdout + result.stderr)[-3000:]}")


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalised as pip compares them."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0]).lower()


def wheel_requirements(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's metadata, without those of extras."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(name).decode())
    return [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]


def kaggle_requirements(ours: Iterable[str], add: Iterable[str] = ()) -> list[str]:
    """What the notebook installs beside doggan: KAGGLE_LACKS and `add`, with doggan's version range
    where doggan names the package (`ours`, its Requires-Dist), else as given."""
    ranges = {_name(r): r.split(";")[0].strip() for r in ours}
    return sorted({ranges.get(_name(n), n.strip()) for n in (*KAGGLE_LACKS, *add)})


def build_wheels(out: str | Path, dataset: str, add: Iterable[str] = (), deps: bool = True) -> list[str]:
    """The wheels dataset in `out`: doggan's own wheel, and unless `deps` is False those of what Kaggle's
    image lacks (KAGGLE_LACKS and `add`) with their own dependencies; requirements.txt naming what the
    notebook installs beside doggan, python.txt the Python they are built for (binary wheels fit one),
    and dataset-metadata.json for `kaggle datasets create`."""
    out = Path(out)
    slug = _dataset(dataset, "--wheels-dataset")
    root = project_root()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("doggan-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:  # a copy, so the build leaves nothing in the checkout
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(root / name, tmp)
        shutil.copytree(
            root / "src", Path(tmp, "src"), ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
        isolation = ["--no-build-isolation"] if find_spec("setuptools") and find_spec("wheel") else []
        _pip("wheel", "--no-deps", *isolation, "--wheel-dir", str(out), tmp)
    ours = wheel_requirements(next(out.glob("doggan-*.whl")))
    requirements = kaggle_requirements(ours, add) if deps else []
    with atomic_path(out / "requirements.txt") as tmp:
        tmp.write_text("".join(f"{r}\n" for r in requirements))
    with atomic_path(out / "python.txt") as tmp:  # the notebook warns when its Python is another
        tmp.write_text(f"{PYTHON}\n")
    if requirements:
        log.info("wheels of %s and their dependencies into %s", ", ".join(requirements), out)
        _pip("wheel", "--wheel-dir", str(out), "-r", str(out / "requirements.txt"))
    description = (
        "Wheels the doggan notebook installs without internet: doggan and what Kaggle's image lacks "
        f"({', '.join(requirements) or 'nothing else'}), built for Python {PYTHON}. "
        "Each wheel keeps its own license."
    )
    meta = {
        "title": "doggan wheels",
        "id": f"{dataset.split('/')[0]}/{slug}",
        "licenses": [{"name": "other"}],
    }
    write_json(out / "dataset-metadata.json", {**meta, "description": description}, sort_keys=False)
    return sorted(p.name for p in out.glob("*.whl"))


def unmet(requirements: Iterable[str], installed: Callable[[str], str | None]) -> list[str]:
    """The requirements that `installed` (a distribution's version, or None) does not meet, as messages."""
    from packaging.requirements import Requirement

    problems = []
    for line in requirements:
        req = Requirement(line)
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        found = next(
            (v for n in (req.name, *ALTERNATIVES.get(req.name, ())) if (v := installed(n)) is not None), None
        )
        if found is None or not req.specifier.contains(found, prereleases=True):
            problems.append(
                f"{req} wanted, {found or 'none'} installed; if doggan fails for it, add it to the wheels "
                f"dataset: doggan kernel --wheels DIR --add {req.name}"
            )
    return problems


def unmet_requirements() -> list[str]:
    """doggan's requirements that this Python's packages do not meet (the notebook prints them)."""
    from importlib import metadata as md

    def installed(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    return unmet(md.requires("doggan") or [], installed)
