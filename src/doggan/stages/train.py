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
HEADLINE = ("train_time_s", "steps", "epoch", "stopped_on_budget", "best_mifid")


def run(p: Params) -> None:
    """Train on the crops with the resolved policy; write the generator and the run's metrics."""
    from doggan.training.loop import train_stage
    from doggan.training.paths import TrainPaths

    paths = TrainPaths(
        crops=outputs.CROPS,
        policy=outputs.POLICY,
        real_stats=outputs.REAL_STATS,
        models=outputs.MODELS,
        checkpoints=outputs.CHECKPOINTS,
        live=outputs.LIVE,
        plots=outputs.TRAIN_PLOTS,
    )
    summary = train_stage(paths, p.train, p.eval)
    write_json(outputs.TRAIN_METRICS, outputs.headline(summary, HEADLINE), sort_keys=False)
