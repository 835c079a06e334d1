"""Where the stages write: the paths dvc.yaml declares, and the small records every stage leaves."""

from __future__ import annotations

from pathlib import Path

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
EFFECTIVE_PARAMS = Path("reports/params")  # <stage>.yaml: the values each run used, preset laid over


def headline(record: dict, keys: tuple[str, ...]) -> dict:
    """The `keys` of a stage's full record (and their private_ twins), in that order: the few numbers
    `dvc exp show` puts first; the full records are in reports/ and dvclive/metrics.json."""
    return {
        prefix + key: record[prefix + key]
        for prefix in ("", "private_")
        for key in keys
        if prefix + key in record
    }
