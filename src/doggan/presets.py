"""Classic GAN recipes as presets: each fixes data shape, architecture, losses and optimizers.

`train.preset` names one. At start-up `doggan.params` lays the preset's values over params.yaml (the
preset wins) before validating, and `doggan.classic_networks` builds the preset's networks; every key
a preset does not name still comes from params.yaml. Each preset is plain data, so `dvc exp show`
names the recipe and this module documents what it sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PresetName = Literal["default", "mlp-mnist", "dcgan-mnist", "dcgan-faces", "dcgan-dogs", "biggan-dogs"]


@dataclass(frozen=True)
class Preset:
    """One recipe: where it comes from, its networks (see classic_networks) and the params it fixes."""

    summary: str
    networks: str
    values: dict[str, dict[str, object]]


# Targets of plain binary cross-entropy: no label smoothing, no label noise.
HARD_LABELS = {"real_label_range": (1.0, 1.0), "fake_label_range": (0.0, 0.0), "label_noise": 0.0}
# The usual DCGAN Adam and a constant rate, without EMA, conditioning or extra critic steps.
PLAIN_TRAINING = {
    "optimizer": "adam",
    "beta_1": 0.5,
    "beta_2": 0.999,
    "clipvalue": 0.0,
    "lr_schedule": "constant",
    "n_critic": 1,
    "ema_decay": 0.0,
    "conditional": False,
}
MNIST_DATA = {
    "data": {"source": "mnist"},
    "crop": {"size": 28, "channels": 1},
    "augment": {"flip": False},  # digits are not symmetric
    "submission": {"resize": True},  # 28×28 gray, upsized to 64×64 RGB for scoring
}

PRESETS: dict[str, Preset] = {
    "default": Preset(
        summary="this project's DCGAN: everything from params.yaml",
        networks="dcgan",
        values={},
    ),
    "mlp-mnist": Preset(
        summary="the fully connected GAN of the TensorFlow 2 and Keras tutorials, on MNIST",
        networks="mlp-mnist",
        values={
            **MNIST_DATA,
            "train": {
                **PLAIN_TRAINING,
                **HARD_LABELS,
                "z_dim": 100,
                "noise": "normal",
                "g_filters": 256,
                "d_filters": 1024,
                "lr_g": 2e-4,
                "lr_d": 2e-4,
                "loss": "gan",
                "spectral_norm": False,
                "g_dropout": 0.0,
                "d_dropout": 0.0,
                "init_stddev": 0.0,
                "use_bias": True,
            },
        },
    ),
    "dcgan-mnist": Preset(
        summary="the Keras DCGAN tutorial on MNIST: RMSprop, dropout 0.4, uniform noise",
        networks="dcgan-mnist",
        values={
            **MNIST_DATA,
            "train": {
                **PLAIN_TRAINING,
                **HARD_LABELS,
                "optimizer": "rmsprop",
                "clipvalue": 1.0,
                "z_dim": 100,
                "noise": "uniform",
                "g_filters": 256,
                "d_filters": 64,
                "lr_g": 4e-4,
                "lr_d": 8e-4,
                "loss": "gan",
                "spectral_norm": False,
                "g_dropout": 0.4,
                "d_dropout": 0.4,
                "init_stddev": 0.0,
                "use_bias": True,
            },
        },
    ),
    "dcgan-faces": Preset(
        summary="the DCGAN face tutorial (LFW at 40×40): dropout, batch norm, leaky ReLU, loss balancing",
        networks="dcgan-faces",
        values={
            "data": {"source": "folder"},
            "crop": {"size": 40, "channels": 3},
            "submission": {"resize": True},
            "train": {
                **PLAIN_TRAINING,
                **HARD_LABELS,
                "optimizer": "rmsprop",
                "batch_size": 64,
                "z_dim": 100,
                "noise": "uniform",
                "g_filters": 256,
                "d_filters": 64,
                "lr_g": 1.5e-4,
                "lr_d": 1.5e-4,
                "loss": "gan",
                "spectral_norm": False,
                "g_dropout": 0.4,
                "d_dropout": 0.4,
                "init_stddev": 0.0,
                "use_bias": True,
                "balance_d": 2.0,
                "balance_g": 1.5,
            },
        },
    ),
    "dcgan-dogs": Preset(
        summary="the 2019 dog DCGAN notebook as it meant to be: 5×5 blocks, spectral norm, smoothing, cosine",
        networks="dcgan-dogs",
        values={
            "crop": {"size": 64, "channels": 3},
            "submission": {"resize": False},
            "train": {
                **PLAIN_TRAINING,
                "lr_schedule": "cosine",
                "z_dim": 100,
                "noise": "normal",
                "g_filters": 512,
                "d_filters": 64,
                "lr_g": 2e-4,
                "lr_d": 2e-4,
                "loss": "gan",
                "spectral_norm": True,
                "real_label_range": (0.7, 1.0),
                "fake_label_range": (0.0, 0.3),
                "label_noise": 0.05,
                "g_dropout": 0.5,
                "d_dropout": 0.0,
                "init_stddev": 0.02,
                "use_bias": False,
            },
        },
    ),
    "biggan-dogs": Preset(
        summary="the 2019 winners' recipe: breed-conditional, hinge, Adam β1 0, fast D, EMA, truncation",
        networks="dcgan",
        values={
            "crop": {"size": 64, "channels": 3},
            "submission": {"resize": False, "truncation": 0.8},
            "train": {
                **PLAIN_TRAINING,
                "conditional": True,
                "batch_size": 32,
                "z_dim": 128,
                "noise": "normal",
                "g_filters": 256,
                "d_filters": 64,
                "beta_1": 0.0,
                "lr_g": 1e-4,
                "lr_d": 4e-4,
                "loss": "hinge",
                "spectral_norm": True,
                "label_noise": 0.0,
                "ema_decay": 0.999,
                "g_dropout": 0.0,
                "d_dropout": 0.0,
                "init_stddev": 0.02,
                "use_bias": True,
            },
        },
    ),
}


def values(name: str) -> dict[str, dict[str, object]]:
    """The params a preset fixes, by section; none for a name that is not a preset (validation refuses it)."""
    preset = PRESETS.get(name)
    return preset.values if preset else {}
