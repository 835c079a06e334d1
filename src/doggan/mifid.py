"""MiFID exactly as Kaggle computed it for Generative Dog Images (2019).

FID is the Fréchet distance between Gaussians fitted to the real and generated features; the
memorization distance is, over the GENERATED images, the mean of the smallest cosine distance
(1 - |cos|) to any real image. MiFID = FID / (d_thr + 1e-14), with d_thr = d if d < eps else 1.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

KAGGLE_EPS_PUBLIC = 0.1
KAGGLE_EPS_PRIVATE = 0.25


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (np.cov, rowvar=False) in float64."""
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||² + Tr(S1 + S2 - 2 sqrt(S1 S2)), with eps on the diagonal if the product is singular."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two feature sets have different dimensions")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    fid = diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return float(max(fid, 0.0))  # identical sets round to about -1e-7; a distance is never negative


def _normalise(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, np.float64)
    features = features[np.any(features != 0, axis=1)]
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def nearest_cosine_distance(fake_features, real_features, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per generated row (zero rows dropped): min over real rows of 1 - |cos|, and the nearest row.

    Float64, in blocks of generated rows (10,000 x 22,000 fits); rounding below 0 is clipped to 0.
    """
    fake, real = _normalise(fake_features), _normalise(real_features)
    distances = np.empty(len(fake), np.float64)
    nearest = np.empty(len(fake), np.int64)
    for start in range(0, len(fake), block):
        similarity = np.abs(fake[start : start + block] @ real.T)
        nearest[start : start + block] = similarity.argmax(axis=1)
        distances[start : start + block] = np.maximum(1.0 - similarity.max(axis=1), 0.0)
    return distances, nearest


def memorization_distance(fake_features, real_features) -> float:
    """Kaggle's d: mean over generated images of the min over real images of 1 - |cos similarity|."""
    distances, _ = nearest_cosine_distance(fake_features, real_features)
    return float(distances.mean())


def threshold(distance: float, eps: float = KAGGLE_EPS_PUBLIC) -> float:
    return distance if distance < eps else 1.0


def mifid_from(fid: float, distance: float, eps: float = KAGGLE_EPS_PUBLIC) -> dict:
    d_thr = threshold(distance, eps)
    return {"fid": fid, "distance": distance, "distance_thresholded": d_thr, "mifid": fid / (d_thr + 1e-14)}


def mifid(fake_features, real_features, eps: float = KAGGLE_EPS_PUBLIC) -> dict:
    """FID, memorization distance, its thresholded value and MiFID of two feature sets."""
    fid = frechet_distance(*statistics(fake_features), *statistics(real_features))
    return mifid_from(fid, memorization_distance(fake_features, real_features), eps)
