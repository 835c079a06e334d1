"""Feature extractors for MiFID: the networks Kaggle used, and an offline stand-in.

- `tf2015`: the 2015 TensorFlow Inception graph (classify_image_graph_def.pb) of Kaggle's public
  leaderboard and the original FID code; input `ExpandDims:0` in 0-255, output `pool_3:0`.
- `keras_imagenet`: Keras InceptionV3 with ImageNet weights, 2048 pooled features.
- `nasnet`: Keras NASNetLarge with ImageNet weights, 4032 features (Kaggle's private leaderboard).
- `standin`: a fixed-seed random convolutional network for machines with no weights. It tells
  real from blurred from noise, but its numbers are not comparable with Kaggle's.
"""

from __future__ import annotations

import logging
import os
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from doggan.errors import DogganError

log = logging.getLogger("doggan")

GRAPH_URL = "http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz"
GRAPH_FILE = "classify_image_graph_def.pb"
KERAS_WEIGHTS = {
    "keras_imagenet": "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "nasnet": "nasnet_large_no_top.h5",
}
STANDIN_SEED = 2019
STANDIN_WIDTHS = (16, 32, 64, 128)
STANDIN_FLOOR = 1e-3


@dataclass(frozen=True)
class Backbone:
    name: str
    dim: int
    kaggle_comparable: bool
    reason: str
    extract: Callable[[tf.Tensor], tf.Tensor]  # uint8 (B, H, W, 3) -> float32 (B, dim)


def _compiled(extract: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[tf.Tensor], tf.Tensor]:
    """One tf.function per backbone, traced once and reused by every call (each epoch's evaluation)."""
    return tf.function(extract, reduce_retracing=True)


def keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def _read_graph_def(source: str) -> bytes:
    """The serialized GraphDef from a .pb or the .tgz it ships in, a path or a URL (cached once)."""
    import keras

    if "://" in source:
        try:
            source = keras.utils.get_file(Path(source).name, source, cache_subdir="doggan")
        except Exception as exc:  # keras raises urllib/OSError/ValueError variants
            raise DogganError(
                f"{source}: cannot download the Inception graph ({type(exc).__name__}); download "
                f"{GRAPH_URL} yourself and set eval.inception_graph to the file"
            ) from None
    path = Path(source)
    if not path.is_file():
        raise DogganError(f"{path}: Inception graph not found (eval.inception_graph)")
    if path.name.endswith((".tgz", ".tar.gz")):
        try:
            with tarfile.open(path) as tar:
                member = next((m for m in tar.getmembers() if m.name.endswith(GRAPH_FILE)), None)
                if member is None or not member.isfile():
                    raise DogganError(f"{path}: no {GRAPH_FILE} inside")
                return tar.extractfile(member).read()
        except tarfile.TarError as exc:
            raise DogganError(f"{path}: not a readable .tgz ({exc})") from None
    return path.read_bytes()


def tf2015(source: str, reason: str = "") -> Backbone:
    """The frozen 2015 Inception graph, fed batches: its input is re-mapped to a batch placeholder."""
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(_read_graph_def(source))
    except Exception as exc:  # protobuf DecodeError and friends
        if isinstance(exc, DogganError):
            raise
        raise DogganError(f"{source}: not a TensorFlow GraphDef ({type(exc).__name__})") from None

    def imports():
        images = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3], name="batch")
        tf.compat.v1.import_graph_def(graph_def, input_map={"ExpandDims:0": images}, name="inception")

    try:
        wrapped = tf.compat.v1.wrap_function(imports, [])
        forward = wrapped.prune("batch:0", "inception/pool_3:0")
    except (KeyError, ValueError) as exc:
        raise DogganError(f"{source}: graph lacks ExpandDims:0 or pool_3:0 ({exc})") from None
    dim = int(forward(tf.zeros([1, 64, 64, 3])).shape[-1])

    def extract(images):
        return tf.reshape(forward(tf.cast(images, tf.float32)), [tf.shape(images)[0], dim])

    return Backbone("tf2015", dim, True, reason or f"graph {source}", _compiled(extract))


def keras_application(name: str, weights: str | None = None, reason: str = "") -> Backbone:
    """InceptionV3 (299) or NASNetLarge (331), pooled, resized on the device.

    `weights`: a file Keras loads (its cached ImageNet .h5, or a .weights.h5); by default ImageNet's.
    """
    import keras

    app, size, preprocess = {
        "keras_imagenet": (keras.applications.InceptionV3, 299, keras.applications.inception_v3),
        "nasnet": (keras.applications.NASNetLarge, 331, keras.applications.nasnet),
    }[name]
    source = weights or "imagenet"
    supply = (
        f"place {KERAS_WEIGHTS[name]} (Keras's ImageNet weights without the top, .h5) in {keras_cache()}, "
        "where Keras downloads it when online, or load a .h5/.weights.h5 file of this architecture"
    )
    if weights and not Path(weights).is_file():
        raise DogganError(f"{weights}: {name} weights file not found; {supply}")
    try:
        model = app(include_top=False, pooling="avg", weights=source, input_shape=(size, size, 3))
    except Exception as exc:  # download errors, corrupt or mismatched h5 files
        raise DogganError(
            f"{name}: cannot load weights from {source} ({type(exc).__name__}: {exc}); {supply}"
        ) from None

    def extract(images):
        x = tf.image.resize(tf.cast(images, tf.float32), (size, size), method="bilinear")
        return model(preprocess.preprocess_input(x), training=False)

    return Backbone(
        name, int(model.output_shape[-1]), True, reason or f"weights {source}", _compiled(extract)
    )


def standin(reason: str = "requested") -> Backbone:
    """A random (fixed-seed) ReLU conv net; features are its pooled activations at four scales."""
    import keras

    inputs = keras.Input((None, None, 3))
    x, pooled = inputs, []
    for i, width in enumerate(STANDIN_WIDTHS):
        init = keras.initializers.HeNormal(seed=STANDIN_SEED + i)
        x = keras.layers.Conv2D(
            width, 3, strides=2, padding="same", activation="relu", kernel_initializer=init
        )(x)
        pooled.append(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, keras.layers.Concatenate()(pooled))
    # Random ReLU features are dense and all alike in direction; removing their mean response to
    # smooth random colour fields (fixed seed) makes them sparse like Inception's pool_3, so the
    # cosine memorization distance separates copies from new images on Kaggle's eps scale. A small
    # floor keeps flat images from giving all-zero rows, which the distance would drop.
    fields = np.random.default_rng(STANDIN_SEED).uniform(-1, 1, (64, 4, 4, 3)).astype(np.float32)
    offset = tf.reduce_mean(model(tf.image.resize(fields, (64, 64)), training=False), axis=0)

    def extract(images):
        features = model(tf.cast(images, tf.float32) / 127.5 - 1.0, training=False)
        return tf.nn.relu(features - offset) + STANDIN_FLOOR

    return Backbone("standin", sum(STANDIN_WIDTHS), False, reason, _compiled(extract))


def load(name: str, inception_graph: str = "", private: bool = False) -> Backbone:
    """The named backbone; `auto` takes the best available without touching the network."""
    if name == "tf2015":
        return tf2015(inception_graph or GRAPH_URL)
    if name in KERAS_WEIGHTS:
        return keras_application(name)
    if name == "standin":
        return standin()
    if private:
        cached = keras_cache() / KERAS_WEIGHTS["nasnet"]
        if cached.is_file():
            return keras_application("nasnet", str(cached), f"auto: cached {cached.name}")
        return _standin_fallback("no NASNetLarge weights in " + str(keras_cache()))
    if inception_graph:
        return tf2015(inception_graph, f"auto: eval.inception_graph {inception_graph}")
    cached = keras_cache() / KERAS_WEIGHTS["keras_imagenet"]
    if cached.is_file():
        return keras_application("keras_imagenet", str(cached), f"auto: cached {cached.name}")
    return _standin_fallback(f"no eval.inception_graph and no InceptionV3 weights in {keras_cache()}")


def _standin_fallback(why: str) -> Backbone:
    log.warning(
        "MiFID backbone: offline stand-in (%s). Its numbers are NOT comparable with Kaggle's; set "
        "eval.inception_graph or place Keras ImageNet weights in the Keras cache for real scores.",
        why,
    )
    return standin(f"auto: {why}")


def features(backbone: Backbone, batches: Iterable[np.ndarray]) -> np.ndarray:
    """Float32 features (N, dim) of uint8 image batches, through the backbone's compiled function."""
    out = [backbone.extract(tf.convert_to_tensor(batch)).numpy() for batch in batches]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, backbone.dim), np.float32)
