"""Real-image statistics (computed once per dataset and backbone) and MiFID of a submission.

The real_stats stage stores, per protocol, the backbone's features of the real images with their
mean and covariance and the memorization threshold for that backbone (doggan.scoring.memorization), plus
small thumbnails for the memorization grid and descriptor; evaluate then never reads the raw
photos. Numbers from different backbones are never mixed: evaluate uses the backbone the
statistics were made with, and refuses a mismatch.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from doggan.errors import HandOverError
from doggan.files import atomic_path, write_json
from doggan.params import EvalParams
from doggan.scoring import backbones, measures, memorization, mifid

log = logging.getLogger("doggan")

STATS_STAGE = "real_stats"  # the stage that writes the real statistics
WARN_MARGIN = 1.2  # warn when the memorization distance is within 20% of the threshold


def protocols(eval_params: EvalParams) -> list[str]:
    return ["public", "private"] if eval_params.protocol == "both" else [eval_params.protocol]


def load_backbone(eval_params: EvalParams, protocol: str, name: str | None = None) -> backbones.Backbone:
    """The backbone for a protocol: `name` when given (as stored with the stats), else from params."""
    requested = name or eval_params.backbone
    if requested == "auto" and protocol == "private":
        return backbones.load("auto", eval_params.inception_graph, private=True)
    return backbones.load(requested, eval_params.inception_graph)


def _batched(images: np.ndarray, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size]


def _real_images(raw_dir: Path, crops_path: Path, eval_params: EvalParams) -> np.ndarray:
    if eval_params.real == "crops":
        from doggan.crops.file import load_crops

        images = load_crops(crops_path).images
        if images.shape[-1] != 3:
            images = np.repeat(images, 3, axis=-1)
        return images
    from doggan.data.photos import iter_photos

    return np.concatenate(list(iter_photos(raw_dir, 64, eval_params.batch_size)))


def real_stats_stage(raw_dir: Path, crops_path: Path, eval_params: EvalParams, out_path: Path) -> None:
    """Features, mean and covariance of the real images under each protocol's backbone, and the
    memorization threshold for it (Kaggle's, or calibrated on held-out real images)."""
    images = _real_images(Path(raw_dir), Path(crops_path), eval_params)
    thumbs = memorization.thumbnails(images)
    arrays: dict[str, np.ndarray] = {}
    meta: dict = {
        "real": eval_params.real,
        "n_real": len(images),
        "fingerprint": hashlib.sha256(images.tobytes()).hexdigest()[:16],
    }
    for protocol in protocols(eval_params):
        backbone = load_backbone(eval_params, protocol)
        log.info("real_stats (%s): %d images through %s", protocol, len(images), backbone.name)
        feats = backbones.features(backbone, _batched(images, eval_params.batch_size))
        mu, sigma = mifid.statistics(feats)
        calibration = memorization.calibrate(backbone.name, protocol, feats, thumbs)
        arrays.update({f"{protocol}_features": feats, f"{protocol}_mu": mu, f"{protocol}_sigma": sigma})
        arrays[f"{protocol}_heldout"] = calibration["heldout"]
        meta[protocol] = {
            "backbone": backbone.name,
            "backbone_reason": backbone.reason,
            "kaggle_comparable": backbone.kaggle_comparable,
            "dim": backbone.dim,
            **backbones.provenance(backbone),
            "memorization": calibration["record"],
        }
        log.info(
            "real_stats (%s): memorization eps %.4f (%s); held-out real images sit %.4f (%d%% quantile) "
            "and %.4f (median) from the rest",
            protocol,
            calibration["record"]["eps"],
            calibration["record"]["eps_source"],
            calibration["record"]["heldout_distance"],
            round(100 * memorization.HELDOUT_QUANTILE),
            calibration["record"]["heldout_median"],
        )
    with atomic_path(out_path, suffix=".npz") as tmp:
        np.savez(tmp, meta=np.array(json.dumps(meta)), thumbnails=thumbs, **arrays)


def load_stats(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The statistics real_stats wrote (meta, arrays), checked: a missing, truncated or corrupted file, or
    one whose arrays do not match its record, is an error saying how to remake it."""
    path = Path(path)
    if not path.is_file():
        raise HandOverError(path, "real-image statistics not found", STATS_STAGE)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
        problem = _stats_problem(meta, arrays)
    except (zipfile.BadZipFile, EOFError, zlib.error, KeyError, ValueError, TypeError, OSError) as exc:
        problem = f"truncated or corrupted ({type(exc).__name__}: {exc})"
    if problem:
        raise HandOverError(path, problem, STATS_STAGE)
    return meta, arrays


def _stats_problem(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    """What is wrong with the statistics of each protocol the record lists, or "" when they are whole."""
    if "thumbnails" not in arrays or arrays["thumbnails"].ndim != 4:
        return "no thumbnails of the real images"
    for protocol in ("public", "private"):
        if protocol not in meta:
            continue
        dim = int(meta[protocol]["dim"])
        shapes = {
            "features": (int(meta["n_real"]), dim),
            "mu": (dim,),
            "sigma": (dim, dim),
        }
        for name, shape in shapes.items():
            array = arrays.get(f"{protocol}_{name}")
            if array is None or array.shape != shape or array.dtype.kind != "f":
                found = "missing" if array is None else f"{array.dtype} {array.shape}"
                backbone = meta[protocol]["backbone"]
                return f"{protocol}_{name} is {found}, expected floats {shape} ({backbone} features)"
    return ""


def read_submission(zip_path: Path, limit: int = 0) -> np.ndarray:
    """The submission's images decoded as Kaggle decoded them (PIL, RGB), in 0.png … order; a truncated or
    corrupted zip, or a PNG that does not decode, is an error saying how to remake it."""
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise HandOverError(zip_path, "submission not found", "submission")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = sorted((n for n in zf.namelist() if n.endswith(".png")), key=lambda n: int(Path(n).stem))
            names = names[:limit] if limit else names
            images = [np.asarray(Image.open(io.BytesIO(zf.read(n))).convert("RGB")) for n in names]
        return np.stack(images)
    except (zipfile.BadZipFile, EOFError, zlib.error, ValueError, OSError) as exc:
        problem = f"truncated, corrupted or not a zip of PNGs ({type(exc).__name__}: {exc})"
        raise HandOverError(zip_path, problem, "submission") from None


def real_reference(meta: dict, arrays: dict, protocol: str) -> dict:
    """What generated images are matched against: the real features, or the thumbnails' descriptors."""
    reference = {"features": arrays[f"{protocol}_features"]}
    if meta[protocol]["memorization"]["memorization_space"] == "thumbnails":
        reference["descriptors"] = memorization.descriptors(arrays["thumbnails"])
    return reference


def score(
    images: np.ndarray,
    meta: dict,
    arrays: dict,
    protocol: str,
    backbone: backbones.Backbone,
    batch_size: int,
    reference: dict | None = None,
) -> tuple[dict, memorization.Match]:
    """MiFID of uint8 images against stored statistics, with the stored threshold, and the measures
    beside it (KID, precision, recall, density, coverage) on the same features; and the nearest
    real image of each. `reference`: `real_reference` of these statistics, when already made."""
    feats = backbones.features(backbone, _batched(images, batch_size))
    mu, sigma = mifid.statistics(feats)
    fid = mifid.frechet_distance(mu, sigma, arrays[f"{protocol}_mu"], arrays[f"{protocol}_sigma"])
    threshold = meta[protocol]["memorization"]
    reference = reference or real_reference(meta, arrays, protocol)
    found = memorization.match(threshold["memorization_space"], feats, images, reference)
    result = mifid.mifid_from(fid, float(found.distances.mean()), threshold["eps"])
    result.update(measures.measures(arrays[f"{protocol}_features"], feats))
    result.update(threshold, memorized_fraction=float(np.mean(found.distances < threshold["eps"])))
    return result, found


def stored_backbone(meta: dict, protocol: str, eval_params: EvalParams, stats_path: Path) -> str:
    """The backbone the statistics were made with; an explicit eval.backbone must be that one.

    DVC re-runs real_stats when eval.backbone changes; this guards stages run by hand.
    """
    if protocol not in meta:
        raise HandOverError(stats_path, f"no {protocol} statistics", STATS_STAGE)
    if "memorization" not in meta[protocol]:
        raise HandOverError(stats_path, "no memorization threshold (older statistics)", STATS_STAGE)
    stored = meta[protocol]["backbone"]
    if eval_params.backbone not in ("auto", stored):
        problem = (
            f"the {protocol} statistics were made with the {stored} backbone, but eval.backbone is "
            f"{eval_params.backbone}; set eval.backbone to auto or {stored} to use them"
        )
        raise HandOverError(stats_path, problem, STATS_STAGE)
    return stored


def evaluate_stage(
    submission_zip: Path, real_stats_path: Path, eval_params: EvalParams, metrics_path: Path, plots_dir: Path
) -> dict:
    """MiFID of the submitted PNGs against the stored real statistics, per protocol; writes metrics."""
    meta, arrays = load_stats(real_stats_path)
    images = read_submission(submission_zip, eval_params.n_images)
    metrics: dict = {"protocol": eval_params.protocol, "n_generated": len(images), "n_real": meta["n_real"]}
    for protocol in protocols(eval_params):
        name = stored_backbone(meta, protocol, eval_params, real_stats_path)
        backbone = load_backbone(eval_params, protocol, name)
        result, found = score(images, meta, arrays, protocol, backbone, eval_params.batch_size)
        result.update(
            backbone=backbone.name,
            backbone_reason=meta[protocol]["backbone_reason"],
            kaggle_comparable=backbone.kaggle_comparable,
            **backbones.provenance(backbone),
        )
        prefix = "" if protocol == protocols(eval_params)[0] else f"{protocol}_"
        metrics.update({prefix + k: v for k, v in result.items()})
        if not backbone.kaggle_comparable:
            log.warning("MiFID from the %s backbone is not comparable with Kaggle's scores", backbone.name)
        if result["distance"] < WARN_MARGIN * result["eps"]:
            log.warning(
                "memorization: distance %.4f is within 20%% of the threshold %.4f (%s), %.0f%% of the images "
                "closer than it; Kaggle would penalise or disqualify copies of training images (see %s)",
                result["distance"],
                result["eps"],
                result["eps_source"],
                100 * result["memorized_fraction"],
                Path(plots_dir) / "memorization.png",
            )
        if protocol == protocols(eval_params)[0]:
            memorization.save_pairs(
                Path(plots_dir) / "memorization.png", images, arrays["thumbnails"], found, result["eps"]
            )
    write_json(metrics_path, metrics)
    log.info(
        "evaluate: MiFID %.3f (FID %.3f, d %.4f, %s); KID %.4f, precision %.3f, recall %.3f, "
        "density %.3f, coverage %.3f",
        *(metrics[k] for k in ("mifid", "fid", "distance", "backbone", "kid", "precision", "recall")),
        metrics["density"],
        metrics["coverage"],
    )
    return metrics


_cache: dict = {}


def score_images(images_uint8: np.ndarray, real_stats_path: Path, eval_params: EvalParams) -> dict:
    """MiFID and the measures beside it (`score`'s record, by name) of in-memory images against cached
    statistics (used during training); first protocol only."""
    key = (
        str(real_stats_path),
        Path(real_stats_path).stat().st_mtime,
        eval_params.backbone,
        eval_params.protocol,
        eval_params.inception_graph,
    )
    if _cache.get("key") != key:
        meta, arrays = load_stats(real_stats_path)
        protocol = protocols(eval_params)[0]
        backbone = load_backbone(
            eval_params, protocol, stored_backbone(meta, protocol, eval_params, real_stats_path)
        )
        reference = real_reference(meta, arrays, protocol)
        _cache.update(
            key=key, meta=meta, arrays=arrays, protocol=protocol, backbone=backbone, reference=reference
        )
    c = _cache
    result, _ = score(
        images_uint8,
        c["meta"],
        c["arrays"],
        c["protocol"],
        c["backbone"],
        eval_params.batch_size,
        c["reference"],
    )
    return result
