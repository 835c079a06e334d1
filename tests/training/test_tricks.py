"""Each training trick is a param that reaches the networks or the train step, and changes what it should.

Experience replay, dropout, the initialiser's scale, biases, loss balancing, LeCam regularization, top-k
training and ADA's adaptive augmentation probability, on one replica and on two (logical CPU devices,
configured in a subprocess before TensorFlow starts).
"""

import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import run_mode, tiny_params

from doggan import networks
from doggan.params import AugmentParams, TrainParams
from doggan.training.inputs import train_dataset
from doggan.training.policy import augment_stage
from doggan.training.state import build_gan
from doggan.training.step import STEP_VALUES, make_train_step, step_losses, update_ada, update_lecam

HERE = Path(__file__).resolve()
SHAPE = (8, 8, 3)  # the smallest side the networks draw: fewer blocks to trace and compile


def tiny(**overrides):
    """Tiny settings with the BCE loss (balancing compares BCE losses)."""
    return tiny_params(loss="gan", **overrides)


ADA = AugmentParams(diff="translation,cutout", ada_target=0.6)


def build(params, strategy=None, policy=None):
    strategy = strategy or tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        gan = build_gan(SHAPE, params, 20, policy=policy)
    return strategy, gan


def batches(params, n=32):
    """A distributed iterator over the training input pipeline, on random images."""
    images = np.random.default_rng(0).integers(0, 256, (n, *SHAPE), dtype=np.uint8)
    return train_dataset(images, np.zeros(n, np.int32), AugmentParams(), params, 0)


def run(strategy, gan, params, plan, diff="", compiled=None):
    """Run the steps of `plan`, a list of (update_g, replay), from the first batch; returns the values of
    each, by name. `compiled` keeps the compiled steps of `gan` between calls (each traced once)."""
    iterator = iter(strategy.experimental_distribute_dataset(batches(params)))
    compiled = {} if compiled is None else compiled
    out = []
    for key in plan:
        if key not in compiled:
            compiled[key] = make_train_step(strategy, gan, params, *key, diff=diff)
        out.append({k: float(v) for k, v in compiled[key](next(iterator)).items()})
    return out


def trained(model):
    """The trainable weights (batch-norm statistics move in any training call)."""
    return [v.numpy() for v in model.trainable_variables]


def changed(before, after):
    return any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


# --- experience replay ----------------------------------------------------------------------------------


def test_replay_buffer_keeps_its_size_over_many_steps():
    params = tiny(replay_size=24)
    strategy, gan = build(params)
    assert gan.replay.size == 24
    stats = run(strategy, gan, params, [(True, k > 0 and k % 2 == 0) for k in range(15)])
    assert all(np.isfinite(list(s.values())).all() for s in stats)
    images = gan.replay.images.numpy()
    assert images.shape == (24, *SHAPE)
    assert int(gan.replay.count.numpy()) == 15 * 8  # every step wrote its fakes; the ring did not grow
    assert (np.abs(images).reshape(24, -1).max(axis=1) > 0).all()  # every slot holds a fake
    assert np.abs(images).max() <= 1.0


@pytest.fixture(scope="module")
def plain_steps():
    """Two plain steps of a fresh tiny() GAN from the first batch: (each step's values, D's weights after),
    made once for the replay and the balancing checks (their tests share an xdist group)."""
    params = tiny()
    strategy, plain = build(params)
    stats = run(strategy, plain, params, [(True, False), (True, False)])
    return stats, plain.discriminator.get_weights()


PLAIN_STEPS = pytest.mark.xdist_group("tricks-plain-steps")


@PLAIN_STEPS
def test_replay_changes_the_discriminator_update(plain_steps):
    with_replay = tiny(replay_size=16, replay_every=2)
    _, plain_d = plain_steps  # the same steps without a replay buffer
    strategy, replayed = build(with_replay)
    run(strategy, replayed, with_replay, [(True, False), (True, True)])
    strategy, kept = build(with_replay)  # a buffer that is filled but not replayed changes nothing
    run(strategy, kept, with_replay, [(True, False), (True, False)])
    assert changed(replayed.discriminator.get_weights(), plain_d)
    for a, b in zip(kept.discriminator.get_weights(), plain_d, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# --- dropout, initialiser scale, biases -----------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["dcgan", "dcgan-mnist"])
def test_dropout_reaches_both_networks_and_is_active_in_training(architecture):
    shape = (28, 28, 1)
    # without spectral norm, whose power iteration would also change D between two training calls
    params = tiny(architecture=architecture, g_dropout=0.5, d_dropout=0.5, spectral_norm=False)
    off = params.model_copy(update={"g_dropout": 0.0, "d_dropout": 0.0})
    z = np.random.default_rng(0).uniform(-1, 1, (4, 8)).astype("float32")
    for p, rate in ((params, 0.5), (off, None)):
        g = networks.make_generator(p, shape)
        d = networks.make_discriminator(p, shape)
        for model, x in ((g, z), (d, np.tanh(np.random.default_rng(1).normal(size=(4, *shape))))):
            rates = {layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)}
            assert rates == ({rate} if rate else set())
            first, second = model(x, training=True).numpy(), model(x, training=True).numpy()
            assert (not np.allclose(first, second)) == bool(rate)
            np.testing.assert_array_equal(model(x, training=False), model(x, training=False))


@pytest.mark.parametrize("stddev", [0.02, 0.1])
def test_init_stddev_sets_the_scale_of_the_weights(stddev):
    params = TrainParams(init_stddev=stddev, g_filters=64, d_filters=32, z_dim=64)
    g = networks.make_generator(params, (32, 32, 3))
    d = networks.make_discriminator(params, (32, 32, 3))
    for model in (g, d):
        kernels = [v.numpy() for v in model.weights if v.name == "kernel"]
        assert kernels
        for kernel in kernels:
            assert kernel.std() == pytest.approx(stddev, rel=0.1)
    glorot = networks.make_generator(params.model_copy(update={"init_stddev": 0.0}), (32, 32, 3))
    first = next(v.numpy() for v in glorot.weights if v.name == "kernel")
    fan_in, fan_out = first.shape
    assert first.std() == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.1)


@pytest.mark.parametrize("architecture", ["dcgan", "mlp", "dcgan-faces"])
def test_use_bias_false_leaves_no_bias_variables(architecture):
    shape = (28, 28, 1) if architecture != "dcgan-faces" else (40, 40, 3)
    with_bias = tiny(architecture=architecture, use_bias=True)
    without = with_bias.model_copy(update={"use_bias": False})
    for make in (networks.make_generator, networks.make_discriminator):
        assert [v for v in make(with_bias, shape).weights if v.name == "bias"]
        assert not [v for v in make(without, shape).weights if v.name == "bias"]


# --- loss balancing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("skipped", ["d", "g"])
def test_balancing_skips_the_update_of_the_network_far_ahead(skipped):
    # A tiny ratio makes "loss × ratio < the other loss" true at every step: the named network never moves.
    # (Spectral norm is off: its power iteration rewrites D's kernels in every training call.)
    ratios = {"balance_d": 1e-9} if skipped == "d" else {"balance_g": 1e-9}
    params = tiny(spectral_norm=False, **ratios)
    strategy, gan = build(params)
    d0, g0 = trained(gan.discriminator), trained(gan.generator)
    stats = run(strategy, gan, params, [(True, False)] * 3)
    d_moved = changed(d0, trained(gan.discriminator))
    g_moved = changed(g0, trained(gan.generator))
    assert (d_moved, g_moved) == ((False, True) if skipped == "d" else (True, False))
    iterations = int(gan.d_opt.iterations.numpy()), int(gan.g_opt.iterations.numpy())
    assert iterations == ((0, 3) if skipped == "d" else (3, 0))
    column, other = ("d_skipped", "g_skipped") if skipped == "d" else ("g_skipped", "d_skipped")
    assert [s[column] for s in stats] == [1.0, 1.0, 1.0] and [s[other] for s in stats] == [0.0] * 3


@PLAIN_STEPS
def test_balancing_ratios_of_zero_never_skip(plain_steps):
    stats, _ = plain_steps  # tiny(): balance_d and balance_g are 0
    assert not any(s[k] for s in stats for k in ("d_skipped", "g_skipped"))


def test_skipped_updates_are_counted_in_the_training_metrics(prepared, run_train):
    params = tiny(epochs=2, balance_d=1e-9, replay_size=16, replay_every=2)
    out, summary = run_train(prepared, params)
    assert (summary["d_skipped"], summary["g_skipped"]) == (8, 0)
    metrics = json.loads((out / "live" / "metrics.json").read_text())
    assert metrics["train"]["d_skipped"] == 4 and metrics["train"]["g_skipped"] == 0
    assert metrics["d_skipped"] == 8
    rows = (out / "live" / "plots" / "metrics" / "train" / "d_skipped.tsv").read_text().split()
    assert rows[0] == "step" and rows[-1] == "4"
    reader = tf.train.load_checkpoint(str(out / "ckpt"))
    assert any(name.startswith("replay_images") for name in reader.get_variable_to_shape_map())


# --- LeCam regularization ------------------------------------------------------------------------------


def test_lecam_adds_its_weighted_penalty_to_ds_loss_only():
    params = tiny(lecam=0.3)
    real, fake = np.array([1.0, -0.5, 0.2, 2.0], np.float32), np.array([0.8, 0.0, -1.5, 0.1], np.float32)
    inputs = {"images": tf.zeros((4, 2)), "real_t": tf.ones(4), "fake_t": tf.zeros(4)}
    logits = tf.constant(np.concatenate([real, fake]))
    anchors = tf.constant([0.5, -0.2])
    plain = step_losses(params, logits, inputs, 4, False)
    values = step_losses(params, logits, inputs, 4, False, (anchors, tf.constant(0.3)))
    penalty = np.maximum(real + 0.2, 0) ** 2 + np.maximum(0.5 - fake, 0) ** 2
    assert float(values["d_total"] - plain["d_total"]) == pytest.approx(0.3 * penalty.mean(), rel=1e-5)
    for name in ("d_loss", "g_loss"):
        assert float(values[name]) == float(plain[name])
    assert float(values["real_logit"]) == pytest.approx(real.mean()) and float(values["real_sign"]) == 0.5


def test_lecam_averages_start_at_the_first_steps_means_then_decay_at_0_99():
    _, gan = build(tiny(lecam=0.3))
    update_lecam(gan, tf.constant(2.0), tf.constant(-1.0))
    np.testing.assert_allclose(gan.lecam.numpy(), [2.0, -1.0])
    gan.step.assign(1)
    update_lecam(gan, tf.constant(0.0), tf.constant(1.0))
    np.testing.assert_allclose(gan.lecam.numpy(), [1.98, -0.98], rtol=1e-6)


def test_lecam_changes_ds_update_from_the_second_step():
    weights = {}
    for lecam in (0.0, 0.3):
        params = tiny(lecam=lecam)
        strategy, gan = build(params)
        compiled = {}
        run(strategy, gan, params, [(True, False)], compiled=compiled)
        first = trained(gan.discriminator)
        run(strategy, gan, params, [(True, False)], compiled=compiled)
        weights[lecam] = first, trained(gan.discriminator)
        assert (gan.lecam is None) == (lecam == 0.0)
    assert not changed(weights[0.0][0], weights[0.3][0])  # no anchors yet on the first step
    assert changed(weights[0.0][1], weights[0.3][1])


# --- top-k training -------------------------------------------------------------------------------------


def test_top_k_gives_gs_loss_only_from_the_fakes_d_scores_highest():
    params = tiny(top_k=0.5)
    real, fake = np.array([1.0, -0.5, 0.2, 2.0], np.float32), np.array([0.8, 0.0, -1.5, 0.1], np.float32)
    inputs = {"images": tf.zeros((4, 2)), "real_t": tf.ones(4), "fake_t": tf.zeros(4)}
    logits = tf.constant(np.concatenate([real, fake]))
    plain = step_losses(params, logits, inputs, 4, False)
    values = step_losses(params, logits, inputs, 4, False, top_k=tf.constant(0.5))
    kept = np.log1p(np.exp(-fake[[0, 3]]))  # non-saturating BCE of the two highest-scored fakes
    assert float(values["g_loss"]) == pytest.approx(kept.mean(), rel=1e-5)
    assert float(values["d_loss"]) == float(plain["d_loss"])
    assert float(plain["g_loss"]) == pytest.approx(np.log1p(np.exp(-fake)).mean(), rel=1e-5)


def test_top_k_changes_gs_update_once_its_share_is_below_one():
    weights = {}
    for share in (1.0, 0.25):
        params = tiny(top_k=0.25)
        strategy, gan = build(params)
        gan.top_k.assign(share)
        run(strategy, gan, params, [(True, False)])
        weights[share] = trained(gan.generator)
    assert changed(weights[1.0], weights[0.25])
    assert build(tiny())[1].top_k is None


def test_the_loop_sets_and_logs_the_top_k_share_of_each_epoch(prepared, run_train):
    out, _ = run_train(prepared, tiny(epochs=3, top_k=0.3, top_k_decay=0.5))
    rows = (out / "live" / "plots" / "metrics" / "train" / "top_k.tsv").read_text().split()
    np.testing.assert_allclose([float(v) for v in rows[3::2]], [1.0, 0.5, 0.3])  # 0.3 = max(0.3, 0.5**2)


# --- ADA ------------------------------------------------------------------------------------------------


def test_ada_moves_p_at_the_end_of_each_interval_from_the_signs_of_d_on_reals():
    _, gan = build(tiny(), policy=ADA)
    step = 8 * 4 / 500_000
    for _ in range(4):  # D sure of every real: p rises once, at the fourth step
        assert float(gan.ada.p.numpy()) == 0.0
        update_ada(gan.ada, gan.step, tf.constant(1.0), 8)
        gan.step.assign_add(1)
    assert float(gan.ada.p.numpy()) == pytest.approx(step) and float(gan.ada.signs.numpy()) == 0.0
    for _ in range(8):  # D unsure (mean sign 0.5 < 0.6): p falls, and stops at 0
        update_ada(gan.ada, gan.step, tf.constant(0.5), 8)
        gan.step.assign_add(1)
    assert float(gan.ada.p.numpy()) == 0.0


def test_without_ada_target_there_is_no_probability_and_ada_needs_ops():
    _, gan = build(tiny(), policy=AugmentParams(diff="translation"))
    assert gan.ada is None
    with pytest.raises(ValueError, match="ada_target"):
        AugmentParams(ada_target=0.6)


def test_ada_p_and_lecam_averages_are_logged_and_checkpointed(prepared, run_train):
    fast = ADA.model_copy(update={"ada_kimg": 0.001, "preview": 4})  # p moves all the way each interval
    augment_stage(prepared / "crops.npz", fast, prepared / "policy.json", prepared / "aug.png")
    out, _ = run_train(prepared, tiny(epochs=2, lecam=0.3))
    metrics = json.loads((out / "live" / "metrics.json").read_text())
    assert metrics["train"]["ada_p"] in (0.0, 1.0)
    rows = (out / "live" / "plots" / "metrics" / "train" / "ada_p.tsv").read_text().split()
    assert rows[0] == "step" and len(rows) == 2 + 2 * 2
    reader = tf.train.load_checkpoint(str(out / "ckpt"))
    names = reader.get_variable_to_shape_map()
    assert {"ada_p", "ada_signs", "lecam"} <= {name.split("/")[0] for name in names}
    lecam = next(reader.get_tensor(n) for n in names if n.startswith("lecam/"))
    assert lecam.shape == (2,) and np.isfinite(lecam).all() and np.abs(lecam).max() > 0


# --- two replicas ---------------------------------------------------------------------------------------

# The two subprocess runs share an xdist group: pytest-xdist starts groups before single tests, so these
# long ones begin early rather than last, while the short tests fill both workers to the end.
TWO_REPLICAS = pytest.mark.xdist_group("tricks-two-replicas")


def replicas_main(out: str) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    params = tiny(replay_size=8, balance_d=1e-9, spectral_norm=False)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    _, gan = build(params, strategy)
    d0 = trained(gan.discriminator)
    stats = run(strategy, gan, params, [(True, k > 0) for k in range(5)])
    local = strategy.experimental_local_results(gan.replay.count)
    np.savez(
        out,
        replicas=strategy.num_replicas_in_sync,
        stats=np.array([[s[k] for k in STEP_VALUES] for s in stats]),
        names=np.array(STEP_VALUES),
        counts=np.array([int(c.numpy()) for c in local]),
        buffer_rows=gan.replay.images.shape[0],
        d_moved=changed(d0, trained(gan.discriminator)),
    )


@pytest.mark.slow
@TWO_REPLICAS
def test_replay_and_balancing_on_two_replicas(tmp_path):
    run_mode(HERE, "replicas", tmp_path / "out.npz")
    data = np.load(tmp_path / "out.npz")
    assert int(data["replicas"]) == 2
    assert data["counts"].tolist() == [5 * 4, 5 * 4]  # each replica wrote its half of every batch
    assert int(data["buffer_rows"]) == 8
    assert np.isfinite(data["stats"]).all()
    d_skipped = data["stats"][:, list(data["names"]).index("d_skipped")]
    assert d_skipped.tolist() == [1.0] * 5  # the two replicas agreed to skip, counted once
    assert not bool(data["d_moved"])


def averages_main(out: str) -> None:
    """LeCam's averages and ADA's p after 8 steps on one replica and on two, each replica's copy."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    params = tiny(lecam=0.3)
    policy = ADA.model_copy(update={"ada_kimg": 1.0})
    found = {}
    for devices in (["/cpu:0"], ["/cpu:0", "/cpu:1"]):
        strategy, gan = build(params, tf.distribute.MirroredStrategy(devices), policy)
        gan.ada.p.assign(0.5)  # half the images augmented by each op, and room to move either way
        run(strategy, gan, params, [(True, False)] * 8, diff=policy.diff)
        local = strategy.experimental_local_results
        found[f"lecam{len(devices)}"] = np.array([v.numpy() for v in local(gan.lecam)])
        found[f"p{len(devices)}"] = np.array([v.numpy() for v in local(gan.ada.p)])
    np.savez(out, **found)


@pytest.mark.slow
@TWO_REPLICAS
def test_lecam_and_ada_hold_one_value_for_every_replica(tmp_path):
    run_mode(HERE, "averages", tmp_path / "out.npz")
    data = np.load(tmp_path / "out.npz")
    assert data["lecam2"].shape == (2, 2) and data["p2"].shape == (2,)
    np.testing.assert_array_equal(data["lecam2"][0], data["lecam2"][1])
    np.testing.assert_array_equal(data["p2"][0], data["p2"][1])
    np.testing.assert_allclose(data["lecam2"][0], data["lecam1"][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(data["p2"], data["p1"][0], atol=1e-7)
    assert np.abs(data["lecam1"]).max() > 0
    assert abs(abs(data["p1"][0] - 0.5) - 2 * 8 * 4 / 1000) < 1e-6  # moved at the end of both intervals


if __name__ == "__main__":
    {"replicas": replicas_main, "averages": averages_main}[sys.argv[1]](sys.argv[2])
