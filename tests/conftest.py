import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SQUARES = (16, 16, 3)


@pytest.fixture
def prepared(tmp_path):
    """A crops file of 32 coloured squares (16×16×3, two breeds) and the policy augment writes for it."""
    from doggan.crops_file import Crops, save_crops
    from doggan.data_provider import augment_stage
    from doggan.params import AugmentParams

    rng = np.random.default_rng(0)
    images = np.zeros((32, *SQUARES), np.uint8)
    for image in images:
        y, x = rng.integers(0, 8, 2)
        image[y : y + 8, x : x + 8] = rng.integers(100, 256, 3)
    save_crops(
        tmp_path / "crops.npz",
        Crops(images, np.arange(32, dtype=np.int32) % 2, np.arange(32).astype(str), np.array(["a", "b"])),
    )
    augment_stage(
        tmp_path / "crops.npz", AugmentParams(preview=4), tmp_path / "policy.json", tmp_path / "aug.png"
    )
    return tmp_path


TINY = dict(batch_size=8, z_dim=8, g_filters=16, d_filters=8)


def tiny_params(**overrides):
    """TrainParams of tiny networks and batches (seconds per run on a CPU), with `overrides`."""
    from doggan.params import TrainParams

    return TrainParams(**{**TINY, **overrides})


def train_paths(root, stats="missing_stats.npz"):
    """The train stage's paths on a `prepared` folder: outputs under its out/, real statistics `stats`."""
    from doggan.train_lib import TrainPaths

    out = root / "out"
    return TrainPaths(
        crops=root / "crops.npz",
        policy=root / "policy.json",
        real_stats=root / stats,
        models=out / "models",
        checkpoints=out / "ckpt",
        live=out / "live",
        plots=out / "plots",
    )


@pytest.fixture
def run_train():
    """Run the train stage on a `prepared` folder, writing under its out/; returns (out, summary).

    `stats` names the real-statistics file in that folder (absent by default: no MiFID during training).
    """
    from doggan import train_lib
    from doggan.params import EvalParams

    def run(root, params, eval_params=None, stats="missing_stats.npz"):
        summary = train_lib.train_stage(train_paths(root, stats), params, eval_params or EvalParams())
        return root / "out", summary

    return run
