"""KID, precision, recall, density and coverage against cases computed by hand, and their behaviour on
samples whose relation is known."""

import numpy as np
import pytest

from doggan.scoring import measures

# Real points on a line, generated points beside them: every distance can be read off by eye.
REAL = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [4.0, 0.0]])
FAKE = np.array([[0.5, 0.0], [3.5, 0.0], [10.0, 0.0]])


def test_knn_radii_are_the_kth_nearest_other_point():
    # nearest others of 0: 1, 2, 4; of 1: 1, 1, 3; of 2: 1, 2, 2; of 4: 2, 3, 4 (squared below)
    radii = measures.knn_radii(REAL, (1, 3))
    np.testing.assert_allclose(radii[0], [1, 1, 1, 4])
    np.testing.assert_allclose(radii[1], [16, 9, 4, 16])
    with pytest.raises(ValueError, match="more than 3"):
        measures.knn_radii(REAL[:3], (3,))


def test_precision_recall_density_coverage_by_hand():
    # k = 1: real radii 1, 1, 1, 2. Fake 0.5 lies inside the balls of 0 and 1, fake 3.5 inside the
    # ball of 4 (0.5 < 2) and outside that of 2 (1.5 > 1), fake 10 in none.
    # Fake radii (k = 1): 3, 3, 6.5; real 0, 1, 2 lie within 3 of fake 0.5, real 4 within 3 of 3.5.
    got = measures.prdc(REAL, FAKE, pr_k=1, dc_k=1)
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["recall"] == 1.0
    assert got["density"] == pytest.approx((2 + 1 + 0) / (1 * 3))
    assert got["coverage"] == pytest.approx(3 / 4)  # the balls of 0, 1 and 4 hold a fake point
    # k = 2: real radii 2, 1, 2, 3; fake 0.5 in the balls of 0, 1 and 2; 3.5 in those of 2 and 4.
    got = measures.prdc(REAL, FAKE, pr_k=2, dc_k=2)
    assert got["density"] == pytest.approx((3 + 2 + 0) / (2 * 3))
    assert got["coverage"] == 1.0


def test_kid_by_hand():
    # d = 1: k(x, y) = (xy + 1)^3. x = {0, 1}, y = {1, 2}: within x: k(0,1) = 1; within y: k(1,2) = 27;
    # across: k(0,1) = 1, k(0,2) = 1, k(1,1) = 8, k(1,2) = 27. MMD² = 1 + 27 - 2 * 37 / 4 = 9.5.
    got = measures.kid(np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]]), subsets=3)
    assert got["kid"] == pytest.approx(9.5) and got["kid_std"] == pytest.approx(0.0)
    assert got["kid_subset_size"] == 2


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(600, 16))
    same = [measures.kid(real, rng.normal(size=(600, 16)), subsets=20, seed=s)["kid"] for s in range(5)]
    shifted = measures.kid(real, rng.normal(0.5, 1, (600, 16)), subsets=20)
    assert abs(np.mean(same)) < 2e-3 and min(same) < 1e-3
    assert shifted["kid"] > 20 * max(abs(np.mean(same)), 1e-4)
    assert shifted["kid_std"] > 0


def test_kid_is_seeded():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(300, 8)), rng.normal(0.2, 1, (200, 8))
    assert measures.kid(real, fake, subsets=10, seed=3) == measures.kid(real, fake, subsets=10, seed=3)


def test_kid_from_one_kernel_matches_kid_from_each_subsets_blocks(monkeypatch):
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(120, 8)), rng.normal(0.3, 1, (90, 8))
    assert len(real) ** 2 <= measures.KID_KERNEL_ENTRIES
    once = measures.kid(real, fake, subsets=7, subset_size=50, seed=4)
    monkeypatch.setattr(measures, "KID_KERNEL_ENTRIES", 0)
    per_subset = measures.kid(real, fake, subsets=7, subset_size=50, seed=4)
    assert once["kid"] == pytest.approx(per_subset["kid"], rel=1e-12)
    assert once["kid_std"] == pytest.approx(per_subset["kid_std"], rel=1e-9)


def test_one_real_image_repeated_has_full_precision_and_no_recall_or_coverage():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(400, 8))
    copies = np.repeat(real[:1], 200, axis=0)
    got = measures.measures(real, copies)
    assert got["precision"] == 1.0
    assert got["recall"] < 0.01 and got["coverage"] < 0.01
    fresh = measures.measures(real, rng.normal(size=(400, 8)))
    assert fresh["recall"] > 0.5 and fresh["coverage"] > 0.5 and 0.5 < fresh["density"] < 1.5


def test_the_knn_measures_subsample_to_their_cap_and_record_it():
    rng = np.random.default_rng(3)
    got = measures.measures(rng.normal(size=(120, 4)), rng.normal(size=(90, 4)), knn_cap=50)
    assert (got["knn_real"], got["knn_generated"]) == (50, 50)
    assert (got["precision_recall_k"], got["density_coverage_k"]) == (measures.PR_K, measures.DC_K)
    assert got["kid_subset_size"] == 90 and got["kid_subsets"] == measures.KID_SUBSETS


def test_blocked_distances_agree_with_one_block():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(70, 5)), rng.normal(0.3, 1, (50, 5))
    assert measures.prdc(real, fake, block=16) == measures.prdc(real, fake, block=1000)
