"""Distributed training on a CPU: 2 logical devices agree with 1 replica; 2 workers on loopback agree.

Logical devices must be configured before TensorFlow initialises its devices, so each check runs in
a subprocess that executes this file as a script with a mode argument.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
SHAPE = (16, 16, 3)
PARAMS = dict(batch_size=8, z_dim=8, g_filters=16, d_filters=8, label_noise=0.2, loss="gan")


def gradients_on(strategy, inputs):
    """Global D and G gradients of one step, summed over the replicas of `strategy`."""
    import tensorflow as tf

    from doggan import train_lib
    from doggan.params import TrainParams

    params = TrainParams(**PARAMS)
    with strategy.scope():
        gan = train_lib.build_gan(SHAPE, params, 10)
    dist = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(inputs))

    @tf.function
    def run(batch):
        d, g, stats = strategy.run(
            lambda x: train_lib.losses_and_grads(gan, params, x, params.batch_size), (batch,)
        )
        total = lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)  # noqa: E731
        return [total(x) for x in d], [total(x) for x in g], total(stats)

    d, g, stats = run(next(iter(dist)))
    return [x.numpy() for x in d], [x.numpy() for x in g], stats.numpy()


def replicas_main(out: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from doggan import train_lib
    from doggan.params import TrainParams

    params = TrainParams(**PARAMS)
    rng = np.random.default_rng(0)
    z, real_t, fake_t = train_lib.step_inputs(tf.constant(0, tf.int64), 8, 8, params)
    inputs = {
        "images": tf.constant(rng.uniform(-1, 1, (8, *SHAPE)), tf.float32),
        "labels": tf.zeros(8, tf.int32),
        "z": z,
        "real_t": real_t,
        "fake_t": fake_t,
    }
    one = gradients_on(tf.distribute.MirroredStrategy(["/cpu:0"]), inputs)
    two_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    two = gradients_on(two_strategy, inputs)
    np.savez(
        out,
        replicas=two_strategy.num_replicas_in_sync,
        **{f"one_d{i}": x for i, x in enumerate(one[0])},
        **{f"two_d{i}": x for i, x in enumerate(two[0])},
        **{f"one_g{i}": x for i, x in enumerate(one[1])},
        **{f"two_g{i}": x for i, x in enumerate(two[1])},
        one_stats=one[2],
        two_stats=two[2],
    )


def worker_main(out: str) -> None:
    from doggan import train_lib
    from doggan.params import AugmentParams, TrainParams

    params = TrainParams(**PARAMS)
    strategy = train_lib.make_strategy()
    with strategy.scope():
        gan = train_lib.build_gan(SHAPE, params, 10)
    images = np.random.default_rng(0).integers(0, 256, (32, *SHAPE), dtype=np.uint8)
    dataset = train_lib.train_dataset(images, np.zeros(32, np.int32), AugmentParams(), params, 0)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    step = train_lib.make_train_step(strategy, gan, params)
    for _ in range(3):
        step(next(iterator))
    weights = gan.generator.get_weights() + gan.discriminator.get_weights()
    arrays = {f"arr_{i:03d}": w for i, w in enumerate(weights)}
    np.savez(out, chief=train_lib.is_chief(strategy), replicas=strategy.num_replicas_in_sync, **arrays)


def run_self(mode, out, env=None):
    return subprocess.Popen(
        [sys.executable, str(HERE), mode, str(out)],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process, timeout=240):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]


@pytest.mark.slow
def test_two_replicas_compute_the_gradients_of_one(tmp_path):
    finish(run_self("replicas", tmp_path / "grads.npz"))
    data = np.load(tmp_path / "grads.npz")
    assert int(data["replicas"]) == 2
    np.testing.assert_allclose(data["two_stats"], data["one_stats"], rtol=1e-4, atol=1e-6)
    for kind in ("d", "g"):
        names = sorted(k for k in data.files if k.startswith(f"one_{kind}"))
        assert names
        for name in names:
            one, two = data[name], data[name.replace("one_", "two_")]
            np.testing.assert_allclose(two, one, rtol=1e-3, atol=1e-5 * max(1.0, np.abs(one).max()))


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_loopback_end_with_equal_weights(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(run_self("worker", tmp_path / f"w{index}.npz", {"TF_CONFIG": json.dumps(config)}))
    for process in processes:
        finish(process)
    first, second = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert bool(first["chief"]) and not bool(second["chief"])
    assert int(first["replicas"]) == 2
    arrays = sorted(k for k in first.files if k.startswith("arr_"))
    assert arrays
    for key in arrays:
        np.testing.assert_allclose(first[key], second[key], rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    {"replicas": replicas_main, "worker": worker_main}[sys.argv[1]](sys.argv[2])
