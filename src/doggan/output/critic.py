"""The trained discriminator as a critic of samples: draw k candidates for each image and keep the one D
scores most real (discriminator rejection, Azadi et al. 2019, in its best-of-k form). At the end of a short
run D still tells G's dogs from its patches of colour, which G alone cannot.

The train stage writes D's weights (`discriminator.weights.h5`) beside what rebuilds it
(`discriminator.json`: the train params, image shape and classes). Weights, not a saved model, because
FastGAN's D is a subclassed model that Keras cannot save whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from doggan.errors import DogganError, HandOverError
from doggan.files import atomic_path, digest, write_json
from doggan.output.sampling import STAGE, Generator, generate, sample_labels, sample_noise, sampler

CRITIC_FILE = "discriminator.weights.h5"
CRITIC_META = "discriminator.json"


def write_critic(model, params, image_shape: tuple[int, ...], n_classes: int, model_dir: Path) -> None:
    """Save D's weights and the train params, image shape and classes that rebuild it, atomically."""
    with atomic_path(Path(model_dir) / CRITIC_FILE, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
        checksum = digest(tmp)
    meta = {"train": params.model_dump(mode="json"), "image_shape": list(image_shape), "n_classes": n_classes}
    write_json(Path(model_dir) / CRITIC_META, {**meta, "sha256": checksum})


def load_critic(model_dir: str | Path, gen: Generator):
    """The discriminator saved beside `gen`, rebuilt and checked: a missing file is a FileNotFoundError;
    a truncated or altered one, or one that does not judge what `gen` draws, an error saying how to
    remake it."""
    from doggan import networks
    from doggan.params import TrainParams

    model_dir = Path(model_dir)
    weights_path, meta_path = model_dir / CRITIC_FILE, model_dir / CRITIC_META
    for path in (weights_path, meta_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no trained discriminator here (run the train stage)")
    try:
        meta = json.loads(meta_path.read_text())
        params = TrainParams.model_validate(meta["train"])
        shape, n_classes = tuple(int(s) for s in meta["image_shape"]), int(meta["n_classes"])
        recorded = str(meta["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        problem = f"not discriminator metadata, truncated or altered ({type(exc).__name__}: {exc})"
        raise HandOverError(meta_path, problem, STAGE) from None
    if shape != gen.image_shape or n_classes != gen.n_classes:
        drawn = f"{gen.image_shape} of {gen.n_classes}"
        problem = f"judges {shape} images of {n_classes} classes; the generator draws {drawn}"
        raise HandOverError(meta_path, problem, STAGE)
    if digest(weights_path) != recorded:
        problem = f"truncated or corrupted: its SHA-256 is not the one {CRITIC_META} records"
        raise HandOverError(weights_path, problem, STAGE)
    model = networks.make_discriminator(params, shape, n_classes)
    score(model, np.zeros((1, *shape), np.uint8), np.zeros(1, np.int32) if n_classes else None)  # builds it
    try:
        model.load_weights(weights_path)
    except Exception as exc:  # h5 and shape errors of a damaged or foreign file
        problem = f"not this discriminator's weights, truncated or corrupted ({type(exc).__name__}: {exc})"
        raise HandOverError(weights_path, problem, STAGE) from None
    return model


def score(critic, images: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """D's logit for uint8 images (as they are saved, mapped back to [-1, 1]), one float per image."""
    x = images.astype(np.float32) / 127.5 - 1.0
    logits = critic([x, labels] if labels is not None else x, training=False)
    return np.asarray(logits, np.float32).reshape(len(images))


def best_of(
    gen: Generator, critic, n: int, k: int, seed: int = 0, batch_size: int = 500, truncation: float = 0.0
) -> Iterator[np.ndarray]:
    """Yield uint8 image batches until `n` are drawn, each image the one of `k` candidates (same class,
    fresh noise) that the critic scores highest; deterministic for a seed."""
    forward = sampler(gen)
    rng = np.random.default_rng(seed)
    done = 0
    while done < n:
        b = min(batch_size, n - done)
        labels = sample_labels(rng, b, gen.class_probs) if gen.n_classes else None
        candidates, scores = [], []
        for _ in range(k):
            z = sample_noise(rng, b, gen.z_dim, gen.noise, truncation)
            images = forward(z, labels).numpy() if labels is not None else forward(z).numpy()
            candidates.append(images)
            scores.append(score(critic, images, labels))
        pick = np.argmax(np.stack(scores), axis=0)
        yield np.stack(candidates)[pick, np.arange(b)]
        done += b


def draw(
    gen: Generator,
    model_dir: str | Path,
    n: int,
    k: int,
    seed: int,
    batch_size: int,
    truncation: float,
    off: str,
) -> Iterator[np.ndarray]:
    """`n` images in batches: straight from the generator when `k` is 1, else the best of `k` by the
    discriminator saved beside it; without one, an error that names the file and `off`, the setting
    that draws without it."""
    if k == 1:
        return generate(gen, n, seed, batch_size, truncation)
    try:
        critic = load_critic(model_dir, gen)
    except FileNotFoundError as exc:
        raise DogganError(f"{exc}; or draw without it: {off}") from None
    return best_of(gen, critic, n, k, seed, batch_size, truncation)
