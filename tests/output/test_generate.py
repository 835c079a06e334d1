"""`doggan generate` on tiny saved generators: PNGs in a folder or a zip, grid, breed, truncation,
seed, and the latent-walk GIF, through the real command line."""

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from doggan.cli import main
from doggan.networks import ConditionalBatchNorm, dcgan
from doggan.output import generate, sampling

Z, SHAPE, BREEDS = 8, (16, 16, 3), ("Chihuahua", "beagle", "golden_retriever")


def save(model_dir, model, **meta):
    model_dir.mkdir(parents=True)
    model.save(model_dir / sampling.GENERATOR_FILE)
    sampling.write_meta(model_dir, sampling.Generator(model=None, z_dim=Z, image_shape=SHAPE, **meta))
    return model_dir


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return save(tmp_path_factory.mktemp("gen") / "models", dcgan.make_generator(Z, SHAPE, filters=16))


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    """A conditional generator whose classes really differ (class embeddings drawn at random)."""
    model = dcgan.make_generator(Z, SHAPE, filters=16, n_classes=3)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, ConditionalBatchNorm):
            layer.beta.assign(rng.normal(0, 1, layer.beta.shape))
    probs = (0.2, 0.3, 0.5)
    return save(
        tmp_path_factory.mktemp("cgen") / "models", model, n_classes=3, class_probs=probs, breeds=BREEDS
    )


def pngs(folder):
    return [np.asarray(Image.open(folder / f"{i}.png")) for i in range(len(list(folder.glob("*.png"))))]


def run(*args):
    return main(["generate", *map(str, args)])


def test_out_folder_holds_n_pngs_and_a_seed_repeats_them(plain, tmp_path):
    assert run("--model", plain, "--n", 5, "--out", tmp_path / "a", "--seed", 3) == 0
    first = pngs(tmp_path / "a")
    assert len(first) == 5 and first[0].shape == SHAPE and first[0].dtype == np.uint8
    (tmp_path / "a" / "stale.txt").write_text("from an older run")
    assert run("--model", plain, "--n", 5, "--out", tmp_path / "a", "--seed", 3) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [f"{i}.png" for i in range(5)]
    np.testing.assert_array_equal(np.stack(pngs(tmp_path / "a")), np.stack(first))
    assert run("--model", plain, "--n", 5, "--out", tmp_path / "b", "--seed", 4) == 0
    assert not np.array_equal(np.stack(pngs(tmp_path / "b")), np.stack(first))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_out_zip_holds_the_same_images_as_the_folder(plain, tmp_path):
    run("--model", plain, "--n", 7, "--out", tmp_path / "dir")
    assert run("--model", plain, "--n", 7, "--out", tmp_path / "images.zip") == 0
    with zipfile.ZipFile(tmp_path / "images.zip") as zf:
        assert zf.namelist() == [f"{i}.png" for i in range(7)]
        zipped = [np.asarray(Image.open(zf.open(f"{i}.png"))) for i in range(7)]
    np.testing.assert_array_equal(np.stack(zipped), np.stack(pngs(tmp_path / "dir")))


def test_grid_tiles_the_first_images_drawn(plain, tmp_path):
    assert run("--model", plain, "--n", 5, "--out", tmp_path / "dir", "--grid", tmp_path / "grid.png") == 0
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == ((2 * 18 + 2) * 2, (3 * 18 + 2) * 2, 3)  # 3 x 2 tiles of 16 px, 2 px apart, x2
    np.testing.assert_array_equal(grid[4:36:2, 4:36:2], pngs(tmp_path / "dir")[0])
    assert run("--model", plain, "--n", 5, "--grid", tmp_path / "alone.png") == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "alone.png")), grid)


def test_model_defaults_to_the_workspace_models_folder(plain, tmp_path, monkeypatch):
    monkeypatch.chdir(plain.parent)
    assert run("--n", 2, "--out", tmp_path / "out") == 0
    assert len(pngs(tmp_path / "out")) == 2


def test_breed_draws_only_that_class(conditional, tmp_path):
    z = sampling.sample_noise(np.random.default_rng(0), 6, Z)
    gen = sampling.load_generator(conditional)
    for k, breed in enumerate(("chihuahua", "BEAGLE")):
        assert run("--model", conditional, "--n", 6, "--out", tmp_path / breed, "--breed", breed) == 0
        expected = next(sampling.render(gen, z, np.full(6, k, np.int32)))
        np.testing.assert_array_equal(np.stack(pngs(tmp_path / breed)), expected)


def test_unknown_breed_is_an_error_listing_the_valid_ones(conditional, tmp_path, capsys):
    assert run("--model", conditional, "--out", tmp_path / "x", "--breed", "poodle") == 2
    err = capsys.readouterr().err
    assert "unknown breed 'poodle'" in err and "Chihuahua, beagle, golden_retriever" in err
    assert not (tmp_path / "x").exists()


def test_breed_needs_a_conditional_model_with_recorded_names(plain, conditional, tmp_path, capsys):
    assert run("--model", plain, "--grid", tmp_path / "g.png", "--breed", "beagle") == 2
    assert "unconditional" in capsys.readouterr().err
    old = tmp_path / "old"
    old.mkdir()
    (old / sampling.GENERATOR_FILE).write_bytes((conditional / sampling.GENERATOR_FILE).read_bytes())
    meta = json.loads((conditional / sampling.META_FILE).read_text())
    del meta["breeds"]  # generator.json as written before breed names were recorded
    (old / sampling.META_FILE).write_text(json.dumps(meta))
    assert sampling.load_generator(old).breeds == ()
    assert run("--model", old, "--grid", tmp_path / "g.png") == 0
    assert run("--model", old, "--grid", tmp_path / "g.png", "--breed", "beagle") == 2
    assert "records no breed names" in capsys.readouterr().err


def test_truncation_bounds_the_noise_the_images_come_from(plain, tmp_path):
    assert run("--model", plain, "--n", 4, "--out", tmp_path / "t", "--truncation", 0.3) == 0
    z = sampling.sample_noise(np.random.default_rng(0), 4, Z, truncation=0.3)
    expected = next(sampling.render(sampling.load_generator(plain), z))
    np.testing.assert_array_equal(np.stack(pngs(tmp_path / "t")), expected)
    run("--model", plain, "--n", 4, "--out", tmp_path / "u")
    assert not np.array_equal(np.stack(pngs(tmp_path / "u")), expected)


def test_walk_is_a_looping_gif_of_points_times_steps_frames(conditional, tmp_path):
    path = tmp_path / "walk.gif"
    args = (
        "--model",
        conditional,
        "--walk",
        path,
        "--walk-points",
        3,
        "--walk-steps",
        4,
        "--breed",
        "beagle",
    )
    assert run(*args) == 0
    gif = Image.open(path)
    assert gif.n_frames == 12 and gif.info["loop"] == 0
    assert gif.size == ((3 * 18 + 2) * 2,) * 2  # 3 x 3 walks of 16 px, x2
    frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("RGB")))
    assert all(not np.array_equal(a, b) for a, b in zip(frames, frames[1:], strict=False))


def test_walk_noise_is_spherical_for_normal_and_straight_for_uniform():
    rng = np.random.default_rng(0)
    normal = generate.walk_noise(rng, sampling.Generator(model=None, z_dim=64), 2, 4, 0.0)
    assert normal.shape == (8, generate.WALK_PATHS, 64)
    norms = np.linalg.norm(normal, axis=-1)
    assert (norms[2] > 0.9 * np.minimum(norms[0], norms[4])).all()  # no dip at the midpoint, unlike a line
    uniform = generate.walk_noise(rng, sampling.Generator(model=None, z_dim=64, noise="uniform"), 2, 4, 0.0)
    np.testing.assert_allclose(uniform[2], (uniform[0] + uniform[4]) / 2, atol=1e-6)
    assert np.abs(uniform).max() <= 1.0


def test_missing_model_or_nothing_to_write_are_clear_errors(plain, tmp_path, capsys):
    assert run("--model", tmp_path / "none", "--grid", tmp_path / "g.png") == 2
    assert "generator.keras" in capsys.readouterr().err
    assert run("--model", plain) == 2
    assert "give --out, --grid or --walk" in capsys.readouterr().err
