"""Feature extractors for MiFID: the networks Kaggle used, and an offline stand-in.

- `tf2015`: the 2015 TensorFlow Inception graph (classify_image_graph_def.pb) of Kaggle's public
  leaderboard and the original FID code; input `ExpandDims:0` in 0-255, output `pool_3:0`.
  Downloaded once into doggan's cache (doggan.scoring.weights), also by `auto` when the network allows.
- `keras_imagenet`: Keras InceptionV3 with ImageNet weights, 2048 pooled features.
- `nasnet`: Keras NASNetLarge with ImageNet weights, 4032 features (Kaggle's private leaderboard).
- `standin`: fixed, training-free features for machines with no weights: layout (colour and gradient
  directions over a 4x4 grid), sharpness (Laplacian energy at three scales) and dots (the period-4 px
  checkerboard transposed convolutions leave, which its other blocks are blind to, so it is not taken
  for sharp edges). It orders held-out photos before blurred ones, dotted ones, tile shuffles, noise and
  colour blobs, but its numbers are not Kaggle's.
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
STANDIN_SIDE = 64  # images reach the stand-in's features at this size
STANDIN_GRID = 4  # cells per side of the stand-in's layout features
STANDIN_BINS = 8  # gradient directions of its shape features
STANDIN_FLOOR = 1e-3  # added to the Laplacian energy before its log: flat cells stay finite
STANDIN_DOT_FLOOR = 0.01  # added to the dots' amplitude before its log: 2.5 grey levels, photos' own
STANDIN_BOX = 4  # width of the box filter before directions and coarser scales: zero at periods 2 and 4 px
# Centre and scale of its blocks (colour, directions, log sharpness, log dots), fixed so the features need
# no statistics of the data, measured on the embedded sample's 300 photos at 64 px: the mean and the
# per-feature spread of each block, but for the dots, whose photos hold none: their scale is the mean
# shift a checkerboard of 2x2-px squares at +-3 grey levels laid over those photos gives.
STANDIN_SCALES = ((0.48, 0.2), (0.17, 0.13), (-3.24, 0.76), (-4.07, 0.74))
STANDIN_DIM = STANDIN_GRID**2 * 3 + STANDIN_GRID**2 * STANDIN_BINS + 3 * 4 * 3 + STANDIN_GRID**2
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


def _laplacian(x: tf.Tensor) -> tf.Tensor:
    """The 4-neighbour Laplacian of each channel, edges mirrored."""
    kernel = tf.constant([[0, 1, 0], [1, -4, 1], [0, 1, 0]], tf.float32)[:, :, None, None]
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], "SYMMETRIC")
    return tf.nn.depthwise_conv2d(padded, tf.tile(kernel, [1, 1, 3, 1]), [1, 1, 1, 1], "VALID")


def _cells(x: tf.Tensor, grid: int) -> tf.Tensor:
    """Means over a grid x grid layout of cells, flattened per image."""
    side = x.shape[1] // grid
    return tf.reshape(tf.nn.avg_pool2d(x, side, side, "VALID"), [tf.shape(x)[0], -1])


def _box(x: tf.Tensor, stride: int) -> tf.Tensor:
    """Means over STANDIN_BOX px squares: a low-pass that removes checkerboards of period 2 and 4 px."""
    return tf.nn.avg_pool2d(x, STANDIN_BOX, stride, "SAME")


def _orientations(x: tf.Tensor) -> tf.Tensor:
    """Shape: gradient energy of the grey image in STANDIN_BINS signed directions per cell of a 4x4 grid
    (HOG-like), normalised over the image and square-rooted, so contrast does not count, layout does.
    The image is box-filtered first, so dots add no gradients in every direction."""
    dy, dx = tf.image.image_gradients(tf.reduce_mean(_box(x, 1), -1, keepdims=True))
    magnitude, angle = tf.sqrt(dx * dx + dy * dy + 1e-8), tf.atan2(dy, dx)
    width = 2 * np.pi / STANDIN_BINS
    centres = tf.range(STANDIN_BINS, dtype=tf.float32) * width - np.pi
    gap = tf.abs(tf.math.floormod(angle - centres + np.pi, 2 * np.pi) - np.pi)
    energy = _cells(tf.nn.relu(1 - gap / width) * magnitude, STANDIN_GRID)
    return tf.sqrt(energy / (tf.norm(energy, axis=1, keepdims=True) + 1e-6))


def _detail(x: tf.Tensor) -> tf.Tensor:
    """Sharpness: log mean |Laplacian| per channel at 1, 2 and 4 px, per cell of a 2x2 grid. Each scale
    is box-filtered down from the last, so dots count at 1 px only, not as sharp edges at 2 px."""
    out = []
    for _ in range(3):
        out.append(tf.math.log(STANDIN_FLOOR + _cells(tf.abs(_laplacian(x)), 2)))
        x = _box(x, 2)
    return tf.concat(out, 1)


def _dots(x: tf.Tensor) -> tf.Tensor:
    """Dots: the amplitude of a period-4 px checkerboard (both diagonals, any phase) in the grey image over
    each 8 px window, its median over the windows of each cell of a 4x4 grid, logged. A transposed
    convolution's dots fill the cell; photos' edges hold a little of it in a few windows only."""
    y, x_ = np.mgrid[:8, :8]
    waves = [f(np.pi / 2 * (y + sign * x_)) for sign in (1, -1) for f in (np.cos, np.sin)]
    kernel = tf.constant(np.stack(waves, -1)[:, :, None, :] / 32, tf.float32)
    side = STANDIN_SIDE - 8  # whole 8 px windows, cropped to a multiple of the grid
    response = tf.nn.conv2d(tf.reduce_mean(x, -1, keepdims=True), kernel, 1, "VALID")[:, :side, :side]
    pairs = tf.reshape(tf.square(response), [-1, side, side, 2, 2])  # (cos, sin) per diagonal
    amplitude = tf.reduce_sum(tf.sqrt(tf.reduce_sum(pairs, -1) + 1e-12), -1)
    cell = side // STANDIN_GRID
    windows = tf.reshape(amplitude, [-1, STANDIN_GRID, cell, STANDIN_GRID, cell])
    windows = tf.reshape(tf.transpose(windows, [0, 1, 3, 2, 4]), [-1, STANDIN_GRID**2, cell * cell])
    return tf.math.log(STANDIN_DOT_FLOOR + tf.sort(windows)[:, :, cell * cell // 2])


def standin(reason: str = "requested") -> Backbone:
    """Fixed, training-free features that see shapes: layout (colour and gradient directions over a 4x4
    grid), sharpness (Laplacian energy at three scales) and dots. Each block is centred and scaled by
    fixed constants (STANDIN_SCALES), so blur, dots, tiling and blobs all move images away."""

    def extract(images):
        x = tf.cast(images, tf.float32) / 255.0
        if tuple(x.shape[1:3]) != (STANDIN_SIDE, STANDIN_SIDE):  # other sizes (or unknown ones) resized
            x = tf.image.resize(x, (STANDIN_SIDE, STANDIN_SIDE), antialias=True)
        blocks = (_cells(x, STANDIN_GRID), _orientations(x), _detail(x), _dots(x))
        return tf.concat([(b - c) / s for b, (c, s) in zip(blocks, STANDIN_SCALES, strict=True)], 1)

    return Backbone("standin", STANDIN_DIM, False, reason, _compiled(extract))


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
