"""Training: every output of the stage, resume, the step's losses and the learning-rate schedules."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_params

from doggan.errors import DogganError
from doggan.output import critic, sampling
from doggan.params import AugmentParams
from doggan.training import loop, losses, state
from doggan.training import step as train_step
from doggan.training.inputs import instance_noise_std, train_dataset
from doggan.training.inputs import step_inputs as global_step_inputs

SHAPE = (8, 8, 3)  # the `prepared` crops' side, the smallest the networks draw: fewer blocks to trace


def test_stage_writes_a_loadable_generator_metrics_plots_and_checkpoints(prepared, run_train):
    params = tiny_params(epochs=2, checkpoint_every=3, ema_decay=0.5)
    out, summary = run_train(prepared, params)
    assert summary["steps"] == 8
    gen = sampling.load_generator(out / "models")
    assert gen.z_dim == 8 and gen.image_shape == SHAPE
    images = next(sampling.generate(gen, 4, batch_size=4))
    assert images.shape == (4, *SHAPE)
    assert np.isfinite(critic.score(critic.load_critic(out / "models", gen), images, None)).all()
    metrics = json.loads((out / "live" / "metrics.json").read_text())
    assert metrics["steps"] == 8 and metrics["epochs"] == 2
    for name in ("d_loss", "g_loss", "d_real", "d_fake", "lr_g", "lr_d", "images_per_s"):
        assert name in metrics["train"]
    assert (out / "plots" / "samples.png").is_file() and (out / "plots" / "progress.gif").is_file()
    assert len(list((out / "plots" / "epochs").glob("*.png"))) == 2
    assert tf.train.latest_checkpoint(str(out / "ckpt")).endswith("ckpt-8")

    (out / "models" / "generator.keras").unlink()
    _, again = run_train(prepared, params.model_copy(update={"resume": True}))
    assert again["steps"] == 8 and (out / "models" / "generator.keras").is_file()

    _, longer = run_train(prepared, params.model_copy(update={"resume": True, "epochs": 3}))
    assert longer["steps"] == 12
    metrics = json.loads((out / "live" / "metrics.json").read_text())
    assert metrics["steps"] == 12


def test_without_resume_old_checkpoints_are_cleared(prepared, run_train):
    params = tiny_params(epochs=2, checkpoint_every=3)
    out, _ = run_train(prepared, params)
    _, summary = run_train(prepared, params.model_copy(update={"epochs": 1}))
    assert summary["steps"] == 4
    assert tf.train.latest_checkpoint(str(out / "ckpt")).endswith("ckpt-4")


def single_replica(params, total_steps=10):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        gan = state.build_gan(SHAPE, params, total_steps)
    return strategy, gan


def step_inputs(params, step=0):
    rng = np.random.default_rng(step)
    images = tf.constant(rng.uniform(-1, 1, (params.batch_size, *SHAPE)), tf.float32)
    z, real_t, fake_t = global_step_inputs(
        tf.constant(step, tf.int64), params.batch_size, params.z_dim, params
    )
    return {
        "images": images,
        "labels": tf.zeros(params.batch_size, tf.int32),
        "z": z,
        "real_t": real_t,
        "fake_t": fake_t,
    }


def test_step_loss_is_computed_from_the_smoothed_flipped_targets():
    params = tiny_params(loss="gan", label_noise=0.3)
    strategy, gan = single_replica(params)
    inputs = step_inputs(params)
    assert not np.allclose(inputs["real_t"].numpy(), 1.0) and np.any(inputs["real_t"].numpy() < 0.5)
    g_weights, d_weights = gan.generator.get_weights(), gan.discriminator.get_weights()
    fake = gan.generator(inputs["z"], training=True)
    logits = tf.reshape(gan.discriminator(tf.concat([inputs["images"], fake], 0), training=True), [-1])
    real_logits, fake_logits = logits[: params.batch_size], logits[params.batch_size :]
    expected = tf.reduce_mean(
        losses.discriminator_loss("gan", real_logits, fake_logits, inputs["real_t"], inputs["fake_t"])
    ).numpy()
    hard = tf.reduce_mean(
        losses.discriminator_loss(
            "gan", real_logits, fake_logits, tf.ones_like(real_logits), tf.zeros_like(fake_logits)
        )
    ).numpy()
    gan.generator.set_weights(g_weights)
    gan.discriminator.set_weights(d_weights)
    d_loss = float(train_step.make_train_step(strategy, gan, params)(inputs)["d_loss"])
    assert d_loss == pytest.approx(expected, rel=1e-5)
    assert abs(d_loss - hard) > 1e-3


def test_each_optimizer_applies_its_own_cosine_rate():
    params = tiny_params(lr_g=1e-3, lr_d=4e-3, lr_schedule="cosine")
    total = 6
    strategy, gan = single_replica(params, total)
    step = train_step.make_train_step(strategy, gan, params)
    for k in range(total + 1):
        for opt, base in ((gan.g_opt, params.lr_g), (gan.d_opt, params.lr_d)):
            applied = state.current_rate(opt)
            assert applied == pytest.approx(
                base * 0.5 * (1 + math.cos(math.pi * k / total)), rel=1e-5, abs=1e-9
            )
        if k < total:
            step(step_inputs(params, k))


@pytest.mark.parametrize("flags", [{"mixed_precision": True}, {"jit_compile": True}])
def test_mixed_precision_and_xla_steps_run_on_cpu(flags):
    params = tiny_params(**flags)
    if params.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        strategy, gan = single_replica(params)
        step = train_step.make_train_step(strategy, gan, params)
        before = gan.discriminator.get_weights()[0].copy()
        for k in range(3):
            values = step(step_inputs(params, k))
        assert all(np.isfinite(float(v)) for v in values.values())
        assert not np.allclose(before, gan.discriminator.get_weights()[0])
        assert gan.generator.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_xla_refuses_a_discriminator_with_synchronized_batch_norm():
    params = tiny_params(jit_compile=True)
    strategy, gan = single_replica(params)
    train_step.make_train_step(strategy, gan, params)  # the project's discriminators have none
    with strategy.scope():
        images = keras.Input(SHAPE)
        x = keras.layers.BatchNormalization(synchronized=True)(keras.layers.Flatten()(images))
        gan.discriminator = keras.Model(images, keras.layers.Dense(1)(x))
    with pytest.raises(DogganError, match=r"train.jit_compile .* synchronized batch norm"):
        train_step.make_train_step(strategy, gan, params)
    train_step.make_train_step(strategy, gan, params.model_copy(update={"jit_compile": False}))


def warmed_up(step, decay, start=0):
    """The EMA's per-update decay at 0-based step `step`: 0 before `start`, then warmed up to `decay`."""
    t = step - start
    return 0.0 if t < 0 else min(decay, (1 + t) / (10 + t))


def moved_decay(step, decay, start=0, n_critic=1):
    """The decay of the EMA's move after step `step`: the product of the warmed-up decays of the last
    EMA_EVERY updates of G on every EMA_EVERY-th update, else 1 (no move)."""
    if ((step + 1) // n_critic) % state.EMA_EVERY:
        return 1.0
    return math.prod(warmed_up(step - i * n_critic, decay, start) for i in range(state.EMA_EVERY))


@pytest.fixture(scope="module")
def ema_step():
    """`ema_step(**settings)`: (params, gan, its compiled step) on one replica for tiny_params(**settings),
    made once per settings and kept for the module: each EMA case below sets the step it takes and reads
    the EMA it starts from, so the weights earlier cases left do not matter, and one trace serves them all."""
    made = {}

    def get(**settings):
        key = tuple(sorted(settings.items()))
        if key not in made:
            params = tiny_params(**settings)
            strategy, gan = single_replica(params)
            made[key] = params, gan, train_step.make_train_step(strategy, gan, params)
        return made[key]

    return get


@pytest.mark.parametrize("step", [0, 2, 3, 7, 1000, 1003])
def test_ema_follows_the_generator_every_few_updates_with_the_product_of_its_warmed_up_decays(ema_step, step):
    params, gan, train = ema_step(ema_decay=0.9)
    gan.step.assign(step)
    start = [w.copy() for w in gan.ema.get_weights()]
    train(step_inputs(params))
    decay = moved_decay(step, 0.9)
    assert (decay == 1.0) == (step in (0, 2, 1000))
    for e0, e1, w in zip(start, gan.ema.get_weights(), gan.generator.get_weights(), strict=True):
        np.testing.assert_allclose(e1, decay * e0 + (1 - decay) * w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("step", [3, 7, 11, 12])
def test_ema_copies_the_generator_until_ema_start_then_warms_up_from_there(ema_step, step):
    params, gan, train = ema_step(ema_decay=0.9, ema_start=5)
    gan.ema.set_weights([w + 1.0 for w in gan.ema.get_weights()])
    gan.step.assign(step)
    start = [w.copy() for w in gan.ema.get_weights()]
    train(step_inputs(params))
    decay = moved_decay(step, 0.9, start=5)
    assert decay == {3: 0.0, 7: 0.0, 12: 1.0}.get(step, decay)  # a move over step 4 copies G
    for e0, e1, w in zip(start, gan.ema.get_weights(), gan.generator.get_weights(), strict=True):
        np.testing.assert_allclose(e1, decay * e0 + (1 - decay) * w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_critic", [1, 2])
def test_the_ema_s_moves_average_a_still_generator_as_every_update_would(n_critic):
    """With G's weights held still, a move every EMA_EVERY updates of G lands where one update after each
    would (the product of their decays), so the average keeps its effective decay; between moves it stays."""
    params = tiny_params(ema_decay=0.9, n_critic=n_critic)
    strategy, gan = single_replica(params)
    gan.ema.set_weights([w + 1.0 for w in gan.ema.get_weights()])
    e0, w = gan.ema.get_weights(), gan.generator.get_weights()
    move = tf.function(lambda: state.update_ema(gan, params))
    exact = 1.0  # the weight of e0 after an EMA update at every update of G
    for step in range(n_critic - 1, 40, n_critic):  # the steps that update G
        gan.step.assign(step)
        move()
        exact *= warmed_up(step, 0.9)
        if ((step + 1) // n_critic) % state.EMA_EVERY == 0:
            for a, b, c in zip(gan.ema.get_weights(), e0, w, strict=True):
                np.testing.assert_allclose(a, exact * b + (1 - exact) * c, rtol=1e-5, atol=1e-6)
    assert exact < 1e-3


def optimizer_iterations(checkpoint_dir):
    reader = tf.train.load_checkpoint(str(checkpoint_dir))
    names = reader.get_variable_to_shape_map()
    g = next(n for n in names if n.startswith("g_opt/") and "iteration" in n)
    d = next(n for n in names if n.startswith("d_opt/") and "iteration" in n)
    return int(reader.get_tensor(g)), int(reader.get_tensor(d))


def test_n_critic_updates_the_discriminator_more_often(prepared, run_train):
    out, summary = run_train(prepared, tiny_params(epochs=2, n_critic=2))
    assert summary["steps"] == 8
    assert optimizer_iterations(out / "ckpt") == (4, 8)


def test_non_finite_loss_stops_naming_the_step(prepared, run_train):
    params = tiny_params(epochs=2, lr_d=1e30, spectral_norm=False)
    with pytest.raises(DogganError, match=r"non-finite loss at step \d+"):
        run_train(prepared, params)


def test_rollback_restores_the_last_checkpoint_with_a_lower_rate(prepared, run_train):
    params = tiny_params(epochs=2, checkpoint_every=4, spectral_norm=False)
    run_train(prepared, params)
    diverging = params.model_copy(
        update={
            "epochs": 3,
            "resume": True,
            "lr_d": 1e30,
            "on_nonfinite": "rollback",
            "rollback_lr_factor": 1e-33,
        }
    )
    out, summary = run_train(prepared, diverging)
    assert summary["steps"] == 12 and summary["rollbacks"] >= 1
    assert np.isfinite(sampling.load_generator(out / "models").model.get_weights()[0]).all()


CHILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from conftest import tiny_params, train_paths
from doggan.training import loop
from doggan.params import EvalParams
loop.train_stage(train_paths(Path(sys.argv[1])), tiny_params(**json.loads(sys.argv[3])), EvalParams())
"""


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint_and_ends_at_the_planned_total(prepared, run_train):
    settings = dict(epochs=25, checkpoint_every=10)
    out = prepared / "out"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(prepared), str(Path(__file__).parents[1]), json.dumps(settings)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while tf.train.latest_checkpoint(str(out / "ckpt")) is None:
            assert child.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    saved = int(tf.train.latest_checkpoint(str(out / "ckpt")).rsplit("-", 1)[1])
    assert 10 <= saved < 100
    _, summary = run_train(prepared, tiny_params(resume=True, **settings))
    assert summary["start_step"] >= saved and summary["start_step"] % 10 == 0
    assert summary["steps"] == 100
    assert tf.train.latest_checkpoint(str(out / "ckpt")).endswith("ckpt-100")
    assert sampling.load_generator(out / "models").z_dim == 8


def test_resume_passes_over_a_damaged_newest_checkpoint_to_the_one_before_it(prepared, run_train, caplog):
    params = tiny_params(epochs=2, checkpoint_every=3)
    out, _ = run_train(prepared, params.model_copy(update={"epochs": 1}))  # checkpoints 3 and 4
    newest = out / "ckpt" / "ckpt-4.data-00000-of-00001"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    (out / "ckpt" / "checkpoint").write_bytes(b"\xff\xfe not a checkpoint state")  # found without it
    _, summary = run_train(prepared, params.model_copy(update={"resume": True}))
    assert summary["start_step"] == 3 and summary["steps"] == 8
    warnings = " ".join(r.message for r in caplog.records if r.levelname == "WARNING")
    assert "ckpt-4 cannot be restored" in warnings and "resuming from" in warnings
    assert tf.train.latest_checkpoint(str(out / "ckpt")).endswith("ckpt-8")

    for data in (out / "ckpt").glob("*.data-*"):
        data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(DogganError, match=r"no checkpoint can be restored.*train.resume=false"):
        run_train(prepared, params.model_copy(update={"resume": True, "epochs": 3}))


def test_conditional_training_records_class_proportions(prepared, run_train):
    out, summary = run_train(prepared, tiny_params(epochs=1, conditional=True))
    assert summary["steps"] == 4
    gen = sampling.load_generator(out / "models")
    assert gen.n_classes == 2 and gen.class_probs == pytest.approx((0.5, 0.5))
    assert next(sampling.generate(gen, 6, batch_size=6)).shape == (6, *SHAPE)


def test_instance_noise_is_annealed_to_zero_and_reaches_the_discriminator():
    params = tiny_params(instance_noise=0.4, instance_noise_epochs=2)
    sigmas = [float(instance_noise_std(s, params, steps_per_epoch=4)) for s in (0, 4, 8, 12)]
    assert sigmas == pytest.approx([0.4, 0.2, 0.0, 0.0])
    images = np.zeros((32, *SHAPE), np.uint8)
    batch = next(iter(train_dataset(images, np.zeros(32, np.int32), AugmentParams(), params, 4)))
    np.testing.assert_allclose(batch["sigma"].numpy(), 0.2, rtol=1e-6)

    results = []
    for sigma in (0.0, 5.0):
        strategy, gan = single_replica(params)
        inputs = dict(step_inputs(params), sigma=tf.fill([params.batch_size], sigma))
        results.append(float(train_step.make_train_step(strategy, gan, params)(inputs)["d_loss"]))
    assert abs(results[0] - results[1]) > 1e-3


def test_a_time_budget_ends_the_run_with_every_output_and_a_resumed_run_finishes_the_plan(
    prepared, run_train
):
    # 6 ms: the stage's setup alone takes longer, so only the first step (always taken) fits.
    params = tiny_params(epochs=5, time_budget_min=1e-4)
    out, summary = run_train(prepared, params)
    reached = summary["steps"]
    assert summary["stopped_on_budget"] is True and 1 <= reached < 20
    assert summary["epoch"] == (reached - 1) // 4 + 1
    assert tf.train.latest_checkpoint(str(out / "ckpt")).endswith(f"ckpt-{reached}")
    assert next(sampling.generate(sampling.load_generator(out / "models"), 4, batch_size=4)).shape == (
        4,
        *SHAPE,
    )
    assert (out / "plots" / "samples.png").is_file() and (out / "plots" / "progress.gif").is_file()
    assert list((out / "plots" / "epochs").glob("*.png"))
    metrics = json.loads((out / "live" / "metrics.json").read_text())
    assert metrics["stopped_on_budget"] is True and metrics["steps"] == reached
    assert "d_loss" in metrics["train"]

    resumed = params.model_copy(update={"resume": True, "time_budget_min": 0.0})
    _, summary = run_train(prepared, resumed)
    assert summary["start_step"] == reached and summary["steps"] == 20
    assert summary["stopped_on_budget"] is False and summary["epoch"] == 5
    assert tf.train.latest_checkpoint(str(out / "ckpt")).endswith("ckpt-20")


def test_the_budget_counts_the_mifid_evaluation_an_epoch_end_will_run():
    budget = loop.Budget(minutes=1.0, began=time.perf_counter() - 40.0)
    assert budget.fits(5, evaluates=False) == 1  # nothing measured yet: the first call is one step
    budget.record(3.0, 1)  # the first call: its tracing makes it no measure of a step
    budget.record(2.0, 2)
    assert budget.fits(5, evaluates=True) == 5  # no evaluation measured yet
    budget.evaluations.append(30.0)
    assert budget.fits(5, evaluates=False) == 5
    assert budget.fits(5, evaluates=True) == 4  # 40 s so far + 5 steps + 30 s > 60 s: not the last step
    assert budget.fits(30, evaluates=False) == 19  # 40 s + 19 x 1 s <= 60 s


def test_the_policy_s_diffaugment_reaches_the_train_stage(prepared, run_train):
    from doggan.training.policy import augment_stage

    params = tiny_params(epochs=1)
    out, _ = run_train(prepared, params)
    plain = sampling.load_generator(out / "models").model.get_weights()
    out, _ = run_train(prepared, params)
    again = sampling.load_generator(out / "models").model.get_weights()
    assert all(np.allclose(a, b) for a, b in zip(plain, again, strict=True))  # runs repeat exactly
    policy = AugmentParams(preview=4, diff="translation,cutout")
    augment_stage(prepared / "crops.npz", policy, prepared / "policy.json", prepared / "aug.png")
    out, _ = run_train(prepared, params)
    augmented = sampling.load_generator(out / "models").model.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(plain, augmented, strict=True))


@pytest.mark.parametrize("enlarge_real", [False, True])
def test_with_enlarge_real_the_training_batches_hold_the_crops_as_d_sees_g_s_drawings(enlarge_real):
    from doggan import networks

    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)  # G draws at 8
    params = tiny_params(batch_size=8, resolution=8, enlarge_real=enlarge_real)
    batch = next(iter(train_dataset(images, np.zeros(8, np.int32), AugmentParams(flip=False), params, 0)))
    expected = networks.as_drawn(images, params) if enlarge_real else images
    got = np.sort(batch["images"].numpy().reshape(8, -1), axis=0)
    np.testing.assert_allclose(got, np.sort(expected.reshape(8, -1) / 127.5 - 1.0, axis=0), atol=1e-5)
    if enlarge_real:
        assert np.abs(got - np.sort(images.reshape(8, -1) / 127.5 - 1.0, axis=0)).mean() > 0.05
