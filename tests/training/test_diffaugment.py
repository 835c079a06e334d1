"""DiffAugment: each op's ranges measured on constructed images, gradients through every op, per-image
stateless draws that one replica and two reproduce alike, with and without XLA, in float16 and float32.

The two-replica check of the train-step helper runs in a subprocess that executes this file as a script
(logical CPU devices must be configured before TensorFlow starts).
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_mode

from doggan import params
from doggan.training import diffaugment
from doggan.training.diffaugment import augment_replica_batch, diff_augment

HERE = Path(__file__).resolve()
ALL = "color,translation,cutout"
SEED = np.array([3, 4], np.int64)  # a tensor made at import would start TF before replicas_main


def batch(n, side=16, low=-1.0, seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(low, 1.0, (n, side, side, 3)), tf.float32)


def test_color_shifts_brightness_then_scales_saturation_and_contrast_within_the_reference_ranges():
    # each pixel's channels are (a - d, a, a + d), a = -0.25 on half the pixels and 0.25 on the other half:
    # with brightness b, saturation s, contrast c the output is (a + s·δ)·c + b, δ in (-d, 0, d)
    d, n = 0.2, 512
    a = np.where(np.arange(16 * 16).reshape(16, 16) % 2, 0.25, -0.25)
    image = np.stack([a - d, a, a + d], -1)
    out = diff_augment(tf.constant(np.repeat(image[None], n, 0), tf.float32), "color", SEED).numpy()
    b = out.mean(axis=(1, 2, 3))
    c = (out[:, 0, 1, 1] - out[:, 0, 0, 1]) / 0.5
    s = (out[:, 0, 0, 2] - out[:, 0, 0, 0]) / (2 * d * c)
    delta = np.array([-d, 0.0, d])
    model = (a[None, :, :, None] + s[:, None, None, None] * delta) * c[:, None, None, None] + b[
        :, None, None, None
    ]
    np.testing.assert_allclose(out, model, atol=1e-5)
    for name, value, low, high in [
        ("brightness", b, -0.5, 0.5),
        ("saturation", s, 0.0, 2.0),
        ("contrast", c, 0.5, 1.5),
    ]:
        assert low - 1e-5 <= value.min() < low + 0.05 * (high - low), name
        assert high - 0.05 * (high - low) < value.max() <= high + 1e-5, name
    assert np.abs(np.corrcoef([b, s, c]) - np.eye(3)).max() < 0.2  # three independent draws


def shifted(image, dy, dx):
    out = np.zeros_like(image)
    side = image.shape[0]
    rows, cols = np.arange(side) + dy, np.arange(side) + dx
    keep_r, keep_c = (rows >= 0) & (rows < side), (cols >= 0) & (cols < side)
    out[np.ix_(keep_r, keep_c)] = image[np.ix_(rows[keep_r], cols[keep_c])]
    return out


def test_translation_moves_each_image_by_at_most_an_eighth_of_its_side_filling_with_zeros():
    n, side = 400, 16
    x = tf.constant(np.random.default_rng(1).uniform(0.1, 1.0, (n, side, side, 3)), tf.float32)
    out = diff_augment(x, "translation", SEED).numpy()
    reach = side // 8
    shifts = set()
    for image, moved in zip(x.numpy(), out, strict=True):
        found = [
            (dy, dx)
            for dy in range(-reach, reach + 1)
            for dx in range(-reach, reach + 1)
            if np.array_equal(moved, shifted(image, dy, dx))
        ]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) == (2 * reach + 1) ** 2  # every shift up to ±side/8, both ends included


@pytest.mark.parametrize("side", [16, 10])
def test_cutout_zeroes_a_square_of_half_the_side_clipped_at_the_borders_as_the_reference(side):
    n, half = 400, side // 2
    out = diff_augment(batch(n, side, low=0.1), "cutout", SEED).numpy()
    zero = (out == 0).all(-1)
    assert ((out == 0).any(-1) == zero).all()  # every channel of a pixel or none
    # the reference's centres: 0..side, or 0..side-1 when half is odd; its square starts half // 2 before
    bands = {(max(o - half // 2, 0), min(o - half // 2 + half, side)) for o in range(side + 1 - half % 2)}
    seen = set()
    for hole in zero:
        rows, cols = np.flatnonzero(hole.any(1)), np.flatnonzero(hole.any(0))
        np.testing.assert_array_equal(hole, np.outer(hole.any(1), hole.any(0)))
        for index in (rows, cols):
            band = (index[0], index[-1] + 1)
            assert band in bands and len(index) == band[1] - band[0]
            seen.add(band)
    assert seen == bands
    assert np.count_nonzero(zero[0]) <= half * half


@pytest.mark.parametrize("op", ["color", "translation", "cutout"])
def test_the_gradient_reaches_the_input_through_each_op(op):
    x = batch(4)
    weights = batch(4, seed=1)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(diff_augment(x, op, SEED) * weights)
    grad = tape.gradient(loss, x).numpy()
    assert np.isfinite(grad).all()
    assert (np.abs(grad).reshape(4, -1).sum(1) > 0).all()


def test_images_of_one_batch_get_their_own_draws_and_a_seed_repeats_them():
    x = tf.repeat(batch(1), 8, axis=0)
    out = diff_augment(x, ALL, SEED).numpy()
    for i in range(8):
        for j in range(i):
            assert not np.allclose(out[i], out[j])
    np.testing.assert_array_equal(out, diff_augment(x, ALL, SEED).numpy())
    np.testing.assert_array_equal(out, diff_augment(x, ("cutout", "translation", "color"), SEED).numpy())
    assert not np.allclose(out, diff_augment(x, ALL, np.array([3, 5], np.int64)).numpy())


def test_an_empty_policy_is_off_and_an_unknown_op_is_refused():
    x = batch(2)
    assert diff_augment(x, "", SEED) is x
    with pytest.raises(ValueError, match="zoom"):
        diff_augment(x, "color,zoom", SEED)


@pytest.mark.parametrize("split", [4, 3])
def test_the_rows_of_a_split_batch_are_augmented_as_in_the_whole_batch(split):
    x = batch(8)
    whole = diff_augment(x, ALL, SEED).numpy()
    parts = [diff_augment(x[:split], ALL, SEED, 0, 8), diff_augment(x[split:], ALL, SEED, split, 8)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_xla_draws_as_tf_does_and_runs_in_float16():
    x = batch(8)

    @tf.function(jit_compile=True)
    def part(images, seed, offset):
        with tf.GradientTape() as tape:
            tape.watch(images)
            out = diff_augment(images, ALL, seed, offset, 8)
            total = tf.reduce_sum(tf.cast(out, tf.float32))
        return out, tape.gradient(total, images)

    eager = diff_augment(x, ALL, SEED).numpy()
    halves = [part(x[:4], SEED, tf.constant(0)), part(x[4:], SEED, tf.constant(4))]
    np.testing.assert_allclose(np.concatenate([out for out, _ in halves]), eager, atol=1e-5)
    assert all(np.abs(grad.numpy()).sum() > 0 for _, grad in halves)
    half_precision, grad = part(tf.cast(x[:4], tf.float16), SEED.astype(np.int32), tf.constant(0))
    assert half_precision.dtype == tf.float16 and grad.dtype == tf.float16
    np.testing.assert_allclose(half_precision.numpy().astype(np.float32), eager[:4], atol=2e-2)


def test_augment_diff_param_names_the_key_of_an_unknown_op(tmp_path):
    assert params.AugmentParams().diff == ""
    assert params.split_ops(params.AugmentParams(diff="cutout, color").diff) == ("color", "cutout")
    path = tmp_path / "p.yaml"
    path.write_text("augment:\n  diff: color,zoom\n")
    with pytest.raises(params.ParamsError, match=r"augment\.diff: .*zoom"):
        params.load(path)


def test_the_helper_draws_the_real_and_the_fake_block_apart():
    real, fake = batch(4), batch(4, seed=1)
    out = augment_replica_batch(tf.concat([real, fake], 0), "cutout", SEED).numpy()
    holes = (out == 0).all(-1).reshape(8, -1).sum(1)
    assert (holes > 0).all()
    assert not np.array_equal(holes[:4], holes[4:])  # the two blocks draw apart


# --- ADA's probability ------------------------------------------------------------------------------------


def test_each_op_applies_to_each_image_with_the_probability():
    x = batch(400, low=0.1)
    np.testing.assert_array_equal(diff_augment(x, ALL, SEED, probability=0.0).numpy(), x.numpy())
    always = diff_augment(x, ALL, SEED).numpy()
    np.testing.assert_array_equal(diff_augment(x, ALL, SEED, probability=1.0).numpy(), always)
    holes = (diff_augment(x, "cutout", SEED, probability=0.3).numpy() == 0).all(-1).any((1, 2))
    assert 0.2 < holes.mean() < 0.4
    moved = diff_augment(x, ALL, SEED, probability=0.5).numpy()
    untouched = (moved == x.numpy()).all((1, 2, 3))
    assert 0.07 < untouched.mean() < 0.2  # none of the three ops: 1/8 of the images
    halves = [diff_augment(x[:150], ALL, SEED, 0, 400, 0.5), diff_augment(x[150:], ALL, SEED, 150, 400, 0.5)]
    np.testing.assert_array_equal(np.concatenate(halves), moved)


def test_ada_moves_p_up_when_d_is_sure_of_the_reals_and_down_otherwise():
    step = 32 * 4 / 500_000
    up = diffaugment.ada_adjust(0.1, 1.0, 0.6, 32 * 4, 500.0)
    down = diffaugment.ada_adjust(0.1, 0.2, 0.6, 32 * 4, 500.0)
    assert float(up) == pytest.approx(0.1 + step) and float(down) == pytest.approx(0.1 - step)
    assert float(diffaugment.ada_adjust(0.0, -1.0, 0.6, 128, 500.0)) == 0.0
    assert float(diffaugment.ada_adjust(1.0, 1.0, 0.6, 128, 500.0)) == 1.0
    assert float(diffaugment.ada_adjust(0.5, 1.0, 0.6, 128, 0.064)) == 1.0  # a faster speed, clipped


# --- two replicas ---------------------------------------------------------------------------------------


def on_replicas(strategy, real, fake):
    """Each replica augments [its real rows; its fake rows]; returns the augmented global [real; fake]."""
    replicas = strategy.num_replicas_in_sync
    n = real.shape[0] // replicas

    def mine(context):
        rows = slice(context.replica_id_in_sync_group * n, (context.replica_id_in_sync_group + 1) * n)
        return tf.concat([real[rows], fake[rows]], 0)

    values = strategy.experimental_distribute_values_from_function(mine)

    @tf.function(jit_compile=True)
    def step(both):
        return strategy.run(lambda b: augment_replica_batch(b, ALL, SEED), args=(both,))

    local = [t.numpy() for t in strategy.experimental_local_results(step(values))]
    return np.concatenate([t[:n] for t in local] + [t[n:] for t in local])


def replicas_main(out: str) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    real, fake = batch(8), batch(8, seed=1)
    two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    np.savez(
        out,
        replicas=two.num_replicas_in_sync,
        one=on_replicas(tf.distribute.MirroredStrategy(["/cpu:0"]), real, fake),
        two=on_replicas(two, real, fake),
        plain=augment_replica_batch(tf.concat([real, fake], 0), ALL, SEED).numpy(),
    )


@pytest.mark.slow
def test_the_helper_augments_a_step_alike_on_one_replica_and_on_two(tmp_path):
    run_mode(HERE, "replicas", tmp_path / "out.npz")
    data = np.load(tmp_path / "out.npz")
    assert int(data["replicas"]) == 2
    np.testing.assert_allclose(data["two"], data["one"], atol=1e-6)
    np.testing.assert_allclose(data["one"], data["plain"], atol=1e-6)
    assert not np.allclose(data["one"][:8], data["one"][8:])


if __name__ == "__main__":
    {"replicas": replicas_main}[sys.argv[1]](sys.argv[2])
