"""Render the README's sample grid of each preset (docs/presets/<preset>.png) with the real pipeline.

Each preset runs download → crop → augment → train through `doggan.cli`, in a fresh working folder
under a temp dir, with the project's params.yaml as the base and only the preset, a short number of
epochs and the data source changed (as `dvc exp run -S ...` would). Then the top-left corner of
`plots/train/samples.png` becomes the preset's image. The repository itself is never written to,
except docs/presets.

Nothing here is downloaded, so the data is made on the spot: the MNIST presets read a synthetic
MNIST-like set (digits drawn with PIL's bundled font at random sizes, slants, rotations, stroke widths
and positions), written as `mnist.npz` in the Keras cache format into a temp $KERAS_HOME so the real
`mnist` source reads it; dcgan-faces reads the embedded sample's cartoon dog photos as a `folder`
source (a zip of photos), for lack of faces; the dog presets and default read the embedded sample.
These are short CPU runs (about 13 minutes for all six on 2 cores), not converged results.

    .venv/bin/python docs/preset_grids.py [preset ...]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported: quiet
os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the CPU, as on the machines these grids were made on

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from ruamel.yaml import YAML  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "presets"
# Per preset: epochs, and the data overrides (`folder` is filled in with the sample's zip at run time).
RUNS: dict[str, tuple[int, dict[str, object]]] = {
    "default": (25, {"source": "sample"}),
    "mlp-mnist": (10, {}),
    "dcgan-mnist": (2, {}),
    "dcgan-faces": (5, {"source": "folder", "sample_images": 1000}),
    "dcgan-dogs": (10, {"source": "sample"}),
    "cdcgan-dogs": (20, {"source": "sample"}),
    "biggan-dogs": (20, {"source": "sample"}),
}
MNIST_IMAGES = 4000
SEED = 0
MAX_BYTES = 100_000


def draw_digit(rng: np.random.Generator, font_size: int, digit: int) -> np.ndarray:
    """One 28×28 white-on-black digit, fitted into 20×20 and centred by its centre of mass as in MNIST."""
    canvas = Image.new("L", (96, 96), 0)
    font = ImageFont.load_default(size=font_size)
    stroke = int(rng.integers(0, 3))
    ImageDraw.Draw(canvas).text(
        (48, 48), str(digit), fill=255, font=font, anchor="mm", stroke_width=stroke, stroke_fill=255
    )
    shear = rng.uniform(-0.35, 0.2)  # a slant, mostly to the right as in handwriting
    canvas = canvas.transform(canvas.size, Image.AFFINE, (1, shear, -shear * 48, 0, 1, 0), Image.BILINEAR)
    canvas = canvas.rotate(rng.uniform(-15, 15), Image.BILINEAR)
    box = canvas.getbbox()
    digit_image = canvas.crop(box)
    scale = 20 / max(digit_image.size) * rng.uniform(0.8, 1.0)
    size = (max(1, round(digit_image.width * scale)), max(1, round(digit_image.height * scale)))
    small = np.asarray(digit_image.resize(size, Image.LANCZOS), np.float64)
    out = np.zeros((28, 28))
    ys, xs = np.indices(small.shape)
    mass = small.sum() or 1.0
    cy, cx = (ys * small).sum() / mass, (xs * small).sum() / mass
    top = int(np.clip(round(14 - cy + rng.normal(0, 1)), 0, 28 - size[1]))
    left = int(np.clip(round(14 - cx + rng.normal(0, 1)), 0, 28 - size[0]))
    out[top : top + size[1], left : left + size[0]] = small
    return np.clip(out * rng.uniform(1.0, 1.3), 0, 255).astype(np.uint8)


def write_mnist(keras_home: Path) -> None:
    """A synthetic MNIST-like set as `<keras_home>/datasets/mnist.npz`, in the real file's format."""
    rng = np.random.default_rng(SEED)
    labels = rng.integers(0, 10, MNIST_IMAGES).astype(np.uint8)
    images = np.stack([draw_digit(rng, int(rng.integers(28, 48)), int(d)) for d in labels])
    n_test = MNIST_IMAGES // 10
    (keras_home / "datasets").mkdir(parents=True, exist_ok=True)
    np.savez(
        keras_home / "datasets" / "mnist.npz",
        x_train=images[n_test:],
        y_train=labels[n_test:],
        x_test=images[:n_test],
        y_test=labels[:n_test],
    )


def write_params(path: Path, preset: str, epochs: int, data: dict[str, object]) -> None:
    """params.yaml of the project with the preset, its epochs and data source set, previews small."""
    yaml = YAML(typ="safe")
    params = yaml.load((ROOT / "params.yaml").read_text())
    params["train"].update(preset=preset, epochs=epochs, sample_every=epochs)
    params["data"].update(data)
    params["crop"]["preview"] = params["augment"]["preview"] = 16
    with path.open("w") as f:
        yaml.dump(params, f)


def corner(samples: Path, tile: int) -> Image.Image:
    """The top-left samples of a training grid (8×8, 2-pixel padding, drawn at scale 2): 6×6 of the small
    images, 4×4 of the 64×64 ones."""
    image = Image.open(samples)
    scale = image.width // (8 * (tile + 2) + 2)
    side = ((6 if tile < 64 else 4) * (tile + 2) + 2) * scale
    return image.crop((0, 0, side, side))


def small_png(image: Image.Image) -> bytes:
    """PNG bytes of the grid as drawn, else at its native scale (undoing the 2× nearest-neighbour
    enlargement loses nothing), else that with a 256-colour palette: the first under MAX_BYTES."""
    native = image.resize((image.width // 2, image.height // 2), Image.NEAREST)
    for candidate in (image, native, native.quantize(256)):
        buffer = io.BytesIO()
        candidate.save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= MAX_BYTES:
            break
    return buffer.getvalue()


def run_preset(preset: str, work: Path) -> float:
    """The preset's pipeline in `work`; its grid written to docs/presets. Returns seconds taken."""
    from doggan import cli, params
    from doggan.data.sample import write_sample

    epochs, data = RUNS[preset]
    data = dict(data)
    work.mkdir(parents=True)
    if data.get("source") == "folder":
        write_sample(work / "photos", int(data.pop("sample_images")), SEED)
        data["folder"] = str(work / "photos" / "all-dogs.zip")
    write_params(work / "params.yaml", preset, epochs, data)
    began, previous = time.perf_counter(), Path.cwd()
    os.chdir(work)
    try:
        for stage in ("download", "crop", "augment", "train"):
            if cli.main([stage, "--params", "params.yaml"]):
                raise SystemExit(f"{preset}: stage {stage} failed")
    finally:
        os.chdir(previous)
    tile = params.load(work / "params.yaml").crop.size
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{preset}.png").write_bytes(small_png(corner(work / "plots" / "train" / "samples.png", tile)))
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "presets", nargs="*", metavar="preset", help=f"some of {', '.join(RUNS)} (default: all)"
    )
    args = parser.parse_args()
    unknown = sorted(set(args.presets) - set(RUNS))
    if unknown:
        parser.error(f"not a preset: {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="doggan-presets-") as tmp:
        os.environ["KERAS_HOME"] = str(Path(tmp) / "keras")
        write_mnist(Path(tmp) / "keras")
        took = {preset: run_preset(preset, Path(tmp) / preset) for preset in args.presets or RUNS}
    for preset, seconds in took.items():
        print(f"{preset}: {seconds:.0f} s, {RUNS[preset][0]} epochs -> {OUT / preset}.png")
    print(f"total: {sum(took.values()):.0f} s")


if __name__ == "__main__":
    main()
