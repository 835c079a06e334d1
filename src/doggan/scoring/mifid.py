"""MiFID exactly as Kaggle computed it for Generative Dog Images (2019).

FID is the Fréchet distance between Gaussians fitted to the real and generated features; the
memorization distance is, over the GENERATED images, the mean of the smallest cosine distance
(1 - |cos|) to any real image. MiFID = FID / (d_thr + 1e-14), with d_thr = d if d < eps else 1.
The trace of sqrt(S1 S2) comes from symmetric eigendecompositions where that is exact (much faster
than scipy's sqrtm on 2048 features), else from sqrtm exactly as Kaggle computed it.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

KAGGLE_EPS_PUBLIC = 0.1
KAGGLE_EPS_PRIVATE = 0.25
SYMMETRY_RTOL = 1e-10


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (np.cov, rowvar=False) in float64."""
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def trace_sqrt_sqrtm(sigma1: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """Kaggle's route: trace of the real part of scipy's sqrtm(S1 S2), eps on both diagonals if not finite."""
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    return float(np.trace(np.real(covmean)))


def _symmetric(matrix: np.ndarray) -> bool:
    return bool(np.abs(matrix - matrix.T).max() <= SYMMETRY_RTOL * np.abs(matrix).max())


def trace_sqrt_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float | None:
    """Tr sqrtm(S1 S2) from symmetric eigendecompositions in float64, or None where that is not exact.

    When both are symmetric, one of them (S) has full numerical rank and the other (B) is positive
    semi-definite, S1 S2 is similar to the PSD matrix A B A (A = S^1/2), so its principal square root
    exists and its trace is the sum of the square roots of the eigenvalues of A B A (rounding below 0
    clipped). Otherwise (both singular, or not covariances) the caller keeps Kaggle's sqrtm route.
    """
    if not (_symmetric(sigma1) and _symmetric(sigma2)):
        return None
    tolerance = len(sigma1) * np.finfo(np.float64).eps  # numpy's matrix_rank tolerance, relative
    for full, other in ((sigma1, sigma2), (sigma2, sigma1)):
        try:
            np.linalg.cholesky(full)  # a cheap screen: a singular covariance almost always fails it
        except np.linalg.LinAlgError:
            continue
        values, vectors = np.linalg.eigh(full)
        if values.min() <= tolerance * values.max():
            continue
        root = (vectors * np.sqrt(values)) @ vectors.T
        inner = root @ other @ root
        product = np.linalg.eigvalsh((inner + inner.T) / 2)
        if product.min() < -tolerance * max(product.max(), 0.0):
            return None  # A B A is congruent to B: a clearly negative eigenvalue means B is not PSD
        return float(np.sqrt(np.clip(product, 0.0, None)).sum())
    return None


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6, method: str = "auto") -> float:
    """||mu1 - mu2||² + Tr(S1 + S2 - 2 sqrt(S1 S2)), in float64.

    `method` "sqrtm" is Kaggle's computation (`trace_sqrt_sqrtm`); "auto" takes the exact eigh route
    (`trace_sqrt_eigh`) where it applies, and Kaggle's elsewhere.
    """
    if method not in ("auto", "sqrtm"):
        raise ValueError(f"method must be 'auto' or 'sqrtm', not {method!r}")
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two feature sets have different dimensions")
    diff = mu1 - mu2
    trace_sqrt = trace_sqrt_eigh(sigma1, sigma2) if method == "auto" else None
    if trace_sqrt is None:
        trace_sqrt = trace_sqrt_sqrtm(sigma1, sigma2, eps)
    fid = diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt
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
