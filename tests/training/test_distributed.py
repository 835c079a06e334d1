"""Distributed training on a CPU: 2 logical devices agree with 1 replica, with XLA as without, train
with mixed precision, and train alike in one call of several steps; 2 workers on loopback agree, with XLA
as without, in single steps and in a call of several.

Logical devices must be configured before TensorFlow initialises its devices, so each check runs in
a subprocess that executes this file as a script with a mode argument. The three runs (the steps plain,
with XLA and in one call; the gradients of one and two replicas and mixed precision; the pair of workers)
are session fixtures whose tests share an xdist group each, so the two pytest workers share them out.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import script_env, tiny_params

HERE = Path(__file__).resolve()
SHAPE = (8, 8, 3)  # the smallest side the networks draw: fewer blocks to trace and compile
PARAMS = dict(label_noise=0.2, loss="gan")
DIFFS = {"": "", "diff_": "color,translation,cutout"}  # without and with DiffAugment on D's inputs
VARIANTS = {
    "plain": {},
    "xla": {"jit_compile": True},
    "mixed": {"mixed_precision": True},
    "mixed_xla": {"mixed_precision": True, "jit_compile": True},
}
IMAGES = np.random.default_rng(0).integers(0, 256, (32, *SHAPE), dtype=np.uint8)


def gradients_on(strategy, inputs, diff=""):
    """Global D and G gradients of one step, summed over the replicas of `strategy`, with the DiffAugment
    ops `diff` on D's inputs."""
    import tensorflow as tf

    from doggan.training.state import build_gan
    from doggan.training.step import losses_and_grads

    params = tiny_params(**PARAMS)
    with strategy.scope():
        gan = build_gan(SHAPE, params, 10)
    dist = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(inputs))

    @tf.function
    def run(batch):
        step = lambda x: losses_and_grads(gan, params, x, params.batch_size, diff=diff)  # noqa: E731
        result = strategy.run(step, (batch,))
        total = lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)  # noqa: E731
        values = tf.stack([total(result.values[k]) for k in sorted(result.values)])
        return [total(x) for x in result.d_grads], [total(x) for x in result.g_grads], values

    d, g, values = run(next(iter(dist)))
    return [x.numpy() for x in d], [x.numpy() for x in g], values.numpy()


def two_devices() -> None:
    """Split the CPU into two logical devices (before TensorFlow initialises its devices)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


def gradient_arrays() -> dict:
    """The gradients and losses of one step on one and on two replicas, without and with DiffAugment."""
    import tensorflow as tf

    from doggan.training.inputs import step_inputs

    params = tiny_params(**PARAMS)
    rng = np.random.default_rng(0)
    z, real_t, fake_t = step_inputs(tf.constant(0, tf.int64), 8, 8, params)
    inputs = {
        "images": tf.constant(rng.uniform(-1, 1, (8, *SHAPE)), tf.float32),
        "labels": tf.zeros(8, tf.int32),
        "z": z,
        "real_t": real_t,
        "fake_t": fake_t,
    }
    arrays = {}
    for prefix, diff in DIFFS.items():
        one = gradients_on(tf.distribute.MirroredStrategy(["/cpu:0"]), inputs, diff)
        two_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        two = gradients_on(two_strategy, inputs, diff)
        arrays[f"{prefix}replicas"] = two_strategy.num_replicas_in_sync
        for run, (d, g, stats) in (("one", one), ("two", two)):
            arrays.update({f"{prefix}{run}_d{i}": x for i, x in enumerate(d)})
            arrays.update({f"{prefix}{run}_g{i}": x for i, x in enumerate(g)})
            arrays[f"{prefix}{run}_stats"] = stats
    return arrays


def variant_arrays(name: str) -> dict:
    """Three steps of VARIANTS[name] on two logical devices: the step values, the weights before and after."""
    import keras
    import tensorflow as tf

    from doggan.params import AugmentParams
    from doggan.training.inputs import train_dataset
    from doggan.training.state import build_gan
    from doggan.training.step import make_train_step

    params = tiny_params(**PARAMS, replay_size=8, **VARIANTS[name])
    keras.mixed_precision.set_global_policy("mixed_float16" if params.mixed_precision else "float32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        gan = build_gan(SHAPE, params, 10)
    start = gan.generator.get_weights() + gan.discriminator.get_weights()
    dataset = train_dataset(IMAGES, np.zeros(32, np.int32), AugmentParams(), params, 0)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    steps = {replay: make_train_step(strategy, gan, params, replay=replay) for replay in (False, True)}
    values = [steps[k > 0](next(iterator)) for k in range(3)]  # the last two also replay fakes
    keras.mixed_precision.set_global_policy("float32")
    weights = gan.generator.get_weights() + gan.discriminator.get_weights()
    arrays = {f"{name}_values": np.array([[float(v) for v in step.values()] for step in values])}
    arrays.update({f"{name}_start_{i:03d}": w for i, w in enumerate(start)})
    arrays.update({f"{name}_end_{i:03d}": w for i, w in enumerate(weights)})
    arrays[f"{name}_replicas"] = strategy.num_replicas_in_sync
    return arrays


def call_arrays() -> dict:
    """The weights after three plain steps on two logical devices taken in one call of the train stage."""
    import tensorflow as tf

    from doggan.params import AugmentParams
    from doggan.training.calls import make_train_call
    from doggan.training.inputs import train_dataset
    from doggan.training.state import build_gan

    params = tiny_params(**PARAMS, replay_size=8)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        gan = build_gan(SHAPE, params, 10)
    dataset = train_dataset(IMAGES, np.zeros(32, np.int32), AugmentParams(), params, 0)
    make_train_call(strategy, gan, params)(iter(strategy.experimental_distribute_dataset(dataset)), 3)
    weights = gan.generator.get_weights() + gan.discriminator.get_weights()
    return {f"call_end_{i:03d}": w for i, w in enumerate(weights)}


def steps_main(out: str) -> None:
    """Three steps on two logical devices plain and with XLA, and the plain three in one call."""
    two_devices()
    np.savez(out, **variant_arrays("plain"), **variant_arrays("xla"), **call_arrays())


def replicas_main(out: str) -> None:
    """One step's gradients on one and two replicas; three mixed-precision steps without and with XLA."""
    two_devices()
    np.savez(out, **gradient_arrays(), **variant_arrays("mixed"), **variant_arrays("mixed_xla"))


def worker_main(out: str) -> None:
    """One worker of the cluster in TF_CONFIG: a step then a call of two, plain and then with XLA."""
    import tensorflow as tf

    from doggan.params import AugmentParams
    from doggan.training import loop
    from doggan.training.calls import make_train_call
    from doggan.training.inputs import train_dataset
    from doggan.training.state import build_gan
    from doggan.training.step import make_train_step

    strategy = loop.make_strategy()
    arrays = {}
    for name in ("plain", "xla"):
        params = tiny_params(**PARAMS, **VARIANTS[name])
        with strategy.scope():
            gan = build_gan(SHAPE, params, 10)
        dataset = train_dataset(IMAGES, np.zeros(32, np.int32), AugmentParams(), params, 0)
        iterator = iter(strategy.experimental_distribute_dataset(dataset))
        step, call = make_train_step(strategy, gan, params), make_train_call(strategy, gan, params)
        step(next(iterator))
        call(iterator, tf.constant(2))  # the train stage's call of several steps
        weights = gan.generator.get_weights() + gan.discriminator.get_weights()
        arrays.update({f"{name}_arr_{i:03d}": w for i, w in enumerate(weights)})
    np.savez(out, chief=loop.is_chief(strategy), replicas=strategy.num_replicas_in_sync, **arrays)


def run_self(mode, out, env=None):
    """Start `python this_file mode out`, with XLA's code generator unoptimised: compiling takes most of
    these few-step runs, and what they check is what XLA computes, not how fast."""
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
    return subprocess.Popen(
        [sys.executable, str(HERE), mode, str(out)],
        env=script_env(TF_CPP_MIN_LOG_LEVEL="2", XLA_FLAGS=xla_flags, **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process, timeout=600):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]


def run_once(tmp_path_factory, mode):
    """The arrays `python this_file mode out` saves, for a session fixture."""
    out = tmp_path_factory.mktemp(mode) / f"{mode}.npz"
    finish(run_self(mode, out))
    return dict(np.load(out))


# Each fixture's tests share an xdist group: one worker runs them, its session keeping the single run.
STEPS_GROUP = pytest.mark.xdist_group("distributed-steps")
REPLICAS_GROUP = pytest.mark.xdist_group("distributed-replicas")
WORKERS_GROUP = pytest.mark.xdist_group("distributed-workers")


@pytest.fixture(scope="session")
def steps(tmp_path_factory):
    """The weights and step values after three steps on two logical devices, plain and with XLA, and the
    weights after the plain three in one call."""
    return run_once(tmp_path_factory, "steps")


@pytest.fixture(scope="session")
def replicas(tmp_path_factory):
    """One step's gradients on one and two replicas, and three steps with mixed precision (VARIANTS
    mixed, mixed_xla) on two logical devices."""
    return run_once(tmp_path_factory, "replicas")


def weights(data, name, when):
    return [data[k] for k in sorted(data) if k.startswith(f"{name}_{when}_")]


@pytest.mark.slow
@REPLICAS_GROUP
def test_two_replicas_compute_the_gradients_of_one(replicas):
    data = replicas
    for prefix in DIFFS:
        assert int(data[f"{prefix}replicas"]) == 2
        np.testing.assert_allclose(
            data[f"{prefix}two_stats"], data[f"{prefix}one_stats"], rtol=1e-4, atol=1e-6
        )
        for kind in ("d", "g"):
            names = sorted(k for k in data if k.startswith(f"{prefix}one_{kind}"))
            assert names
            for name in names:
                one, two = data[name], data[name.replace("one_", "two_")]
                np.testing.assert_allclose(two, one, rtol=1e-3, atol=1e-5 * max(1.0, np.abs(one).max()))
    # DiffAugment reaches D's inputs: the same step's gradients differ with it on
    assert not np.allclose(data["diff_one_d0"], data["one_d0"])


@pytest.mark.slow
@STEPS_GROUP
def test_xla_steps_on_two_replicas_match_the_plain_steps(steps):
    assert int(steps["xla_replicas"]) == 2
    np.testing.assert_allclose(steps["xla_values"], steps["plain_values"], rtol=1e-3, atol=1e-5)
    start, plain, xla = (
        np.concatenate([w.ravel() for w in weights(steps, name, when)])
        for name, when in (("plain", "start"), ("plain", "end"), ("xla", "end"))
    )
    # Adam's first updates are about ±lr whatever the gradient's size, so a float difference in a
    # near-zero gradient can move one weight by up to lr: compare the mean difference to the mean update.
    moved = np.abs(plain - start).mean()
    assert moved > 1e-3
    assert np.abs(xla - plain).mean() < 0.01 * moved


@pytest.mark.slow
@STEPS_GROUP
def test_three_steps_in_one_call_on_two_replicas_match_three_single_steps(steps):
    for single, call in zip(weights(steps, "plain", "end"), weights(steps, "call", "end"), strict=True):
        np.testing.assert_allclose(call, single, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
@REPLICAS_GROUP
@pytest.mark.parametrize("name", ["mixed", "mixed_xla"])
def test_mixed_precision_trains_on_two_replicas(replicas, name):
    assert int(replicas[f"{name}_replicas"]) == 2
    assert np.isfinite(replicas[f"{name}_values"]).all()
    start, end = weights(replicas, name, "start"), weights(replicas, name, "end")
    assert all(np.isfinite(w).all() for w in end)
    assert any(not np.allclose(a, b) for a, b in zip(start, end, strict=True))


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="session")
def workers(tmp_path_factory):
    """The arrays of each of two workers on loopback, run at once as one cluster."""
    folder = tmp_path_factory.mktemp("workers")
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        processes.append(run_self("worker", folder / f"w{index}.npz", {"TF_CONFIG": json.dumps(config)}))
    for process in processes:
        finish(process)
    return [dict(np.load(folder / f"w{index}.npz")) for index in range(2)]


@pytest.mark.slow
@WORKERS_GROUP
@pytest.mark.parametrize("name", ["plain", "xla"])
def test_two_workers_on_loopback_end_with_equal_weights(workers, name):
    first, second = workers
    assert bool(first["chief"]) and not bool(second["chief"])
    assert int(first["replicas"]) == 2
    arrays = sorted(k for k in first if k.startswith(f"{name}_arr_"))
    assert arrays
    for key in arrays:
        np.testing.assert_allclose(first[key], second[key], rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    modes = {"steps": steps_main, "replicas": replicas_main, "worker": worker_main}
    modes[sys.argv[1]](sys.argv[2])
