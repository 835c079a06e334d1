"""Several train steps in one compiled call (train.steps_per_call) train exactly as one step per call, and
the train stage's side jobs (checkpoints, grids, dvclive rows, the time budget, the non-finite check)
still happen at their steps."""

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_params

from doggan.errors import DogganError
from doggan.output import sampling
from doggan.params import AugmentParams
from doggan.training.calls import make_train_call
from doggan.training.inputs import train_dataset
from doggan.training.state import build_gan
from doggan.training.step import STEP_VALUES, make_train_step

SHAPE = (8, 8, 3)  # the smallest side the networks draw: fewer blocks to trace and compile
TRICKS = dict(  # every piece of state the step carries, and both kinds of step of n_critic and replay
    loss="gan",
    n_critic=2,
    replay_size=16,
    replay_every=3,
    ema_decay=0.9,
    lecam=0.3,
    balance_d=2.0,
    balance_g=1.5,
    label_noise=0.2,
)
ADA = AugmentParams(diff="translation,cutout", ada_target=0.6)


def trainer(params, policy=None):
    """A fresh GAN on one replica and a distributed iterator over the input pipeline of random images."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        gan = build_gan(SHAPE, params, 20, policy=policy)
    images = np.random.default_rng(0).integers(0, 256, (32, *SHAPE), dtype=np.uint8)
    dataset = train_dataset(images, np.zeros(32, np.int32), AugmentParams(), params, 0)
    return strategy, gan, iter(strategy.experimental_distribute_dataset(dataset))


def state_of(gan):
    """Every weight a step changes: G, D, the EMA, the optimizers (iterations included), the step, LeCam's
    averages, ADA's probability and the replay buffer."""
    arrays = [v.numpy() for v in gan.generator.weights + gan.discriminator.weights + gan.ema.weights]
    arrays += [v.numpy() for v in gan.g_opt.variables + gan.d_opt.variables]
    arrays.append(gan.step.numpy())
    arrays += [gan.lecam.numpy()] if gan.lecam is not None else []
    arrays += [gan.ada.p.numpy()] if gan.ada is not None else []
    return arrays + ([gan.replay.images.numpy()] if gan.replay is not None else [])


XLA = dict(jit_compile=True, ema_decay=0.9, lecam=0.3)


# Both cases share an xdist group: pytest-xdist starts groups before single tests, so these long ones
# begin early rather than among the last, while the short tests fill both workers to the end.
@pytest.mark.xdist_group("steps-per-call-k")
@pytest.mark.parametrize("settings", [TRICKS, XLA], ids=["tricks", "xla"])
def test_k_steps_in_one_call_train_as_k_single_steps(settings):
    params = tiny_params(**settings)
    policy = ADA if params.n_critic > 1 else None
    k, diff = 7, policy.diff if policy else ""
    strategy, gan, iterator = trainer(params, policy)
    done, totals, _ = make_train_call(strategy, gan, params, diff)(iterator, tf.constant(k))
    assert int(done) == k and int(gan.step.numpy()) == k

    strategy, single, iterator = trainer(params, policy)
    steps = {}
    values = []
    for s in range(k):
        replay = bool(params.replay_size) and s > 0 and (s + 1) % params.replay_every == 0
        kind = ((s + 1) % params.n_critic == 0, replay)
        steps.setdefault(kind, make_train_step(strategy, single, params, *kind, diff=diff))
        values.append(steps[kind](next(iterator)))
    for name in STEP_VALUES:
        assert float(totals[name]) == pytest.approx(sum(float(v[name]) for v in values), rel=1e-6, abs=1e-7)
    assert len(steps) == (4 if params.n_critic > 1 else 1)  # every kind of step was taken
    for a, b in zip(state_of(gan), state_of(single), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_calls_of_any_length_train_alike():
    params = tiny_params(ema_decay=0.9)
    strategy, gan, iterator = trainer(params)
    call = make_train_call(strategy, gan, params)
    for n in (3, 1, 4):
        assert int(call(iterator, tf.constant(n))[0]) == n
    strategy, other, iterator = trainer(params)
    call = make_train_call(strategy, other, params)
    for _ in range(8):
        call(iterator, tf.constant(1))
    assert call.experimental_get_tracing_count() == 1  # the length is a tensor: one trace
    for a, b in zip(state_of(gan), state_of(other), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_call_stops_after_its_first_non_finite_step():
    params = tiny_params(lr_d=1e30, spectral_norm=False, ema_decay=0.5)
    strategy, gan, iterator = trainer(params)
    done, _, last = make_train_call(strategy, gan, params)(iterator, tf.constant(50))
    assert 0 < int(done) + 1 < 50 and int(gan.step.numpy()) == int(done) + 1
    assert not all(np.isfinite(float(last[k])) for k in STEP_VALUES)


def live_rows(out, name):
    """The per-epoch values dvclive logged for train/`name`."""
    lines = (out / "live" / "plots" / "metrics" / "train" / f"{name}.tsv").read_text().splitlines()
    return [float(line.split("\t")[-1]) for line in lines[1:]]


def saved_step(checkpoint):
    return int(tf.train.load_checkpoint(checkpoint).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))


def test_the_stage_with_several_steps_per_call_keeps_its_side_jobs_and_trains_as_one_per_call(
    prepared, run_train
):
    params = tiny_params(epochs=3, checkpoint_every=5, ema_decay=0.5, balance_d=2.0, loss="gan")
    out, one = run_train(prepared, params)
    weights = sampling.load_generator(out / "models").model.get_weights()
    rows = {name: live_rows(out, name) for name in ("d_loss", "g_loss", "d_skipped")}

    # 4 steps an epoch, calls of up to 4: cut at checkpoint 5 and 10, so those are written at their steps
    out, summary = run_train(prepared, params.model_copy(update={"steps_per_call": 4}))
    assert summary["steps"] == one["steps"] == 12 and summary["d_skipped"] == one["d_skipped"]
    ckpt = out / "ckpt"
    assert [saved_step(str(ckpt / name)) for name in ("ckpt-10", "ckpt-12")] == [10, 12]
    assert len(list((out / "plots" / "epochs").glob("*.png"))) == 3
    assert (out / "plots" / "samples.png").is_file() and (out / "plots" / "progress.gif").is_file()
    for name, values in rows.items():
        assert len(values) == 3
        np.testing.assert_allclose(live_rows(out, name), values, rtol=1e-5, atol=1e-6)
    for a, b in zip(sampling.load_generator(out / "models").model.get_weights(), weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_time_budget_and_the_non_finite_check_hold_with_several_steps_per_call(prepared, run_train):
    params = tiny_params(epochs=5, steps_per_call=4, time_budget_min=1e-4)
    out, summary = run_train(prepared, params)
    assert summary["stopped_on_budget"] is True and summary["steps"] == 1  # the first call is one step
    assert tf.train.latest_checkpoint(str(out / "ckpt")).endswith("ckpt-1")
    metrics = json.loads((out / "live" / "metrics.json").read_text())
    assert metrics["stopped_on_budget"] is True and "d_loss" in metrics["train"]

    diverging = tiny_params(epochs=2, lr_d=1e30, spectral_norm=False)
    errors = []
    for k in (1, 4):
        with pytest.raises(DogganError, match=r"non-finite loss at step \d+") as error:
            run_train(prepared, diverging.model_copy(update={"steps_per_call": k}))
        errors.append(str(error.value).split(" (")[0])
    assert errors[0] == errors[1]  # the same first non-finite step is named
