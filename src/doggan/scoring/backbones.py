"""Feature extractors for MiFID: the networks Kaggle used, and an offline stand-in.

- `tf2015`: the 2015 TensorFlow Inception graph (classify_image_graph_def.pb) of Kaggle's public
  leaderboard and the original FID code; input `ExpandDims:0` in 0-255, output `pool_3:0`.
  Downloaded once into doggan's cache (doggan.scoring.weights), also by `auto` when the network allows.
- `keras_imagenet`: Keras InceptionV3 with ImageNet weights, 2048 pooled features.
- `nasnet`: Keras NASNetLarge with ImageNet weights, 4032 features (Kaggle's private leaderboard).
- `standin`: a fixed-seed random convolutional network for machines with no weights. It tells
  real from blurred from noise, but its numbers are not comparable with Kaggle's.
"""

from __future__ import annotations

import hashlib
import logging
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from doggan.errors import DogganError
from doggan.scoring import weights as weights_lib
from doggan.scoring.weights import Located, keras_cache

log = logging.getLogger("doggan")

GRAPH_FILE = "classify_image_graph_def.pb"
KERAS_WEIGHTS = {name: spec.name for name, spec in weights_lib.KERAS.items()}
STANDIN_SEED = 2019
STANDIN_WIDTHS = (16, 32, 64, 128)
STANDIN_FLOOR = 1e-3
PUBLIC_HINT = "`doggan weights` downloads Kaggle's graph ahead of time, or set eval.inception_graph to a copy"
PRIVATE_HINT = "`doggan weights --private` downloads NASNetLarge's ImageNet weights ahead of time"
# The ops of the 2015 Inception graph (DecodeJpeg, Cast, ExpandDims, ResizeBilinear, Sub, Mul; Conv2D,
# BatchNormWithGlobalNormalization, CheckNumerics, Identity, Relu, MaxPool, AvgPool and Concat in its
# blocks; Reshape, MatMul, Add and Softmax after pool_3) and their later forms. Running a graph runs every
# op its output depends on, so one holding any other op (files, network, queues, readers, Python
# callbacks, function calls) is refused before it is imported.
GRAPH_OPS = frozenset(
    {
        "Const", "Placeholder", "PlaceholderWithDefault", "Identity", "NoOp", "CheckNumerics",
        "DecodeJpeg", "Cast", "ExpandDims", "Squeeze", "Reshape", "ResizeBilinear",
        "Add", "AddV2", "Sub", "Mul", "RealDiv", "BiasAdd", "MatMul", "Softmax",
        "Conv2D", "Relu", "MaxPool", "AvgPool", "Concat", "ConcatV2",
        "BatchNormWithGlobalNormalization", "FusedBatchNorm", "FusedBatchNormV3",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Backbone:
    name: str
    dim: int
    kaggle_comparable: bool
    reason: str
    extract: Callable[[tf.Tensor], tf.Tensor]  # uint8 (B, H, W, 3) -> float32 (B, dim)
    origin: Located = weights_lib.STANDIN


def provenance(backbone: Backbone) -> dict:
    """Where the backbone's weights came from, as recorded in reports: path | cache | url | standin."""
    return {
        "weights_source": backbone.origin.source,
        "weights": backbone.origin.path,
        "weights_url": backbone.origin.url,
    }


def _compiled(extract: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[tf.Tensor], tf.Tensor]:
    """One tf.function per backbone, traced once and reused by every call (each epoch's evaluation)."""
    return tf.function(extract, reduce_retracing=True)


def _locate_graph(source: str) -> Located:
    """The graph file: a path as given, or a URL's download in doggan's cache ("" = Kaggle's graph)."""
    if "://" not in source and source:
        return Located(source, "path")
    spec = weights_lib.inception()
    if source and source != spec.url:  # another URL: its own file in the cache, named after the URL
        tag = hashlib.sha256(source.encode()).hexdigest()[:12]
        spec = weights_lib.Spec(f"{tag}-{Path(source.split('?')[0]).name}", source)
    return weights_lib.fetch(spec)


def _read_graph_def(path: Path) -> bytes:
    """The serialized GraphDef from a .pb or the .tgz it ships in."""
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


def check_graph_ops(graph_def: tf.compat.v1.GraphDef, path: str) -> None:
    """Refuse a graph holding ops an Inception graph has no use for (GRAPH_OPS), naming them and a node
    of each; its function library is searched too."""
    nodes = [*graph_def.node, *(node for f in graph_def.library.function for node in f.node_def)]
    foreign: dict[str, str] = {}
    for node in nodes:
        if node.op not in GRAPH_OPS:
            foreign.setdefault(node.op, node.name)
    if foreign:
        listed = ", ".join(f"{op} (node {name})" for op, name in sorted(foreign.items()))
        raise DogganError(
            f"{path}: refusing to import this graph: it holds ops an Inception graph does not use, {listed}; "
            "set eval.inception_graph to the 2015 Inception graph (classify_image_graph_def.pb or "
            "inception-2015-12-05.tgz)"
        )


def tf2015(source: str = "", reason: str = "") -> Backbone:
    """The frozen 2015 Inception graph (a path or URL; "" = Kaggle's, from the cache or downloaded
    once), fed batches: its input is re-mapped to a batch placeholder."""
    origin = _locate_graph(source)
    source = source or origin.url
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(_read_graph_def(Path(origin.path)))
    except Exception as exc:  # protobuf DecodeError and friends
        if isinstance(exc, DogganError):
            raise
        raise DogganError(f"{source}: not a TensorFlow GraphDef ({type(exc).__name__})") from None
    check_graph_ops(graph_def, origin.path)

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

    return Backbone("tf2015", dim, True, reason or f"graph {source}", _compiled(extract), origin)


def keras_application(name: str, weights: str | None = None, reason: str = "") -> Backbone:
    """InceptionV3 (299) or NASNetLarge (331), pooled, resized on the device.

    `weights`: a file Keras loads (its cached ImageNet .h5, or a .weights.h5); by default ImageNet's,
    downloaded once into the Keras cache under the name and checksum Keras uses.
    """
    import keras

    app, size, preprocess = {
        "keras_imagenet": (keras.applications.InceptionV3, 299, keras.applications.inception_v3),
        "nasnet": (keras.applications.NASNetLarge, 331, keras.applications.nasnet),
    }[name]
    supply = (
        f"place {KERAS_WEIGHTS[name]} (Keras's ImageNet weights without the top, .h5) in {keras_cache()}, "
        "where Keras downloads it when online, or load a .h5/.weights.h5 file of this architecture"
    )
    if weights and not Path(weights).is_file():
        raise DogganError(f"{weights}: {name} weights file not found; {supply}")
    if weights:
        origin = Located(weights, "cache" if Path(weights).parent == keras_cache() else "path")
    else:
        try:
            origin = weights_lib.fetch(weights_lib.keras_weights(name), keras_cache())
        except weights_lib.WeightsUnavailable as exc:
            raise weights_lib.WeightsUnavailable(f"{name}: {exc}; {supply}") from None
    source = origin.path
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
        name, int(model.output_shape[-1]), True, reason or f"weights {source}", _compiled(extract), origin
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
    """The named backbone. `auto` takes the best available: eval.inception_graph, else Kaggle's graph
    (from the cache, or downloaded once when the network allows), else cached Keras weights, else
    the stand-in; with `private`, NASNetLarge from the Keras cache, else the stand-in."""
    if name == "tf2015":
        try:
            return tf2015(inception_graph)
        except weights_lib.WeightsUnavailable as exc:
            raise weights_lib.WeightsUnavailable(f"{exc}; {PUBLIC_HINT}") from None
    if name in KERAS_WEIGHTS:
        return keras_application(name)
    if name == "standin":
        return standin()
    if private:
        cached = keras_cache() / KERAS_WEIGHTS["nasnet"]
        if cached.is_file():
            return keras_application("nasnet", str(cached), f"auto: cached {cached.name}")
        return _standin_fallback(f"no NASNetLarge weights in {keras_cache()}", PRIVATE_HINT)
    if inception_graph:
        return tf2015(inception_graph, f"auto: eval.inception_graph {inception_graph}")
    try:
        return tf2015("", "auto: Kaggle's 2015 Inception graph")
    except weights_lib.WeightsUnavailable as exc:
        unavailable = str(exc)
    cached = keras_cache() / KERAS_WEIGHTS["keras_imagenet"]
    if cached.is_file():
        log.warning("MiFID backbone: %s; using the cached Keras InceptionV3 instead", unavailable)
        return keras_application("keras_imagenet", str(cached), f"auto: cached {cached.name}")
    return _standin_fallback(f"{unavailable}; no InceptionV3 weights in {keras_cache()}", PUBLIC_HINT)


def _standin_fallback(why: str, hint: str) -> Backbone:
    log.warning(
        "MiFID backbone: offline stand-in, whose numbers are NOT comparable with Kaggle's (%s); %s", why, hint
    )
    return standin(f"auto: {why}")


def features(backbone: Backbone, batches: Iterable[np.ndarray]) -> np.ndarray:
    """Float32 features (N, dim) of uint8 image batches, through the backbone's compiled function."""
    out = [backbone.extract(tf.convert_to_tensor(batch)).numpy() for batch in batches]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, backbone.dim), np.float32)
