"""real_stats: feature statistics of the real images, once per dataset and backbone."""

from __future__ import annotations

from doggan.params import Params
from doggan.stages import outputs

PARAMS = ("eval.backbone", "eval.protocol", "eval.inception_graph", "eval.real", "eval.batch_size")


def run(p: Params) -> None:
    """Compute the real photos' (or crops') feature statistics for MiFID."""
    from doggan.scoring import evaluation

    evaluation.real_stats_stage(outputs.RAW, outputs.CROPS, p.eval, outputs.REAL_STATS)
