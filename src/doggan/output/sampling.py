"""Load a trained generator and draw uint8 images from it in large batches.

The train stage writes `generator.keras` (the EMA weights when EMA is on) beside `generator.json`,
which records how to feed it: noise size and distribution, classes, their proportions and names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from doggan.errors import HandOverError

STAGE = "train"  # the stage that writes the generator and its metadata
GENERATOR_FILE = "generator.keras"
META_FILE = "generator.json"


@dataclass(frozen=True)
class Generator:
    model: object
    z_dim: int
    noise: str = "normal"
    n_classes: int = 0
    class_probs: tuple[float, ...] = ()
    image_shape: tuple[int, int, int] = (64, 64, 3)
    breeds: tuple[str, ...] = ()  # the name of each class of a conditional model, when recorded


def write_meta(model_dir: str | Path, gen: Generator) -> None:
    from doggan.files import write_json

    write_json(
        Path(model_dir) / META_FILE,
        {
            "z_dim": gen.z_dim,
            "noise": gen.noise,
            "n_classes": gen.n_classes,
            "class_probs": list(gen.class_probs),
            "image_shape": list(gen.image_shape),
            "breeds": list(gen.breeds),
        },
    )


def load_generator(model_dir: str | Path) -> Generator:
    """Load `generator.keras` and its metadata from a model folder, checked: a missing file is a
    FileNotFoundError; a truncated, corrupted or mismatched pair is an error saying how to remake it."""
    import keras

    import doggan.networks  # noqa: F401  (registers the custom layers the saved model uses)

    model_dir = Path(model_dir)
    model_path, meta_path = model_dir / GENERATOR_FILE, model_dir / META_FILE
    for path in (model_path, meta_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no trained generator here (run the train stage)")
    gen = _read_meta(meta_path)
    try:
        model = keras.models.load_model(model_path, compile=False)
    except Exception as exc:  # zip, h5 and deserialization errors of a damaged file
        problem = f"not a loadable Keras model, truncated or corrupted ({type(exc).__name__}: {exc})"
        raise HandOverError(model_path, problem, STAGE) from None
    inputs = [tuple(t.shape[1:]) for t in model.inputs]
    expected = [(gen.z_dim,), ()] if gen.n_classes else [(gen.z_dim,)]
    if inputs != expected or tuple(model.output_shape[1:]) != gen.image_shape:
        problem = (
            f"takes {inputs} and draws {tuple(model.output_shape[1:])}, but {meta_path.name} says "
            f"{expected} and {gen.image_shape}"
        )
        raise HandOverError(model_path, problem, STAGE)
    return replace(gen, model=model)


def _read_meta(meta_path: Path) -> Generator:
    """The metadata `write_meta` wrote, checked for its keys and types."""
    try:
        meta = json.loads(meta_path.read_text())
        gen = Generator(
            model=None,
            z_dim=int(meta["z_dim"]),
            noise=str(meta.get("noise", "normal")),
            n_classes=int(meta.get("n_classes", 0)),
            class_probs=tuple(float(p) for p in meta.get("class_probs", ())),
            image_shape=tuple(int(s) for s in meta.get("image_shape", (64, 64, 3))),
            breeds=tuple(str(b) for b in meta.get("breeds", ())),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        problem = f"not generator metadata, truncated or altered ({type(exc).__name__}: {exc})"
        raise HandOverError(meta_path, problem, STAGE) from None
    if gen.noise not in ("normal", "uniform") or len(gen.image_shape) != 3 or gen.z_dim < 1:
        raise HandOverError(meta_path, "noise, z_dim or image_shape out of range", STAGE)
    if gen.n_classes and len(gen.class_probs) != gen.n_classes:
        problem = f"{len(gen.class_probs)} class proportions for {gen.n_classes} classes"
        raise HandOverError(meta_path, problem, STAGE)
    return gen


def sample_noise(
    rng: np.random.Generator, n: int, z_dim: int, noise: str = "normal", truncation: float = 0.0
) -> np.ndarray:
    """Draw generator inputs; truncation > 0 redraws normal values beyond ±truncation (BigGAN's trick)."""
    if noise == "uniform":
        return rng.uniform(-1.0, 1.0, (n, z_dim)).astype(np.float32)
    z = rng.standard_normal((n, z_dim))
    if truncation > 0:
        outside = np.abs(z) > truncation
        while outside.any():
            z[outside] = rng.standard_normal(int(outside.sum()))
            outside = np.abs(z) > truncation
    return z.astype(np.float32)


def sample_labels(rng: np.random.Generator, n: int, class_probs: tuple[float, ...]) -> np.ndarray:
    """Class labels drawn in the training set's proportions."""
    probs = np.asarray(class_probs, np.float64)
    return rng.choice(len(probs), size=n, p=probs / probs.sum()).astype(np.int32)


def sampler(gen: Generator):
    """The generator as one graph from a batch of inputs to uint8 images, traced once for every batch
    size (a fixed signature with the batch left open), the [-1, 1] to uint8 mapping inside it."""
    import tensorflow as tf

    specs = [tf.TensorSpec((None, gen.z_dim), tf.float32)]
    if gen.n_classes:
        specs.append(tf.TensorSpec((None,), tf.int32))

    @tf.function(input_signature=specs)
    def forward(*inputs):
        images = gen.model(list(inputs) if gen.n_classes else inputs[0], training=False)
        scaled = tf.round((tf.cast(images, tf.float32) + 1.0) * 127.5)  # as grids.to_uint8: half to even
        return tf.cast(tf.clip_by_value(scaled, 0.0, 255.0), tf.uint8)

    return forward


def generate(
    gen: Generator, n: int, seed: int = 0, batch_size: int = 500, truncation: float = 0.0
) -> Iterator[np.ndarray]:
    """Yield uint8 image batches (B, H, W, C) until `n` images are drawn; deterministic for a seed."""
    forward = sampler(gen)
    rng = np.random.default_rng(seed)
    done = 0
    while done < n:
        b = min(batch_size, n - done)
        z = sample_noise(rng, b, gen.z_dim, gen.noise, truncation)
        inputs = (z, sample_labels(rng, b, gen.class_probs)) if gen.n_classes else (z,)
        yield forward(*inputs).numpy()
        done += b


def render(
    gen: Generator, z: np.ndarray, labels: np.ndarray | None = None, batch_size: int = 500
) -> Iterator[np.ndarray]:
    """Yield the uint8 images of given noise (and labels, for a conditional model), `batch_size` at a time."""
    forward = sampler(gen)
    z = np.asarray(z, np.float32)
    labels = np.asarray(labels, np.int32) if gen.n_classes else None
    for start in range(0, len(z), batch_size):
        inputs = (z[start : start + batch_size],)
        if gen.n_classes:
            inputs += (labels[start : start + batch_size],)
        yield forward(*inputs).numpy()
