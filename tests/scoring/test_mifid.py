"""MiFID as Kaggle computed it, on cases small enough to work out by hand."""

import math

import numpy as np
import pytest
from scipy import linalg

from doggan.scoring import mifid

REAL = np.array([[1.0, 0.0], [0.0, 1.0]])
# (1, 1) is 45° from both real rows: 1 - cos 45°; (-2, 0) is anti-parallel to (1, 0): |cos| = 1;
# the all-zero row is dropped, so d = (1 - 1/sqrt(2) + 0) / 2.
FAKE = np.array([[1.0, 1.0], [-2.0, 0.0], [0.0, 0.0]])
D_BY_HAND = (1 - 1 / math.sqrt(2)) / 2


def test_statistics_are_float64_mean_and_np_cov():
    features = np.array([[1, 2], [3, 6], [5, 7]], np.float32)
    mu, sigma = mifid.statistics(features)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, [3, 5])
    np.testing.assert_allclose(sigma, [[4, 5], [5, 7]])


def test_frechet_distance_of_diagonal_gaussians_by_hand():
    # |mu1-mu2|² = 1 + 4; Tr(S1 + S2 - 2 sqrt(S1 S2)) = (1+4+4+9) - 2 (2+6) = 2.
    fid = mifid.frechet_distance([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([4.0, 9.0]))
    assert fid == pytest.approx(7.0)


def test_frechet_distance_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    mu, sigma = mifid.statistics(rng.normal(size=(200, 6)))
    assert mifid.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_singular_product_takes_the_eps_fallback():
    # S1 S2 = [[0, 1], [0, 0]] has no square root (sqrtm returns inf); with eps on both diagonals the
    # product is [[a, b], [0, a]], a = eps(1 + eps), whose square root has trace 2 sqrt(a).
    sigma1, sigma2 = np.array([[0.0, 1.0], [0.0, 0.0]]), np.eye(2)
    assert not np.isfinite(linalg.sqrtm(sigma1 @ sigma2)).all()
    eps = 1e-6
    fid = mifid.frechet_distance([0, 0], sigma1, [0, 0], sigma2, eps=eps)
    assert fid == pytest.approx(2 - 4 * math.sqrt(eps * (1 + eps)))


def test_frechet_distance_rejects_mismatched_dimensions():
    with pytest.raises(ValueError, match="dimensions"):
        mifid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_memorization_distance_by_hand_drops_zero_rows_and_uses_absolute_cosine():
    assert mifid.memorization_distance(FAKE, REAL) == pytest.approx(D_BY_HAND)


def test_memorization_distance_averages_over_generated_images_not_real_ones():
    # Three generated copies of real row 0, far from row 1: over generated it is 0, over real it is not.
    fake = np.array([[1.0, 0.0]] * 3)
    real = np.array([[1.0, 0.0], [1.0, 1.0]])
    assert mifid.memorization_distance(fake, real) == pytest.approx(0.0)
    assert mifid.memorization_distance(real, fake) == pytest.approx(D_BY_HAND)


def test_blocked_nearest_matches_brute_force():
    rng = np.random.default_rng(1)
    fake, real = rng.normal(size=(37, 5)), rng.normal(size=(23, 5))
    distances, nearest = mifid.nearest_cosine_distance(fake, real, block=4)
    f = fake / np.linalg.norm(fake, axis=1, keepdims=True)
    r = real / np.linalg.norm(real, axis=1, keepdims=True)
    similarity = np.abs(f @ r.T)
    np.testing.assert_allclose(distances, 1 - similarity.max(axis=1), atol=1e-6)
    np.testing.assert_array_equal(nearest, similarity.argmax(axis=1))


def test_threshold_above_eps_leaves_fid_unpenalised():
    result = mifid.mifid(FAKE, REAL, eps=0.1)
    assert result["distance"] == pytest.approx(D_BY_HAND)
    assert result["distance_thresholded"] == 1.0
    assert result["mifid"] == pytest.approx(result["fid"])


def test_threshold_below_eps_divides_fid_by_the_distance():
    result = mifid.mifid(FAKE, REAL, eps=0.25)
    assert result["distance_thresholded"] == pytest.approx(D_BY_HAND)
    assert result["mifid"] == pytest.approx(result["fid"] / (D_BY_HAND + 1e-14))


def test_exact_copies_give_an_enormous_mifid():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(50, 4))
    result = mifid.mifid(real[:40], real)
    assert 0.0 <= result["distance"] < 1e-12
    assert result["mifid"] > 1e10 * result["fid"] > 0


def relu_features(rng, n, dim, shift, dead=0):
    """Correlated ReLU features like a backbone's pooled activations; `dead` units are always 0."""
    mixing = np.eye(dim) + 0.05 * rng.normal(size=(dim, dim)) / math.sqrt(dim)
    features = np.maximum(rng.normal(size=(n, dim)) @ mixing + shift, 0.0)
    features[:, dim - dead :] = 0.0
    return features


def assert_fast_route_is_kaggles(fake, real):
    (mu1, sigma1), (mu2, sigma2) = mifid.statistics(fake), mifid.statistics(real)
    assert mifid.trace_sqrt_eigh(sigma1, sigma2) is not None, "the eigh route should apply"
    fast = mifid.frechet_distance(mu1, sigma1, mu2, sigma2)
    kaggle = mifid.frechet_distance(mu1, sigma1, mu2, sigma2, method="sqrtm")
    assert fast > 0 and fast == pytest.approx(kaggle, rel=1e-6)


# 256 features rather than Inception's 2,048: the same routes in a small part of sqrtm's time
# (benchmarks/mifid.py measures them at 2,048).
def test_fast_fid_equals_kaggles_sqrtm_on_full_rank_covariances():
    rng = np.random.default_rng(3)
    assert_fast_route_is_kaggles(relu_features(rng, 1200, 256, 0.3), relu_features(rng, 1200, 256, 0.2))


def test_fast_fid_equals_kaggles_sqrtm_with_a_rank_deficient_covariance():
    rng = np.random.default_rng(4)
    fake = relu_features(rng, 1200, 256, 0.3, dead=40)
    assert not mifid.statistics(fake)[1][-40:].any(), "40 zero rows: rank at most 216"
    assert_fast_route_is_kaggles(fake, relu_features(rng, 1200, 256, 0.2))


def test_fast_fid_equals_kaggles_sqrtm_with_fewer_images_than_features():
    # As when training scores 1,000 samples against the real statistics: sqrtm goes complex here.
    rng = np.random.default_rng(5)
    fake, real = relu_features(rng, 150, 256, 0.3), relu_features(rng, 1000, 256, 0.2)
    assert np.iscomplexobj(linalg.sqrtm(mifid.statistics(fake)[1] @ mifid.statistics(real)[1]))
    assert_fast_route_is_kaggles(fake, real)


def test_both_covariances_singular_keeps_kaggles_sqrtm_route():
    rng = np.random.default_rng(6)
    (mu1, sigma1), (mu2, sigma2) = (mifid.statistics(relu_features(rng, 20, 64, s)) for s in (0.3, 0.2))
    assert mifid.trace_sqrt_eigh(sigma1, sigma2) is None
    assert mifid.frechet_distance(mu1, sigma1, mu2, sigma2) == mifid.frechet_distance(
        mu1, sigma1, mu2, sigma2, method="sqrtm"
    )


def test_eigh_route_refuses_what_is_not_a_pair_of_covariances():
    indefinite = np.diag([1.0, -1.0])
    assert mifid.trace_sqrt_eigh(np.eye(2), indefinite) is None
    assert mifid.trace_sqrt_eigh(np.eye(2), np.array([[1.0, 1.0], [0.0, 1.0]])) is None
    assert mifid.trace_sqrt_eigh(np.eye(2), np.diag([4.0, 9.0])) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="method"):
        mifid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), method="eigh")
