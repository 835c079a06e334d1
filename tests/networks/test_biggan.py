"""BigGAN: sized from the image side, hierarchical z and the class reach every block, self-attention as
computed by hand, orthogonal weights, saving and loading, and 2 replicas computing the gradients of 1."""

import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import prepare, run_mode

from doggan import networks
from doggan.networks import biggan
from doggan.networks.attention import SelfAttention
from doggan.output import sampling
from doggan.params import TrainParams
from doggan.training import inputs as train_inputs
from doggan.training import report, state
from doggan.training import step as train_step

HERE = Path(__file__).resolve()
TINY = dict(architecture="biggan", g_filters=8, d_filters=8, z_dim=24, batch_size=8)
SIDE = (16, 16, 3)


@pytest.fixture
def prepared(tmp_path):
    """The shared crops and policy at 16 px, the side of the gradient checks below."""
    return prepare(tmp_path, side=16)


def tiny(**changes) -> TrainParams:
    return TrainParams(**{**TINY, **changes})


def noise(n: int, z_dim: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, z_dim)).astype("float32")


@pytest.mark.parametrize("side", [32, 64, 128])
@pytest.mark.parametrize("n_classes", [0, 5])
def test_models_fit_32_64_and_128_pixels_conditional_or_not(side, n_classes):
    p = tiny(conditional=bool(n_classes))
    g = networks.make_generator(p, (side, side, 3), n_classes)
    d = networks.make_discriminator(p, (side, side, 3), n_classes)
    labels = np.array([0, 4], np.int32)
    images = g([noise(2), labels] if n_classes else noise(2), training=True).numpy()
    logits = d([images, labels] if n_classes else images, training=True)
    assert tuple(images.shape) == (2, side, side, 3) and images.dtype == "float32"
    assert np.abs(images).max() <= 1.0
    assert tuple(logits.shape) == (2, 1) and logits.dtype == "float32"
    blocks = [layer for layer in g.layers if layer.name.endswith("_out")]
    assert len(blocks) == {32: 3, 64: 4, 128: 5}[side]
    for i, block in enumerate(blocks):  # widths 16·ch, 8·ch, ... from 8×8 up to the image side
        assert block.output.shape[1:] == (8 * 2**i, 8 * 2**i, 8 * 16 // 2**i)
    assert "attention32" in [layer.name for layer in g.layers]


def test_discriminator_widths_double_from_ch_to_16_ch_with_attention_at_32():
    d = biggan.make_discriminator(tiny(), (64, 64, 3))
    convs = [layer for layer in d.layers if isinstance(layer, keras.layers.SpectralNormalization)]
    widths = sorted(
        {layer.layer.units if hasattr(layer.layer, "units") else layer.layer.filters for layer in convs}
    )
    assert widths == [1, 8, 16, 32, 64, 128]
    assert d.get_layer("attention32").input.shape[1:] == (32, 32, 8)


def numpy_attention(x, wq, wk, wv, wo, gamma):
    """SAGAN attention of one image (H×W×C) by hand: 1×1 convs as matrix products, 2×2 max pooling."""
    h, w, c = x.shape

    def pool(a):
        return a.reshape(h // 2, 2, w // 2, 2, -1).max(axis=(1, 3)).reshape(h * w // 4, -1)

    flat = x.reshape(h * w, c)
    query, key, value = flat @ wq, pool((flat @ wk).reshape(h, w, -1)), pool((flat @ wv).reshape(h, w, -1))
    scores = query @ key.T
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return (flat + gamma * (weights @ value) @ wo).reshape(h, w, c)


def test_self_attention_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 4, 16)).astype("float32")
    layer = SelfAttention(spectral_norm=False)
    np.testing.assert_allclose(layer(x).numpy(), x, atol=1e-6)  # gamma starts at 0: the identity
    wq, wk = (rng.standard_normal((16, 2)).astype("float32") for _ in range(2))
    wv, wo = rng.standard_normal((16, 8)).astype("float32"), rng.standard_normal((8, 16)).astype("float32")
    for conv, kernel in zip((layer.query, layer.key, layer.value, layer.out), (wq, wk, wv, wo), strict=True):
        conv.kernel.assign(kernel[None, None])
    layer.gamma.assign(0.7)
    expected = numpy_attention(x[0], wq, wk, wv, wo, 0.7)
    np.testing.assert_allclose(layer(x).numpy()[0], expected, rtol=1e-4, atol=1e-4)


def cbn_outputs(g: keras.Model) -> keras.Model:
    """The generator with every block's first conditional batch norm and the image as outputs."""
    names = sorted(layer.name for layer in g.layers if layer.name.endswith("_cbn1"))
    return keras.Model(g.inputs, [g.get_layer(n).output for n in names] + [g.output])


@pytest.mark.parametrize("n_classes", [0, 3])
def test_each_z_chunk_reaches_its_own_block(n_classes):
    p = tiny(conditional=bool(n_classes))
    g = biggan.make_generator(p, (32, 32, 3), n_classes)
    probe = cbn_outputs(g)
    chunks = biggan.z_chunks(p.z_dim, 4)
    labels = np.array([1, 2], np.int32)
    feed = (lambda z: [z, labels]) if n_classes else (lambda z: z)  # noqa: E731
    base = [t.numpy() for t in probe(feed(noise(2)), training=False)]
    for k, (a, b) in enumerate(chunks):
        z = noise(2)
        z[:, a:b] += 1.0
        out = [t.numpy() for t in probe(feed(z), training=False)]
        block = k - 1  # chunk 0 feeds the first linear layer, chunk k the block k - 1
        for i in range(3):
            changed = np.abs(out[i] - base[i]).max() > 1e-4
            assert changed == (i >= block), (k, i)
        assert np.abs(out[-1] - base[-1]).max() > 1e-4
    if n_classes:
        other = probe([noise(2), (labels + 1) % 3], training=False)
        assert all(np.abs(o.numpy() - b).max() > 1e-4 for o, b in zip(other, base, strict=True))


def test_weights_start_orthogonal():
    g = biggan.make_generator(tiny(), (32, 32, 3))
    d = biggan.make_discriminator(tiny(), (32, 32, 3))
    kernels = [w.numpy() for w in g.weights + d.weights if "kernel" in w.path]
    assert len(kernels) > 20
    for kernel in kernels:
        w = kernel.reshape(-1, kernel.shape[-1])
        gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
        np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-4)


def test_saved_generator_reloads_with_the_same_output(tmp_path):
    p = tiny(conditional=True, attention=16)
    g = biggan.make_generator(p, (32, 32, 3), 3)
    labels = np.array([0, 2], np.int32)
    g([noise(2), labels], training=True)  # spectral norm and batch-norm statistics move off their start
    g.get_layer("attention16").gamma.assign(0.5)
    meta = sampling.Generator(
        None, p.z_dim, n_classes=3, class_probs=(0.2, 0.3, 0.5), image_shape=(32, 32, 3)
    )
    report.write_generator(g, meta, tmp_path)
    loaded = sampling.load_generator(tmp_path)
    np.testing.assert_allclose(
        loaded.model([noise(2, seed=1), labels], training=False),
        g([noise(2, seed=1), labels], training=False),
        atol=1e-5,
    )
    assert next(sampling.generate(loaded, 3, batch_size=3)).shape == (3, 32, 32, 3)


def test_biggan_trains_conditionally_through_the_stage(prepared, run_train):
    params = tiny(epochs=1, z_dim=8, conditional=True, attention=8, spectral_norm=False)  # traces in seconds
    out, summary = run_train(prepared, params)
    assert summary["steps"] == 4
    gen = sampling.load_generator(out / "models")
    assert gen.n_classes == 2 and next(sampling.generate(gen, 2, batch_size=2)).shape == (2, 16, 16, 3)
    assert gen.breeds == ("a", "b")  # recorded for `doggan generate --breed`


def gradients_on(strategy, params: TrainParams, inputs: dict) -> list[np.ndarray]:
    """Global D and G gradients, then the step's stats, of one step summed over the replicas."""
    with strategy.scope():
        gan = state.build_gan(SIDE, params, 10, n_classes=3)
    dist = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(inputs))

    def replica(batch):
        result = train_step.losses_and_grads(gan, params, batch, 8)
        stats = tf.stack([result.values[k] for k in ("d_loss", "g_loss", "d_real", "d_fake")])
        grads = [*result.d_grads, *result.g_grads, stats]
        return [tf.convert_to_tensor(v) for v in grads]  # the embedding's are IndexedSlices

    @tf.function
    def run(batch):
        per_replica = strategy.run(replica, (batch,))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica]

    return [x.numpy() for x in run(next(iter(dist)))]


def replicas_main(out: str) -> None:
    """One step's gradients on 1 and on 2 logical CPU devices, saved to `out`."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    params = tiny(conditional=True, attention=0, loss="gan", label_noise=0.2)
    z, real_t, fake_t = train_inputs.step_inputs(tf.constant(0, tf.int64), 8, params.z_dim, params)
    images = np.random.default_rng(0).uniform(-1, 1, (8, *SIDE))
    inputs = {
        "images": tf.constant(images, tf.float32),
        "labels": tf.constant(np.arange(8) % 3, tf.int32),
        "z": z,
        "real_t": real_t,
        "fake_t": fake_t,
    }
    one = gradients_on(tf.distribute.MirroredStrategy(["/cpu:0"]), params, inputs)
    two_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    two = gradients_on(two_strategy, params, inputs)
    arrays = {f"one_{i:03d}": x for i, x in enumerate(one)} | {f"two_{i:03d}": x for i, x in enumerate(two)}
    np.savez(out, replicas=two_strategy.num_replicas_in_sync, **arrays)


@pytest.mark.slow
def test_two_replicas_compute_the_gradients_of_one(tmp_path):
    out = tmp_path / "grads.npz"
    run_mode(HERE, "replicas", out, timeout=300)
    data = np.load(out)
    assert int(data["replicas"]) == 2
    names = sorted(k for k in data.files if k.startswith("one_"))
    assert len(names) > 40  # every D and G gradient, then the losses and mean scores
    for name in names:
        one, two = data[name], data[name.replace("one_", "two_")]
        np.testing.assert_allclose(two, one, rtol=1e-3, atol=1e-5 * max(1.0, np.abs(one).max()))


if __name__ == "__main__":
    {"replicas": replicas_main}[sys.argv[1]](sys.argv[2])
