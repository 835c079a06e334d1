"""Every preset trains on data of its shape with its own networks; an MNIST preset runs every stage."""

import functools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from doggan import networks, params
from doggan.crops.crop import crop_stage
from doggan.crops.file import load_crops
from doggan.data.download import fetch
from doggan.errors import DogganError
from doggan.output import sampling, submission, submission_writer
from doggan.params import AugmentParams, EvalParams
from doggan.training import loop
from doggan.training.inputs import step_inputs, train_dataset
from doggan.training.policy import augment_stage
from doggan.training.state import build_gan, current_rate
from doggan.training.step import make_train_step

SHAPES = {
    "default": (64, 64, 3),
    "mlp-mnist": (28, 28, 1),
    "dcgan-mnist": (28, 28, 1),
    "dcgan-faces": (40, 40, 3),
    "dcgan-dogs": (64, 64, 3),
    "cdcgan-dogs": (64, 64, 3),
    "biggan-dogs": (64, 64, 3),
}
# The widths (units or filters) of each preset's layers, in order, as the recipes give them.
WIDTHS = {
    "mlp-mnist": ([256, 512, 1024, 784], [1024, 512, 256, 1]),
    "dcgan-mnist": ([7 * 7 * 256, 128, 64, 32, 1], [64, 128, 256, 512, 1]),
    "dcgan-faces": ([16, 256, 128, 64, 3], [64, 64, 64, 128, 1]),
    "dcgan-dogs": ([4 * 4 * 128, 512, 256, 128, 64, 32, 3], [64, 64, 128, 256, 1]),
}
BATCH = 4
STEPS = 2


def preset_params(name: str) -> params.TrainParams:
    p = params.parse({"train": {"preset": name}, "data": {"folder": "faces"}})
    return p.train.model_copy(update={"batch_size": BATCH})


def widths(model: keras.Model) -> list[int]:
    out = []
    for layer in model.layers:
        inner = layer.layer if isinstance(layer, keras.layers.SpectralNormalization) else layer
        if isinstance(inner, (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            out.append(inner.units if isinstance(inner, keras.layers.Dense) else inner.filters)
    return out


def kernels(model: keras.Model) -> set[int]:
    return {
        layer.kernel_size[0]
        for layer in model._flatten_layers()
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))
    }


@pytest.fixture(scope="module")
def built():
    """`built(name)`: a one-device strategy and, in its scope, the GAN of preset `name` for data of its
    shape. The last one is kept, so the biggan-dogs GAN (seconds to build) serves both its tests."""

    @functools.lru_cache(maxsize=1)
    def build(name):
        p = preset_params(name)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
        with strategy.scope():
            gan = build_gan(SHAPES[name], p, total_steps=STEPS, n_classes=3 if p.conditional else 0)
        return strategy, gan

    return build


# The biggan-dogs tests share a worker, and so its one GAN.
BIGGAN_GROUP = pytest.mark.xdist_group("biggan-dogs")


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=BIGGAN_GROUP) if n == "biggan-dogs" else n for n in SHAPES]
)
def test_each_preset_trains_a_few_steps_on_data_of_its_shape(built, name):
    shape, p = SHAPES[name], preset_params(name)
    n_classes = 3 if p.conditional else 0
    strategy, gan = built(name)
    if name in WIDTHS:
        assert (widths(gan.generator), widths(gan.discriminator)) == WIDTHS[name]
    images = np.random.default_rng(0).integers(0, 256, (2 * BATCH, *shape), dtype=np.uint8)
    labels = np.arange(2 * BATCH) % 3
    dataset = train_dataset(images, labels, AugmentParams(), p, 0)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    before = [w.copy() for w in gan.discriminator.get_weights()]
    step = make_train_step(strategy, gan, p)
    for _ in range(STEPS):
        values = {k: float(v) for k, v in step(next(iterator)).items()}
        assert np.all(np.isfinite(list(values.values()))), values
    assert any(not np.allclose(a, b) for a, b in zip(before, gan.discriminator.get_weights(), strict=True))
    z = sampling.sample_noise(np.random.default_rng(0), 2, p.z_dim, p.noise)
    inputs = [z, np.array([0, 2], np.int32)] if n_classes else z
    out = gan.generator(inputs, training=False).numpy()
    assert out.shape == (2, *shape) and np.abs(out).max() <= 1.0
    d_inputs = [out, np.array([0, 2], np.int32)] if n_classes else out
    assert tuple(gan.discriminator(d_inputs, training=False).shape) == (2, 1)


def test_the_recipes_keep_their_kernels_optimizers_and_noise():
    mnist = preset_params("dcgan-mnist")
    g = networks.make_generator(mnist, (28, 28, 1))
    d = networks.make_discriminator(mnist, (28, 28, 1))
    assert kernels(g) == kernels(d) == {5}
    strides = [layer.strides[0] for layer in d.layers if isinstance(layer, keras.layers.Conv2D)]
    assert strides == [2, 2, 2, 1]
    assert sum(isinstance(layer, keras.layers.UpSampling2D) for layer in g.layers) == 2
    gan = build_gan((28, 28, 1), mnist, 10)
    assert isinstance(gan.d_opt, keras.optimizers.RMSprop) and gan.d_opt.clipvalue == 1.0
    assert current_rate(gan.d_opt) == pytest.approx(8e-4)
    assert current_rate(gan.g_opt) == pytest.approx(4e-4)
    z, _, _ = step_inputs(tf.constant(0, tf.int64), 256, mnist.z_dim, mnist)
    assert z.shape == (256, 100) and z.numpy().min() >= -1.0 and z.numpy().max() <= 1.0
    assert abs(float(tf.math.reduce_std(z)) - (1 / 3) ** 0.5) < 0.02  # uniform in [-1, 1], not normal

    dogs = preset_params("dcgan-dogs")
    d = networks.make_discriminator(dogs, (64, 64, 3))
    assert sum(isinstance(layer, keras.layers.SpectralNormalization) for layer in d.layers) == 5
    assert not [layer for layer in d.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    g = networks.make_generator(dogs, (64, 64, 3))
    assert not [v for v in g.weights if v.name == "bias"]
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in g.layers) == 2

    conditional = preset_params("cdcgan-dogs")
    gan = build_gan((64, 64, 3), conditional, 10, n_classes=3)
    assert any(isinstance(layer, networks.ConditionalBatchNorm) for layer in gan.generator.layers)
    assert any(isinstance(layer, keras.layers.Embedding) for layer in gan.discriminator.layers)
    assert gan.g_opt.beta_1 == 0.0 and gan.ema is not None
    assert current_rate(gan.d_opt) > current_rate(gan.g_opt)


@BIGGAN_GROUP
def test_the_biggan_preset_is_the_winners_recipe_on_a_real_biggan(built):
    p = params.parse({"train": {"preset": "biggan-dogs"}})
    big = p.train.model_copy(update={"batch_size": BATCH})
    assert (big.architecture, big.loss, big.batch_size) == ("biggan", "hinge", BATCH)
    assert (p.train.batch_size, big.lr_g, big.lr_d, big.beta_1, big.beta_2) == (32, 1e-4, 4e-4, 0.0, 0.999)
    assert big.conditional and big.attention == 32 and big.ema_decay == 0.9999 and big.ema_start > 0
    assert p.submission.truncation == 0.8 and p.augment.diff == "translation,cutout"
    assert big == preset_params("biggan-dogs")  # the GAN `built` makes is this one's
    _, gan = built("biggan-dogs")
    g_layers = [type(layer).__name__ for layer in gan.generator._flatten_layers()]
    d_layers = [type(layer).__name__ for layer in gan.discriminator._flatten_layers()]
    assert "HierarchicalBatchNorm" in g_layers and "SelfAttention" in g_layers and "SelfAttention" in d_layers
    assert "ConditionalBatchNorm" not in g_layers
    assert gan.g_opt.beta_1 == 0.0 and gan.ema is not None
    assert current_rate(gan.d_opt) > current_rate(gan.g_opt)


def test_an_mnist_preset_runs_download_to_a_scored_submission(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    digits = np.zeros((16, 28, 28), np.uint8)
    digits[:, 6:22, 12:16] = rng.integers(150, 256, (16, 1, 1), dtype=np.uint8)
    (tmp_path / "keras" / "datasets").mkdir(parents=True)
    np.savez(
        tmp_path / "keras" / "datasets" / "mnist.npz",
        x_train=digits,
        y_train=np.arange(16, dtype=np.uint8) % 10,
        x_test=digits[:2],
        y_test=np.zeros(2, np.uint8),
    )
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    p = params.parse(
        {
            "train": {"preset": "dcgan-mnist", "epochs": 1, "batch_size": 8},
            "crop": {"workers": 1, "preview": 4},
            "augment": {"preview": 4},
            "submission": {"n_images": 12, "batch_size": 6, "workers": 1},
        }
    )
    assert p.train.batch_size == 8  # the preset does not fix the batch size of the Keras tutorial
    raw, out = tmp_path / "raw", tmp_path / "out"
    fetch(p.data, raw)
    crop_stage(raw, p.crop, out / "crops.npz", out / "crop.json", out / "crop.png")
    crops = load_crops(out / "crops.npz")
    assert crops.images.shape == (16, 28, 28, 1)
    assert {c.tobytes() for c in crops.images[..., 0]} == {d.tobytes() for d in digits}
    augment_stage(out / "crops.npz", p.augment, out / "policy.json", out / "augment.png")
    paths = loop.TrainPaths(
        crops=out / "crops.npz",
        policy=out / "policy.json",
        real_stats=out / "missing_stats.npz",
        models=out / "models",
        checkpoints=out / "ckpt",
        live=out / "live",
        plots=out / "plots",
    )
    summary = loop.train_stage(paths, p.train, EvalParams())
    assert summary["steps"] == 2
    meta = json.loads((out / "models" / "generator.json").read_text())
    assert meta["noise"] == "uniform" and meta["image_shape"] == [28, 28, 1]
    zip_path = out / "submission" / "images.zip"
    submission_writer.submission_stage(out / "models", p.submission, zip_path, out / "preview.png")
    assert submission.validate(zip_path, n_images=12) == []
    refused = p.submission.model_copy(update={"resize": False})
    with pytest.raises(DogganError, match=r"\(28, 28, 1\) images.*submission\.resize: true"):
        submission_writer.submission_stage(out / "models", refused, out / "other.zip", out / "preview.png")
