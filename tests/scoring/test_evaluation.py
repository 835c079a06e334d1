"""real_stats and evaluate on real archives, with the stand-in backbone."""

import json
import logging

import numpy as np
import pytest
from PIL import Image

from doggan.data.photos import iter_photos
from doggan.data.sample import write_sample
from doggan.errors import DogganError
from doggan.params import EvalParams
from doggan.scoring.evaluation import evaluate_stage, load_stats, real_stats_stage, score_images

PARAMS = EvalParams(backbone="standin", batch_size=64)
# One xdist group: one worker runs the file, so the module's statistics are made once.
pytestmark = pytest.mark.xdist_group("evaluation-stats")


@pytest.fixture(scope="module")
def stats(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write_sample(root / "raw", 80, seed=0)
    real_stats_stage(root / "raw", root / "unused.npz", PARAMS, root / "stats.npz")
    return root


def test_stats_hold_features_moments_and_backbone(stats):
    meta, arrays = load_stats(stats / "stats.npz")
    assert meta["n_real"] == 80 and meta["public"]["backbone"] == "standin"
    assert meta["public"]["kaggle_comparable"] is False
    features = arrays["public_features"]
    assert features.shape[0] == 80
    np.testing.assert_allclose(arrays["public_mu"], features.mean(0), rtol=1e-5)
    assert arrays["thumbnails"].shape == (80, 32, 32, 3)


def test_resubmitted_real_images_are_flagged_and_paired(stats, png_zip, caplog):
    real = np.concatenate(list(iter_photos(stats / "raw", 64, 64)))
    png_zip(stats / "copies.zip", real[:40])
    with caplog.at_level(logging.WARNING, logger="doggan"):
        metrics = evaluate_stage(
            stats / "copies.zip", stats / "stats.npz", PARAMS, stats / "m.json", stats / "plots"
        )
    assert metrics["distance"] < 1e-6
    assert metrics["distance_thresholded"] == metrics["distance"]
    assert metrics["mifid"] == pytest.approx(metrics["fid"] / (metrics["distance"] + 1e-14))
    assert any("memorization" in r.message for r in caplog.records)
    grid = np.asarray(Image.open(stats / "plots/memorization.png"))
    assert grid.shape[0] > grid.shape[1], "generated/real pairs, one pair per row"
    assert json.loads((stats / "m.json").read_text())["backbone"] == "standin"


def test_an_honest_submission_is_not_penalised(stats, png_zip, caplog):
    rng = np.random.default_rng(1)
    blobs = np.stack(
        [
            np.asarray(
                Image.fromarray(rng.integers(0, 255, (4, 4, 3), np.uint8)).resize((64, 64), Image.BICUBIC)
            )
            for _ in range(40)
        ]
    )
    png_zip(stats / "honest.zip", blobs)
    with caplog.at_level(logging.WARNING, logger="doggan"):
        metrics = evaluate_stage(
            stats / "honest.zip", stats / "stats.npz", PARAMS, stats / "h.json", stats / "plots"
        )
    assert metrics["distance"] > 0.12
    assert metrics["distance_thresholded"] == 1.0
    assert metrics["mifid"] == pytest.approx(metrics["fid"])
    assert not any("memorization" in r.message for r in caplog.records)
    assert score_images(blobs, stats / "stats.npz", PARAMS)["mifid"] == pytest.approx(
        metrics["mifid"], rel=1e-4
    )


def test_missing_statistics_say_which_stage_to_run(tmp_path):
    with pytest.raises(DogganError, match="real_stats"):
        evaluate_stage(tmp_path / "x.zip", tmp_path / "none.npz", PARAMS, tmp_path / "m.json", tmp_path)


def test_an_explicit_backbone_other_than_the_stored_one_is_refused(stats, png_zip):
    blobs = np.random.default_rng(2).integers(0, 256, (8, 64, 64, 3), np.uint8)
    png_zip(stats / "few.zip", blobs)
    other = EvalParams(backbone="keras_imagenet", batch_size=64)
    with pytest.raises(
        DogganError, match="made with the standin backbone.*eval.backbone is keras_imagenet.*real_stats"
    ):
        evaluate_stage(stats / "few.zip", stats / "stats.npz", other, stats / "x.json", stats / "plots")
    with pytest.raises(DogganError, match="standin.*keras_imagenet.*re-run real_stats"):
        score_images(blobs, stats / "stats.npz", other)
    assert not (stats / "x.json").exists()
    auto = evaluate_stage(
        stats / "few.zip", stats / "stats.npz", EvalParams(batch_size=64), stats / "a.json", stats / "plots"
    )
    assert auto["backbone"] == "standin"


def test_evaluate_and_training_scores_carry_the_measures_beside_mifid(stats, png_zip):
    real = np.concatenate(list(iter_photos(stats / "raw", 64, 64)))
    png_zip(stats / "resubmitted.zip", real[:60])
    copies = evaluate_stage(
        stats / "resubmitted.zip", stats / "stats.npz", PARAMS, stats / "r.json", stats / "plots"
    )
    blobs = np.random.default_rng(5).integers(0, 256, (60, 4, 4, 3), np.uint8).repeat(16, 1).repeat(16, 2)
    during_training = score_images(blobs, stats / "stats.npz", PARAMS)
    for record in (copies, during_training):
        assert {"kid", "kid_std", "precision", "recall", "density", "coverage"} <= record.keys()
    assert copies["precision"] == 1.0 and copies["kid"] < during_training["kid"]
    assert copies["density"] > during_training["density"]
    assert copies["knn_real"] == 80 and copies["knn_generated"] == 60
    written = json.loads((stats / "r.json").read_text())
    assert written["kid_subset_size"] == 60 and written["precision_recall_k"] == 3
