"""The memorization check flags copies of training photos, and only those: real_stats and evaluate on
real archives of the embedded sample, with the stand-in backbone (and a tiny graph for Kaggle's)."""

import io
import json
import logging
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageFilter

from doggan.data.photos import iter_photos
from doggan.data.sample import write_sample
from doggan.errors import DogganError
from doggan.params import EvalParams
from doggan.scoring import memorization, mifid
from doggan.scoring.evaluation import evaluate_stage, load_stats, real_stats_stage

PARAMS = EvalParams(backbone="standin", batch_size=64)
PAD = 2  # the grid's border (doggan.output.grids.make_grid), before its 2x scale
# One xdist group: one worker runs the file, so the module's statistics are made once.
pytestmark = pytest.mark.xdist_group("memorization-project")


def write_zip(path, images):
    with zipfile.ZipFile(path, "w") as zf:
        for i, image in enumerate(images):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            zf.writestr(f"{i}.png", buffer.getvalue())
    return path


def jpeg(image, quality=75):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Statistics of 80 sample photos; 40 more photos of the same kind (another seed) held out."""
    root = tmp_path_factory.mktemp("memorization")
    write_sample(root / "raw", 80, seed=0)
    write_sample(root / "other", 40, seed=1)
    real_stats_stage(root / "raw", root / "unused.npz", PARAMS, root / "stats.npz")
    return root


def photos(raw):
    return np.concatenate(list(iter_photos(raw, 64, 64)))


def evaluate(project, name, images, caplog):
    zip_path = write_zip(project / f"{name}.zip", images)
    with caplog.at_level(logging.WARNING, logger="doggan"):
        evaluate_stage(zip_path, project / "stats.npz", PARAMS, project / f"{name}.json", project / name)
    return json.loads((project / f"{name}.json").read_text())


def grid_pairs(path, n_pairs):
    """(generated, real) tiles of the memorization grid, inside their 1-pixel frames."""
    grid = np.asarray(Image.open(path))[::2, ::2]
    pairs = []
    for row in range(n_pairs):
        y = PAD + row * (64 + PAD)
        tiles = [grid[y : y + 64, x : x + 64] for x in (PAD, PAD + 64 + PAD)]
        pairs.append([tile[1:-1, 1:-1] for tile in tiles])
    return pairs


def test_copies_flipped_reencoded_or_noised_are_flagged_and_paired_with_their_originals(project, caplog):
    real = photos(project / "raw")
    rng = np.random.default_rng(0)
    copies = np.concatenate(
        [
            real[0:10, :, ::-1],
            np.stack([jpeg(image) for image in real[10:20]]),
            np.clip(real[20:30] + rng.normal(0, 6, real[20:30].shape), 0, 255).astype(np.uint8),
            np.stack([jpeg(image, 60) for image in real[30:40, :, ::-1]]),
        ]
    )
    report = evaluate(project, "copies", copies, caplog)
    assert report["eps_source"] == "calibrated" and report["memorization_space"] == "thumbnails"
    assert report["distance"] < 0.2 * report["eps"]
    assert report["memorized_fraction"] == 1.0
    assert report["distance_thresholded"] == report["distance"]
    assert report["mifid"] == pytest.approx(report["fid"] / report["distance"])
    assert any("memorization" in r.message for r in caplog.records)
    thumbs = load_stats(project / "stats.npz")[1]["thumbnails"]
    shown = [np.asarray(Image.fromarray(t).resize((64, 64), Image.NEAREST))[1:-1, 1:-1] for t in thumbs]
    for generated, nearest in grid_pairs(project / "copies" / "memorization.png", 8):
        copy = next(i for i, image in enumerate(copies) if np.array_equal(image[1:-1, 1:-1], generated))
        original = next(i for i, tile in enumerate(shown) if np.array_equal(tile, nearest))
        assert original == copy, "each copy is shown next to the photo it copies"


def test_held_out_real_photos_are_not_flagged(project, caplog):
    report = evaluate(project, "held_out", photos(project / "other"), caplog)
    meta, arrays = load_stats(project / "stats.npz")
    threshold = meta["public"]["memorization"]
    assert report["eps"] == threshold["eps"] > 0
    assert report["heldout_quantile"] == memorization.HELDOUT_QUANTILE
    assert threshold["heldout_distance"] == pytest.approx(
        np.quantile(arrays["public_heldout"], memorization.HELDOUT_QUANTILE), rel=1e-6
    )
    assert report["eps"] == pytest.approx(memorization.SAFETY_FACTOR * threshold["heldout_distance"])
    assert report["distance"] > 2 * report["eps"]
    assert report["memorized_fraction"] <= 0.05
    assert report["distance_thresholded"] == 1.0 and report["mifid"] == pytest.approx(report["fid"])
    assert not any("memorization" in r.message for r in caplog.records)


def untrained_generator_images(n):
    import keras

    from doggan.networks.dcgan import make_generator

    keras.utils.set_random_seed(0)
    model = make_generator(16, (64, 64, 3), 16)
    z = np.random.default_rng(0).standard_normal((n, 16)).astype(np.float32)
    return np.clip(np.rint((np.asarray(model(z, training=False)) + 1) * 127.5), 0, 255).astype(np.uint8)


def test_blurred_noisy_blobs_and_an_untrained_generator_are_not_flagged(project, caplog):
    rng = np.random.default_rng(3)
    blobs = [
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), np.uint8)).resize((64, 64), Image.BICUBIC)
        for _ in range(20)
    ]
    blurred = np.stack([np.asarray(b.filter(ImageFilter.GaussianBlur(3))) for b in blobs])
    noisy = np.clip(blurred + rng.normal(0, 12, blurred.shape), 0, 255).astype(np.uint8)
    honest = np.concatenate([blurred[:10], noisy[10:], untrained_generator_images(20)])
    report = evaluate(project, "honest", honest, caplog)
    assert report["eps_source"] == "calibrated"
    assert report["memorized_fraction"] == 0.0
    assert report["distance"] > 2 * report["eps"]
    assert report["distance_thresholded"] == 1.0 and report["mifid"] == pytest.approx(report["fid"])
    assert not any("memorization" in r.message for r in caplog.records)


def test_statistics_without_a_threshold_are_refused(project, tmp_path):
    meta, arrays = load_stats(project / "stats.npz")
    del meta["public"]["memorization"]
    np.savez(tmp_path / "old.npz", meta=np.array(json.dumps(meta)), **arrays)
    write_zip(tmp_path / "few.zip", photos(project / "other")[:4])
    with pytest.raises(DogganError, match="old.npz: no memorization threshold.*re-run real_stats"):
        evaluate_stage(tmp_path / "few.zip", tmp_path / "old.npz", PARAMS, tmp_path / "m.json", tmp_path)


def test_kaggle_backbones_keep_kaggle_eps_and_distance(project, tmp_path):
    from test_backbones import tiny_inception_graph

    graph = tmp_path / "classify_image_graph_def.pb"
    graph.write_bytes(tiny_inception_graph())
    params = EvalParams(backbone="tf2015", inception_graph=str(graph), protocol="both", batch_size=64)
    real_stats_stage(project / "raw", tmp_path / "unused.npz", params, tmp_path / "stats.npz")
    submitted = photos(project / "other")
    write_zip(tmp_path / "sub.zip", submitted)
    report = evaluate_stage(
        tmp_path / "sub.zip", tmp_path / "stats.npz", params, tmp_path / "m.json", tmp_path
    )
    assert (report["eps"], report["eps_source"]) == (0.1, "kaggle_public")
    assert (report["private_eps"], report["private_eps_source"]) == (0.25, "kaggle_private")
    assert report["memorization_space"] == "backbone"
    from doggan.scoring import backbones

    _, arrays = load_stats(tmp_path / "stats.npz")
    fake = backbones.features(backbones.tf2015(str(graph)), [submitted])
    assert report["distance"] == pytest.approx(mifid.memorization_distance(fake, arrays["public_features"]))


def test_other_backbones_are_calibrated_on_their_own_features():
    rng = np.random.default_rng(0)
    features = rng.uniform(0, 1, (50, 8))
    thumbs = rng.integers(0, 256, (50, 32, 32, 3), np.uint8)
    record = memorization.calibrate("keras_imagenet", "public", features, thumbs)["record"]
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -1)
    expected = np.quantile(1 - similarity.max(axis=1), memorization.HELDOUT_QUANTILE)
    assert record["memorization_space"] == "backbone" and record["eps_source"] == "calibrated"
    assert record["heldout_distance"] == pytest.approx(expected)
    assert record["eps"] == pytest.approx(memorization.SAFETY_FACTOR * expected)
    nasnet = memorization.calibrate("nasnet", "private", features, thumbs)["record"]
    assert (nasnet["eps"], nasnet["eps_source"]) == (mifid.KAGGLE_EPS_PRIVATE, "kaggle_private")
    with pytest.raises(DogganError, match="at least 2 real images"):
        memorization.calibrate("standin", "public", features[:1], thumbs[:1])
