"""The input pipeline: crops scaled to [-1, 1], shuffled, augmented, batched, prefetched.

The augment stage writes the resolved policy and draws its preview with `make_dataset`; the train
stage reads that policy file and feeds itself with the same function.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from doggan.crops_file import load_crops
from doggan.errors import DogganError
from doggan.files import write_json
from doggan.grids import save_grid, to_uint8
from doggan.params import AugmentParams


def augment_image(image: tf.Tensor, policy: AugmentParams, seed: tf.Tensor) -> tf.Tensor:
    """Apply the policy to one float image in [-1, 1] with stateless ops seeded by `seed` (shape [2])."""
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 6))
    x = (image + 1.0) / 2.0
    if policy.flip:
        x = tf.image.stateless_random_flip_left_right(x, seeds[0])
    if policy.brightness:
        x = tf.image.stateless_random_brightness(x, policy.brightness, seeds[1])
    if policy.contrast:
        x = tf.image.stateless_random_contrast(x, 1.0 - policy.contrast, 1.0 + policy.contrast, seeds[2])
    if x.shape[-1] == 3 and policy.saturation:
        low, high = 1.0 - policy.saturation, 1.0 + policy.saturation
        x = tf.image.stateless_random_saturation(x, low, high, seeds[3])
    if x.shape[-1] == 3 and policy.hue:
        x = tf.image.stateless_random_hue(x, policy.hue, seeds[4])
    if policy.translate:
        pad = max(1, int(round(x.shape[0] * policy.translate)))
        padded = tf.pad(x, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        x = tf.image.stateless_random_crop(padded, tf.shape(image), seeds[5])
    return tf.clip_by_value(x, 0.0, 1.0) * 2.0 - 1.0


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    policy: AugmentParams,
    batch_size: int,
    seed: int | None = None,
    drop_remainder: bool = True,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batches of (float32 images in [-1, 1], int32 labels): cached, shuffled, augmented, prefetched.

    Shuffling and augmentation are seeded (`seed`, else the policy's), so a seed repeats the stream.
    """
    seed = policy.seed if seed is None else seed
    n = len(images)
    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32))).cache()
    ds = ds.shuffle(min(policy.shuffle_buffer, n), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.enumerate()

    def prepare(index, example):
        image, label = example
        x = tf.cast(image, tf.float32) / 127.5 - 1.0
        element_seed = tf.stack([tf.constant(seed, tf.int64), index])
        return augment_image(x, policy, element_seed), label

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def load_policy(path: str | Path) -> AugmentParams:
    """Read the policy the augment stage resolved."""
    path = Path(path)
    if not path.is_file():
        raise DogganError(f"{path}: augmentation policy not found (run the augment stage)")
    try:
        return AugmentParams.model_validate(json.loads(path.read_text())["policy"])
    except (ValueError, KeyError) as exc:
        raise DogganError(f"{path}: not an augmentation policy ({exc})") from None


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
