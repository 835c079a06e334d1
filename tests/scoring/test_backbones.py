"""Feature extractors: loaders run on tiny models saved in the real formats; the stand-in discriminates."""

import os
import tarfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageFilter

from doggan.data.photos import iter_photos
from doggan.data.sample import write_sample
from doggan.errors import DogganError
from doggan.scoring import backbones, mifid


def tiny_inception_graph() -> bytes:
    """A frozen GraphDef shaped like the 2015 graph: one HxWx3 image -> ExpandDims -> ... -> pool_3."""
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [None, None, 3], name="DecodeJpeg")
        x = tf.expand_dims(image, 0, name="ExpandDims")
        x = tf.compat.v1.image.resize_bilinear(x, [16, 16], name="ResizeBilinear")
        x = (x - 128.0) / 128.0
        kernel = tf.constant(np.random.default_rng(0).normal(size=(3, 3, 3, 8)), tf.float32)
        x = tf.nn.relu(tf.nn.conv2d(x, kernel, strides=2, padding="SAME"))
        tf.nn.avg_pool2d(x, ksize=8, strides=1, padding="VALID", name="pool_3")
    return graph.as_graph_def().SerializeToString()


@pytest.fixture(scope="module")
def graph_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graph")
    pb = folder / backbones.GRAPH_FILE
    pb.write_bytes(tiny_inception_graph())
    tgz = folder / "inception-2015-12-05.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(pb, arcname=backbones.GRAPH_FILE)
    return pb, tgz


def images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def test_tf2015_graph_runs_in_batches_matching_single_images(graph_files):
    pb, _ = graph_files
    backbone = backbones.tf2015(str(pb))
    batch = images(5)
    together = backbones.features(backbone, [batch])
    one_by_one = backbones.features(backbone, [batch[i : i + 1] for i in range(5)])
    assert together.shape == (5, 8) and together.dtype == np.float32
    np.testing.assert_allclose(together, one_by_one, rtol=1e-5, atol=1e-6)
    assert backbone.name == "tf2015" and backbone.kaggle_comparable


def test_tf2015_reads_the_tgz_it_ships_in(graph_files):
    pb, tgz = graph_files
    batch = images(3, seed=1)
    from_tgz = backbones.features(backbones.tf2015(str(tgz)), [batch])
    np.testing.assert_allclose(from_tgz, backbones.features(backbones.tf2015(str(pb)), [batch]))


def test_tf2015_missing_corrupt_or_wrong_graph_say_what_to_do(tmp_path):
    with pytest.raises(DogganError, match="not found"):
        backbones.tf2015(str(tmp_path / "nothing.pb"))
    corrupt = tmp_path / "corrupt.pb"
    corrupt.write_bytes(b"\xff\x00 not a protobuf " * 10)
    with pytest.raises(DogganError, match="GraphDef"):
        backbones.tf2015(str(corrupt))
    bad_tgz = tmp_path / "x.tgz"
    bad_tgz.write_bytes(b"not a tar")
    with pytest.raises(DogganError, match="tgz"):
        backbones.tf2015(str(bad_tgz))
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.placeholder(tf.float32, [None, None, 3], name="input")
    other = tmp_path / "other.pb"
    other.write_bytes(graph.as_graph_def().SerializeToString())
    with pytest.raises(DogganError, match="ExpandDims"):
        backbones.tf2015(str(other))


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    """InceptionV3 at its real input size with random weights, saved as .weights.h5 and as a legacy
    .h5 under the name of Keras's cached ImageNet file."""
    import keras

    keras.utils.set_random_seed(7)
    model = keras.applications.InceptionV3(
        include_top=False, pooling="avg", weights=None, input_shape=(299, 299, 3)
    )
    home = tmp_path_factory.mktemp("keras_home")
    (home / "models").mkdir()
    model.save_weights(home / "inception.weights.h5")
    model.save(home / "models" / backbones.KERAS_WEIGHTS["keras_imagenet"])
    batch = images(2, seed=5)
    resized = tf.image.resize(tf.cast(batch, tf.float32), (299, 299), method="bilinear")
    return home, batch, model(resized / 127.5 - 1.0, training=False).numpy()


# The tests of `inception` share an xdist group: one worker runs them, so InceptionV3 is built once.
INCEPTION = pytest.mark.xdist_group("keras-inception")


@INCEPTION
def test_keras_inception_loads_a_weights_file(inception):
    home, batch, expected = inception
    backbone = backbones.keras_application("keras_imagenet", str(home / "inception.weights.h5"))
    assert backbone.name == "keras_imagenet" and backbone.dim == 2048
    np.testing.assert_allclose(backbones.features(backbone, [batch]), expected, rtol=1e-4, atol=1e-5)


@INCEPTION
def test_auto_takes_inception_weights_placed_in_the_keras_cache(inception, monkeypatch):
    home, batch, expected = inception
    monkeypatch.setenv("KERAS_HOME", str(home))
    backbone = backbones.load("auto")
    assert backbone.name == "keras_imagenet" and backbone.kaggle_comparable
    assert backbones.KERAS_WEIGHTS["keras_imagenet"] in backbone.reason
    np.testing.assert_allclose(backbones.features(backbone, [batch]), expected, rtol=1e-4, atol=1e-5)


def test_keras_weights_missing_or_corrupt_say_how_to_supply_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    name = backbones.KERAS_WEIGHTS["keras_imagenet"]
    missing = tmp_path / "nothing.h5"
    with pytest.raises(DogganError, match=f"nothing.h5: keras_imagenet weights file not found; place {name}"):
        backbones.keras_application("keras_imagenet", str(missing))
    corrupt = tmp_path / name
    corrupt.write_bytes(b"not hdf5")
    with pytest.raises(DogganError) as error:
        backbones.keras_application("keras_imagenet", str(corrupt))
    message = str(error.value)
    assert f"cannot load weights from {corrupt}" in message
    assert f"place {name}" in message and str(tmp_path / "models") in message


def test_auto_uses_the_configured_graph_else_falls_back_to_the_standin(graph_files, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    pb, _ = graph_files
    chosen = backbones.load("auto", str(pb))
    assert chosen.name == "tf2015" and str(pb) in chosen.reason
    fallback = backbones.load("auto")
    assert fallback.name == "standin" and not fallback.kaggle_comparable
    assert str(tmp_path) in fallback.reason
    assert backbones.load("auto", private=True).name == "standin"


def blur(batch):
    return np.stack([np.asarray(Image.fromarray(i).filter(ImageFilter.GaussianBlur(2))) for i in batch])


def test_standin_scores_held_out_real_better_than_blurred_better_than_noise(tmp_path):
    write_sample(tmp_path, 160, seed=3)
    photos = np.concatenate(list(iter_photos(tmp_path, 64, 64)))
    real, held_out = photos[::2], photos[1::2]  # photos come sorted by breed: alternate them
    backbone = backbones.standin()
    again = backbones.standin()
    feats = {
        name: backbones.features(backbone, [batch])
        for name, batch in {
            "real": real,
            "held_out": held_out,
            "blurred": blur(held_out),
            "noise": images(80, seed=4),
        }.items()
    }
    np.testing.assert_array_equal(feats["real"], backbones.features(again, [real]))
    fid = {k: mifid.mifid(feats[k], feats["real"])["fid"] for k in ("held_out", "blurred", "noise")}
    assert fid["held_out"] < fid["blurred"] < fid["noise"], fid


def test_features_of_no_batches_is_an_empty_array():
    out = backbones.features(backbones.standin(), [])
    assert out.shape == (0, backbones.STANDIN_DIM)


def writing_graph(target) -> bytes:
    """A graph shaped like the 2015 one whose pool_3 first writes `target`: a tf.function exported as
    a GraphDef, with WriteFile as a control input of the output."""

    @tf.function
    def forward(image):
        x = tf.expand_dims(image, 0, name="ExpandDims")
        with tf.control_dependencies([tf.io.write_file(str(target), "written by the graph")]):
            return tf.reduce_mean(x, axis=[1, 2], keepdims=True, name="pool_3")

    concrete = forward.get_concrete_function(tf.TensorSpec([None, None, 3], tf.float32))
    return concrete.graph.as_graph_def().SerializeToString()


def test_a_graph_with_file_ops_is_refused_before_it_runs(tmp_path):
    target = tmp_path / "written.txt"
    graph = tmp_path / backbones.GRAPH_FILE
    graph.write_bytes(writing_graph(target))
    with pytest.raises(DogganError, match=rf"{graph}: .*WriteFile \(node WriteFile\)"):
        backbones.features(backbones.tf2015(str(graph)), [images(1)])
    assert not target.exists()
    with tarfile.open(tmp_path / "inception.tgz", "w:gz") as tar:
        tar.add(graph, arcname=backbones.GRAPH_FILE)
    with pytest.raises(DogganError, match="WriteFile"):
        backbones.load("auto", str(tmp_path / "inception.tgz"))
    assert not target.exists()


def test_the_real_graph_s_ops_are_allowed_and_file_network_and_python_ops_are_not():
    real = {"DecodeJpeg", "Cast", "ExpandDims", "ResizeBilinear", "Sub", "Mul", "Conv2D", "Relu", "MaxPool"}
    real |= {"BatchNormWithGlobalNormalization", "CheckNumerics", "Identity", "AvgPool", "Concat", "Reshape"}
    real |= {"MatMul", "Add", "Softmax", "Const"}
    assert real <= backbones.GRAPH_OPS
    unsafe = {"ReadFile", "WriteFile", "MatchingFiles", "PyFunc", "EagerPyFunc", "SaveV2", "RestoreV2"}
    unsafe |= {"FIFOQueueV2", "TFRecordReaderV2", "PartitionedCall", "StatefulPartitionedCall", "While"}
    assert not unsafe & backbones.GRAPH_OPS
