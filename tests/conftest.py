import functools
import io
import os
import re
import socket
import warnings
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# DVC's command line reports each command's usage from a background process it starts (a Python start and
# a network attempt per `dvc` call): the tests' dvc commands, and those of the processes they start, send
# nothing.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from doggan.output.submission import N_IMAGES  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))
SQUARES = (16, 16, 3)
KAGGLE_KEY = "0123456789abcdef0123456789abcdef"


def script_env(**extra) -> dict:
    """The environment for a test file run as a script: this folder on the path, for `conftest`."""
    path = os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, **extra)


def start_mode(script, mode: str, out):
    """Start a test file as a script in a fresh process, `python script mode out` (how the tests that split
    the CPU into logical devices run, as TensorFlow must not be initialised first); `finish_mode` waits."""
    import subprocess
    import sys
    import tempfile

    # A file, not a pipe, so processes run side by side never block; finish_mode closes it.
    output = tempfile.TemporaryFile("w+")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, str(script), mode, str(out)],
        env=script_env(),
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )
    process.output = output
    return process


def finish_mode(process, timeout: float = 240) -> None:
    """Wait for a `start_mode` process; fails with its output when it does."""
    with process.output as output:
        process.wait(timeout=timeout)
        output.seek(0)
        assert process.returncode == 0, output.read()[-6000:]


def run_mode(script, mode: str, out, timeout: float = 240) -> None:
    """Run `python script mode out` (`start_mode`) to its end; fails with its output when it does."""
    finish_mode(start_mode(script, mode, out), timeout)


def descendants(pid: int) -> set[int]:
    """Every live descendant of `pid` (read while it is alive: orphans are re-parented)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = {int(k) for k in (task / "children").read_text().split()}
        except OSError:
            continue
        for kid in kids - found:
            found |= {kid} | descendants(kid)
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited orphan the container's init may never reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """An empty doggan cache and Kaggle's graph at a closed port: `eval.backbone: auto` finds no graph
    to download, so no test reaches the network, online or not."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("DOGGAN_CACHE", str(tmp_path / "doggan_cache"))
    monkeypatch.setenv("DOGGAN_INCEPTION_URL", f"http://127.0.0.1:{port}/inception-2015-12-05.tgz")


def prepare(root, side=8):
    """A crops file of 32 coloured squares (side×side×3, two breeds) in `root`, and the policy augment
    writes for it. 8 px, the smallest side the dcgan networks draw, traces fewer blocks than larger ones."""
    from doggan.crops.file import Crops, save_crops
    from doggan.params import AugmentParams
    from doggan.training.policy import augment_stage

    rng = np.random.default_rng(0)
    images = np.zeros((32, side, side, 3), np.uint8)
    half = side // 2
    for image in images:
        y, x = rng.integers(0, half, 2)
        image[y : y + half, x : x + half] = rng.integers(100, 256, 3)
    save_crops(
        root / "crops.npz",
        Crops(images, np.arange(32, dtype=np.int32) % 2, np.arange(32).astype(str), np.array(["a", "b"])),
    )
    augment_stage(root / "crops.npz", AugmentParams(preview=4), root / "policy.json", root / "aug.png")
    return root


@pytest.fixture
def prepared(tmp_path):
    """`prepare`d 8-px crops and policy in tmp_path."""
    return prepare(tmp_path)


TINY = dict(batch_size=8, z_dim=8, g_filters=16, d_filters=8)


def tiny_params(**overrides):
    """TrainParams of tiny networks and batches (seconds per run on a CPU), with `overrides`."""
    from doggan.params import TrainParams

    return TrainParams(**{**TINY, **overrides})


def train_paths(root, stats="missing_stats.npz"):
    """The train stage's paths on a `prepared` folder: outputs under its out/, real statistics `stats`."""
    from doggan.training.paths import TrainPaths

    out = root / "out"
    return TrainPaths(
        crops=root / "crops.npz",
        policy=root / "policy.json",
        real_stats=root / stats,
        models=out / "models",
        checkpoints=out / "ckpt",
        live=out / "live",
        plots=out / "plots",
    )


@pytest.fixture
def run_train():
    """Run the train stage on a `prepared` folder, writing under its out/; returns (out, summary).

    `stats` names the real-statistics file in that folder (absent by default: no MiFID during training).
    """
    from doggan.params import EvalParams
    from doggan.training import loop

    def run(root, params, eval_params=None, stats="missing_stats.npz"):
        summary = loop.train_stage(train_paths(root, stats), params, eval_params or EvalParams())
        return root / "out", summary

    return run


def save_generator(model_dir, side=64, z_dim=8, claimed_side=None):
    """A tiny real generator (Dense → Reshape → tanh) of `side`-px images, saved in the pipeline's format
    with metadata claiming `claimed_side` (default: `side`); returns the folder."""
    import keras

    from doggan.output.sampling import Generator, write_meta

    keras.utils.set_random_seed(0)
    z = keras.Input((z_dim,))
    x = keras.layers.Reshape((side, side, 3))(keras.layers.Dense(side * side * 3)(z))
    model_dir.mkdir(parents=True, exist_ok=True)
    keras.Model(z, keras.layers.Activation("tanh")(x)).save(model_dir / "generator.keras")
    claimed = claimed_side or side
    write_meta(model_dir, Generator(model=None, z_dim=z_dim, image_shape=(claimed, claimed, 3)))
    return model_dir


# --- submission zips ------------------------------------------------------------------------------------


@functools.cache
def _png(size=(64, 64), mode="RGB", seed=0) -> bytes:
    """A small real PNG: a smooth gradient with a little noise, so it compresses but is not flat."""
    w, h = size
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(h), np.arange(w)) * 2 + rng.integers(0, 4, (h, w))
    rgb = np.stack([ramp, ramp[::-1], np.full((h, w), 90)], -1).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _encode(image) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_zip(path, images=N_IMAGES, odd=None, extra=()):
    """A real zip of PNGs named 0.png, 1.png …: `images` copies of one 64×64 RGB PNG, or the PNGs of
    an array of uint8 images; `odd` maps a name to other bytes; `extra` (name, bytes) entries follow,
    a name ending in '/' being a folder."""
    if isinstance(images, int):
        entries = [(f"{i}.png", _png()) for i in range(images)]
    else:
        entries = [(f"{i}.png", _encode(image)) for i, image in enumerate(images)]
    odd = odd or {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names, on purpose
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in [*entries, *extra]:
                zf.writestr(name, odd.get(name, data))
    return path


@pytest.fixture(scope="session")
def png():
    """`png(size=(64, 64), mode="RGB", seed=0)`: the bytes of a small real PNG."""
    return _png


@pytest.fixture(scope="session")
def png_zip():
    """`png_zip(path, images=10_000, odd={name: bytes}, extra=[(name, bytes)])`: see `_png_zip`."""
    return _png_zip


@pytest.fixture(scope="session")
def good_zip(tmp_path_factory):
    """A valid submission, built once: 10,000 64×64 RGB PNGs at the root of submission/images.zip."""
    return _png_zip(tmp_path_factory.mktemp("good") / "submission" / "images.zip")


# --- Kaggle credentials ---------------------------------------------------------------------------------


@pytest.fixture
def kaggle_home(tmp_path, monkeypatch):
    """An empty home folder and no Kaggle variables in the environment: no Kaggle credentials anywhere."""
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture(scope="session")
def kaggle_key():
    """A made-up Kaggle API key, for the checks that no message shows it."""
    return KAGGLE_KEY


@pytest.fixture(scope="session")
def explains_kaggle_setup():
    """`check(text)`: a message about missing credentials says where to put them, and shows no key."""

    def check(text):
        assert "Kaggle credentials not found" in text, text
        assert re.search(r"~/\.kaggle/kaggle\.json \(chmod 600\).*KAGGLE_USERNAME", text), text
        assert KAGGLE_KEY not in text

    return check
