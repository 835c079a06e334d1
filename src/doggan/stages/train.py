"""train: the GAN under tf.distribute, with checkpoints, dvclive metrics and sample grids."""

from __future__ import annotations

from doggan.files import write_json
from doggan.params import Params
from doggan.stages import outputs

# MiFID during training (train.eval_every) reads the eval keys that pick and feed the backbone.
PARAMS = (
    "train",
    "eval.backbone",
    "eval.protocol",
    "eval.inception_graph",
    "eval.n_images_train",
    "eval.batch_size",
)
HEADLINE = ("train_time_s", "steps", "best_mifid")


def run(p: Params) -> None:
    """Train on the crops with the resolved policy; write the generator and the run's metrics."""
    from doggan import train_lib

    summary = train_lib.train_stage(
        outputs.CROPS,
        outputs.POLICY,
        p.train,
        p.eval,
        outputs.MODELS,
        outputs.CHECKPOINTS,
        outputs.LIVE,
        outputs.TRAIN_PLOTS,
        outputs.REAL_STATS,
    )
    write_json(outputs.TRAIN_METRICS, outputs.headline(summary, HEADLINE), sort_keys=False)
