"""The input pipeline: crops shuffled, batched, scaled to [-1, 1], augmented a batch at a time, prefetched.

The augment stage writes the resolved policy and draws its preview with `make_dataset`; the train
stage reads that policy file and feeds itself with the same function.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from doggan.crops.file import load_crops
from doggan.errors import HandOverError
from doggan.files import write_json
from doggan.output.grids import save_grid, to_uint8
from doggan.params import AugmentParams

LUMA = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale's weights


def _per_image(seed: tf.Tensor, n: tf.Tensor, low: float, high: float) -> tf.Tensor:
    """One uniform draw per image, shaped (n, 1, 1) to scale or offset its colour map."""
    return tf.random.stateless_uniform([n], seed, low, high)[:, None, None]


def _gather_moved(store: tf.Tensor, index: tf.Tensor, policy: AugmentParams, seeds: list[tf.Tensor]):
    """Images `index` of the uint8 store (N, S, S, C), flipped and shifted, with one gather of pixels.

    The shift is up to `policy.translate` of the side in both axes, reflecting at the borders as
    tf.pad's REFLECT mode does; the flip mirrors half the images left-right.
    """
    n, side, channels = tf.shape(index)[0], store.shape[1], store.shape[-1]
    if not (policy.flip or policy.translate):
        return tf.gather(store, index)
    lines = tf.tile(tf.range(side)[None, None, :], [2, n, 1])
    if policy.translate:
        pad = max(1, int(round(side * policy.translate)))
        shifts = tf.random.stateless_uniform([2, n], seeds[5], -pad, pad + 1, dtype=tf.int32)
        lines = (side - 1) - tf.abs((side - 1) - tf.abs(lines + shifts[:, :, None]))
    rows, cols = lines[0], lines[1]
    if policy.flip:
        mirror = tf.random.stateless_uniform([n], seeds[0]) < 0.5
        cols = tf.where(mirror[:, None], (side - 1) - cols, cols)
    first = tf.cast(index, tf.int32)[:, None, None] * side
    pixels = tf.reshape(store, [-1, channels])
    return tf.gather(pixels, (first + rows[:, :, None]) * side + cols[:, None, :])


def _hue_rotation(angle: tf.Tensor) -> tf.Tensor:
    """Rotations of RGB space about the grey axis by `angle` (n, 1, 1) radians: red turns to green
    at a third of a turn, as a hue shift of 1/3 does."""
    axis = tf.constant([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / np.sqrt(3.0)
    return tf.cos(angle) * tf.eye(3) + tf.sin(angle) * axis + (1.0 - tf.cos(angle)) * tf.fill([3, 3], 1 / 3)


def _colour_map(
    policy: AugmentParams, seeds: list[tf.Tensor], n: tf.Tensor, channels: int, means: tf.Tensor | None
) -> tuple[tf.Tensor, tf.Tensor]:
    """Each image's colour jitter as one affine map x -> A x + t of its pixels in [0, 1].

    Brightness adds to every channel, contrast scales about the image's channel means (`means`, (n, C),
    as tf.image.adjust_contrast), saturation blends with luma and hue rotates about the grey axis (as
    StyleGAN2-ADA's colour transforms), in that order.
    """
    a = tf.eye(channels, batch_shape=[n])
    t = tf.zeros([n, channels, 1])
    if policy.brightness:
        t += _per_image(seeds[1], n, -policy.brightness, policy.brightness)
    if policy.contrast:
        factor = _per_image(seeds[2], n, 1.0 - policy.contrast, 1.0 + policy.contrast)
        t += (1.0 - factor) * (a @ means[:, :, None] + t)
        a *= factor
    if channels == 3 and policy.saturation:
        factor = _per_image(seeds[3], n, 1.0 - policy.saturation, 1.0 + policy.saturation)
        blend = factor * tf.eye(3) + (1.0 - factor) * tf.tile(tf.constant([LUMA]), [3, 1])
        a, t = blend @ a, blend @ t
    if channels == 3 and policy.hue:
        rotation = _hue_rotation(_per_image(seeds[4], n, -policy.hue, policy.hue) * 2.0 * np.pi)
        a, t = rotation @ a, rotation @ t
    return a, t[:, :, 0]


def augment_batch(
    store: tf.Tensor, index: tf.Tensor, policy: AugmentParams, seed: tf.Tensor, means: tf.Tensor | None
) -> tf.Tensor:
    """Images `index` of the uint8 store (N, S, S, C) augmented by the policy, as float32 in [-1, 1].

    Every draw is per image, from the stateless `seed` (shape [2]); the ops work on the whole batch.
    `means` are the store's channel means (`channel_means`), needed for contrast only.
    """
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 6))
    x = tf.cast(_gather_moved(store, index, policy, seeds), tf.float32)
    if not (policy.brightness or policy.contrast or policy.saturation or policy.hue):
        return x / 127.5 - 1.0
    n, channels = tf.shape(index)[0], store.shape[-1]
    a, t = _colour_map(policy, seeds, n, channels, None if means is None else tf.gather(means, index))
    # k pixels per row of the product, mapped by a block-diagonal matrix: about twice as fast on CPU
    # as a matmul with inner size C
    k = math.gcd(store.shape[1] * store.shape[2], 8)
    blocks = tf.einsum("ij,nab->nibja", tf.eye(k), a * (2.0 / 255.0))
    mapped = tf.reshape(x, [n, -1, k * channels]) @ tf.reshape(blocks, [n, k * channels, k * channels])
    offset = tf.tile(2.0 * t - 1.0, [1, k])[:, None, :]
    return tf.clip_by_value(tf.reshape(mapped + offset, tf.shape(x)), -1.0, 1.0)


def channel_means(images: np.ndarray) -> np.ndarray:
    """Mean of each channel of each uint8 image (N, H, W, C), in [0, 1], as float32 (N, C)."""
    n, h, w, c = images.shape
    rows = images.reshape(n, h, w * c).sum(axis=1, dtype=np.uint32)  # rows first: ten times faster
    return (rows.reshape(n, w, c).sum(axis=1) / (255.0 * h * w)).astype(np.float32)


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    policy: AugmentParams,
    batch_size: int,
    seed: int | None = None,
    drop_remainder: bool = True,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batches of (float32 images in [-1, 1], int32 labels): shuffled, augmented, prefetched.

    The uint8 crops stay in memory as one tensor; the dataset shuffles and batches their indices, and
    each batch is gathered and augmented whole. Shuffling and augmentation are seeded (`seed`, else
    the policy's, with each batch's draws seeded by its position), so a seed repeats the stream.
    """
    seed = policy.seed if seed is None else seed
    n = len(images)
    pixels, classes = tf.constant(images, tf.uint8), tf.constant(labels, tf.int32)
    means = tf.constant(channel_means(images)) if policy.contrast else None
    ds = tf.data.Dataset.range(n)
    ds = ds.shuffle(min(policy.shuffle_buffer, n), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).enumerate()

    def prepare(position, index):
        batch_seed = tf.stack([tf.constant(seed, tf.int64), position])
        return augment_batch(pixels, index, policy, batch_seed, means), tf.gather(classes, index)

    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def load_policy(path: str | Path, image_shape: tuple[int, ...] | None = None) -> AugmentParams:
    """Read the policy the augment stage resolved, checked: a missing, truncated or altered file, or one
    made for crops of another shape than `image_shape` (when given), is an error saying what remakes it."""
    path = Path(path)
    if not path.is_file():
        raise HandOverError(path, "augmentation policy not found (the augment stage writes it)", "augment")
    try:
        record = json.loads(path.read_text())
        policy = AugmentParams.model_validate(record["policy"])
        shape = tuple(int(s) for s in record["image_shape"])
    except (ValueError, KeyError, TypeError) as exc:
        problem = f"not an augmentation policy, truncated or altered ({type(exc).__name__}: {exc})"
        raise HandOverError(path, problem, "augment") from None
    if image_shape is not None and shape != tuple(image_shape):
        problem = f"resolved for crops of shape {shape}, but the crops are {tuple(image_shape)}"
        raise HandOverError(path, problem, "augment")
    return policy


def augment_stage(crops_path: Path, params: AugmentParams, policy_path: Path, preview_path: Path) -> None:
    """Resolve the policy for the crops, write it, and preview it with the training pipeline itself."""
    crops = load_crops(crops_path)
    n = min(params.preview, len(crops.images))
    batch = next(iter(make_dataset(crops.images, crops.labels, params, n)))[0].numpy()
    save_grid(preview_path, to_uint8(batch), scale=2)
    write_json(
        policy_path,
        {
            "policy": params.model_dump(),
            "images": int(len(crops.images)),
            "image_shape": list(crops.images.shape[1:]),
            "breeds": crops.breeds.tolist(),
        },
    )
