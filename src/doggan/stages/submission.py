"""submission: 10,000 generated PNGs zipped in Kaggle's format, validated, with a preview."""

from __future__ import annotations

from doggan.params import Params
from doggan.stages import outputs

PARAMS = (
    "submission.n_images",
    "submission.seed",
    "submission.batch_size",
    "submission.truncation",
    "submission.best_of",
    "submission.resize",
    "submission.workers",
    "train.preset",
)


def run(p: Params) -> None:
    """Draw the submission from the trained generator into submission/images.zip and check it."""
    from doggan.output import submission_writer

    submission_writer.submission_stage(
        outputs.MODELS, p.submission, outputs.SUBMISSION, outputs.SUBMISSION_PREVIEW
    )
