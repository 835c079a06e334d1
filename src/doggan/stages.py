"""The pipeline's stages: each reads its params section, calls the library and writes its outputs.

Paths here are the ones `dvc.yaml` declares; `pipeline/<stage>.py` and `doggan <stage>` run these.
"""

from __future__ import annotations

import logging
from pathlib import Path

from doggan.files import write_json
from doggan.params import Params

log = logging.getLogger("doggan")

RAW = Path("data/raw")
CROPS = Path("data/crops/crops.npz")
CROP_REPORT = Path("reports/crop.json")
CROP_PREVIEW = Path("plots/crop_preview.png")
POLICY = Path("data/augment/policy.json")
AUGMENT_PREVIEW = Path("plots/augment_preview.png")
MODELS = Path("models")
CHECKPOINTS = Path("models/checkpoints")
LIVE = Path("dvclive")
TRAIN_PLOTS = Path("plots/train")
TRAIN_METRICS = Path("metrics/train.json")
REAL_STATS = Path("data/real_stats/stats.npz")
SUBMISSION = Path("submission/images.zip")
SUBMISSION_PREVIEW = Path("submission/preview.png")
EVAL = Path("metrics/eval.json")
EVAL_REPORT = Path("reports/eval.json")
EVAL_PLOTS = Path("plots/eval")


# The few numbers `dvc exp show` puts first, in this order; the full records are in reports/ and
# dvclive/metrics.json. Keys of the private-leaderboard protocol carry a "private_" prefix.
EVAL_HEADLINE = ("mifid", "fid", "distance", "backbone")
TRAIN_HEADLINE = ("train_time_s", "steps", "epoch", "stopped_on_budget", "best_mifid")


def headline(record: dict, keys: tuple[str, ...]) -> dict:
    """The `keys` of a stage's full record (and their private_ twins), in that order."""
    return {
        prefix + key: record[prefix + key]
        for prefix in ("", "private_")
        for key in keys
        if prefix + key in record
    }


def download(p: Params) -> None:
    from doggan import download

    download.fetch(p.data, RAW)


def crop(p: Params) -> None:
    from doggan import crop

    crop.crop_stage(RAW, p.crop, CROPS, CROP_REPORT, CROP_PREVIEW)


def augment(p: Params) -> None:
    from doggan import data_provider

    data_provider.augment_stage(CROPS, p.augment, POLICY, AUGMENT_PREVIEW)


def train(p: Params) -> None:
    from doggan import train_lib

    paths = train_lib.TrainPaths(CROPS, POLICY, REAL_STATS, MODELS, CHECKPOINTS, LIVE, TRAIN_PLOTS)
    summary = train_lib.train_stage(paths, p.train, p.eval)
    write_json(TRAIN_METRICS, headline(summary, TRAIN_HEADLINE), sort_keys=False)


def real_stats(p: Params) -> None:
    from doggan import evaluation

    evaluation.real_stats_stage(RAW, CROPS, p.eval, REAL_STATS)


def evaluate(p: Params) -> None:
    from doggan import evaluation

    metrics = evaluation.evaluate_stage(SUBMISSION, REAL_STATS, p.eval, EVAL_REPORT, EVAL_PLOTS)
    write_json(EVAL, headline(metrics, EVAL_HEADLINE), sort_keys=False)


def submission(p: Params) -> None:
    from doggan import submission

    submission.submission_stage(MODELS, p.submission, SUBMISSION, SUBMISSION_PREVIEW)


STAGES = {
    "download": download,
    "crop": crop,
    "augment": augment,
    "train": train,
    "real_stats": real_stats,
    "evaluate": evaluate,
    "submission": submission,
}
