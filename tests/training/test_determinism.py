"""train.deterministic: the same run, trained twice in fresh processes, ends with exactly the same weights.

Op determinism is switched on for the rest of a process once enabled, so each run is a subprocess that
executes this file as a script.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import finish_mode, start_mode, tiny_params

HERE = Path(__file__).resolve()
STEPS = 20  # 32 crops in batches of 8: 4 steps an epoch


def train_main(out: str) -> None:
    """Train 20 steps on the crops beside `out` (a `prepared` folder), with the tricks that draw random
    numbers on (dropout, DiffAugment, label noise, LeCam, ADA), and save every weight of the run."""
    from doggan.params import AugmentParams, EvalParams
    from doggan.training import loop
    from doggan.training.paths import TrainPaths
    from doggan.training.policy import augment_stage

    out = Path(out)
    root = out.parent
    policy = AugmentParams(
        diff="color,translation,cutout", ada_target=0.6, ada_kimg=0.01, translate=0.1, preview=4
    )
    augment_stage(root / "crops.npz", policy, out / "policy.json", out / "aug.png")
    params = tiny_params(
        epochs=STEPS // 4,
        deterministic=True,
        g_dropout=0.2,
        d_dropout=0.2,
        label_noise=0.1,
        lecam=0.3,
        sample_every=100,
    )
    paths = TrainPaths(
        crops=root / "crops.npz",
        policy=out / "policy.json",
        real_stats=root / "missing_stats.npz",
        models=out / "models",
        checkpoints=out / "ckpt",
        live=out / "live",
        plots=out / "plots",
    )
    loop.train_stage(paths, params, EvalParams())
    import tensorflow as tf
    from tensorflow.python.framework import config

    reader = tf.train.load_checkpoint(str(out / "ckpt"))
    names = sorted(n for n in reader.get_variable_to_shape_map() if n != "_CHECKPOINTABLE_OBJECT_GRAPH")
    weights = {f"w{i}": reader.get_tensor(n) for i, n in enumerate(names)}
    np.savez(out / "weights.npz", **weights, names=names, determinism=config.is_op_determinism_enabled())


@pytest.mark.slow
def test_a_deterministic_run_replays_exactly(prepared):
    runs = [prepared / "first", prepared / "second"]
    for out in runs:
        out.mkdir()
    processes = [start_mode(HERE, "train", out) for out in runs]  # side by side: a free core halves the wait
    for process in processes:
        finish_mode(process)
    first, second = (np.load(out / "weights.npz") for out in runs)
    assert bool(first["determinism"]) and bool(second["determinism"])  # TensorFlow's op determinism was on
    names = list(first["names"])
    assert names == list(second["names"]) and any(n.startswith("generator/") for n in names)
    assert any(n.startswith("ada_p") for n in names) and any(n.startswith("lecam") for n in names)
    step = next(i for i, n in enumerate(names) if n.startswith("step/"))
    assert int(first[f"w{step}"]) == STEPS
    for i, name in enumerate(names):
        np.testing.assert_array_equal(first[f"w{i}"], second[f"w{i}"], err_msg=name)


if __name__ == "__main__":
    {"train": train_main}[sys.argv[1]](sys.argv[2])
