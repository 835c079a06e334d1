"""Measures beside FID on the same features: KID, improved precision and recall, density and coverage.

- KID (Bińkowski et al. 2018): the unbiased MMD² with the cubic polynomial kernel
  k(x, y) = (xᵀy / d + 1)³, averaged over random subsets (100 of up to 1,000, as TF-GAN and clean-fid).
  Unbiased, so it can be slightly negative for two samples of one distribution.
- Precision and recall (Kynkäänniemi et al. 2019), k = 3: the share of generated features inside the
  k-NN ball of some real feature, and the share of real features inside the ball of some generated one.
- Density and coverage (Naeem et al. 2020), k = 5: how many real balls hold each generated feature
  (over k), and the share of real balls that hold at least one generated feature.

Balls are open (distance < radius) as in the authors' code (clovaai/generative-evaluation-prdc); a
feature's radius is the distance to its k-th nearest neighbour in its own set, itself excluded. The
k-NN measures subsample each set to KNN_CAP rows (seeded) and compute distances in blocks of rows,
so 10,000 x 5,000 features fit in memory.
"""

from __future__ import annotations

import numpy as np

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PR_K = 3
DC_K = 5
KNN_CAP = 5000  # rows of each set the k-NN measures use (a seeded random subset beyond that)
BLOCK = 1024  # rows per block of the distance computations
KID_KERNEL_ENTRIES = 4_000_000  # kernels up to this size (32 MB) are computed once for all of KID's subsets


def _cubic(a: np.ndarray, b: np.ndarray, dim: int) -> np.ndarray:
    """The cubic polynomial kernel between the rows of a and b (cubed by products: `** 3` is pow)."""
    k = a @ b.T / dim + 1
    return k * k * k


def _kernel_block(a: np.ndarray, b: np.ndarray, rows: np.ndarray, cols: np.ndarray, whole) -> np.ndarray:
    """The kernel between a[rows] and b[cols]: picked out of `whole` (a's and b's, or None), else computed."""
    return whole[np.ix_(rows, cols)] if whole is not None else _cubic(a[rows], b[cols], a.shape[1])


def kid(real, fake, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> dict:
    """KID: mean and std over `subsets` random subsets of min(subset_size, |real|, |fake|) rows each.

    Each kernel between two sets of at most KID_KERNEL_ENTRIES entries (the sample's real photos, the
    samples scored during training) is computed once and every subset's block picked out of it."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError(f"KID needs at least 2 features per set, got {len(real)} real and {len(fake)} fake")
    rng, dim = np.random.default_rng(seed), real.shape[1]
    whole = {
        (name_a, name_b): _cubic(a, b, dim) if len(a) * len(b) <= KID_KERNEL_ENTRIES else None
        for name_a, a, name_b, b in (("x", real, "x", real), ("y", fake, "y", fake), ("x", real, "y", fake))
    }
    values = np.empty(subsets)
    for s in range(subsets):
        i, j = rng.choice(len(real), m, replace=False), rng.choice(len(fake), m, replace=False)
        xx = _kernel_block(real, real, i, i, whole["x", "x"])
        yy = _kernel_block(fake, fake, j, j, whole["y", "y"])
        xy = _kernel_block(real, fake, i, j, whole["x", "y"])
        within = xx.sum() - np.trace(xx) + yy.sum() - np.trace(yy)
        values[s] = (within / (m - 1) - 2 * xy.sum() / m) / m
    return {"kid": float(values.mean()), "kid_std": float(values.std()), "kid_subset_size": m}


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of a and b, rounding below 0 clipped."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0.0)


def knn_radii(features, ks: tuple[int, ...], block: int = BLOCK) -> np.ndarray:
    """Per k (rows) and feature (columns): squared distance to the k-th nearest other feature of the set."""
    features = np.asarray(features, np.float64)
    if len(features) <= max(ks):
        raise ValueError(f"k-NN radii with k = {max(ks)} need more than {max(ks)} rows, got {len(features)}")
    radii = np.empty((len(ks), len(features)))
    for start in range(0, len(features), block):
        d = np.partition(_squared_distances(features[start : start + block], features), ks, axis=1)
        radii[:, start : start + block] = d[:, list(ks)].T  # index 0 is the feature itself
    return radii


def prdc(real, fake, pr_k: int = PR_K, dc_k: int = DC_K, block: int = BLOCK) -> dict:
    """Precision, recall (k = pr_k), density and coverage (k = dc_k) in one blocked pass over real x fake.

    precision: fake rows inside some real pr_k-ball; recall: real rows inside some fake pr_k-ball;
    density: real dc_k-balls holding each fake row, averaged, over dc_k; coverage: real dc_k-balls
    holding at least one fake row.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    real_pr, real_dc = knn_radii(real, (pr_k, dc_k), block)
    (fake_pr,) = knn_radii(fake, (pr_k,), block)
    in_real, density, covered, recalled = 0, 0, np.zeros(len(real), bool), np.zeros(len(real), bool)
    for start in range(0, len(fake), block):
        d = _squared_distances(fake[start : start + block], real)
        in_real += int((d < real_pr).any(1).sum())
        inside_dc = d < real_dc
        density += int(inside_dc.sum())
        covered |= inside_dc.any(0)
        recalled |= (d < fake_pr[start : start + block, None]).any(0)
    return {
        "precision": in_real / len(fake),
        "recall": float(recalled.mean()),
        "density": density / (dc_k * len(fake)),
        "coverage": float(covered.mean()),
    }


def subsample(features, cap: int, rng: np.random.Generator) -> np.ndarray:
    """At most `cap` rows, a random choice (in their original order) when there are more."""
    features = np.asarray(features)
    if len(features) <= cap:
        return features
    return features[np.sort(rng.choice(len(features), cap, replace=False))]


def measures(real, fake, seed: int = 0, knn_cap: int = KNN_CAP) -> dict:
    """KID, precision, recall, density and coverage of two feature sets, with the k's and set sizes."""
    rng = np.random.default_rng(seed)
    knn_real, knn_fake = subsample(real, knn_cap, rng), subsample(fake, knn_cap, rng)
    return {
        **kid(real, fake, seed=seed),
        **prdc(knn_real, knn_fake),
        "kid_subsets": KID_SUBSETS,
        "precision_recall_k": PR_K,
        "density_coverage_k": DC_K,
        "knn_real": len(knn_real),
        "knn_generated": len(knn_fake),
    }
