"""evaluate: MiFID of the submitted PNGs against the real statistics, as Kaggle computed it, and the
measures beside it on the same features (KID, precision, recall, density, coverage)."""

from __future__ import annotations

from doggan.files import write_json
from doggan.params import Params
from doggan.stages import outputs

PARAMS = ("eval.backbone", "eval.protocol", "eval.inception_graph", "eval.n_images", "eval.batch_size")
HEADLINE = ("mifid", "fid", "kid", "precision", "recall", "density", "coverage", "distance", "backbone")


def run(p: Params) -> None:
    """Score submission/images.zip; headline numbers to metrics/, the full record to reports/."""
    from doggan.scoring import evaluation

    metrics = evaluation.evaluate_stage(
        outputs.SUBMISSION, outputs.REAL_STATS, p.eval, outputs.EVAL_REPORT, outputs.EVAL_PLOTS
    )
    write_json(outputs.EVAL, outputs.headline(metrics, HEADLINE), sort_keys=False)
