"""The submission stage on a tiny real Keras generator: the zip it writes, its preview and its refusals."""

import io
import os
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

from doggan.errors import DogganError
from doggan.output.sampling import Generator, generate, load_generator, write_meta
from doggan.output.submission import N_IMAGES, validate
from doggan.output.submission_writer import submission_stage
from doggan.params import SubmissionParams


def save_generator(model_dir: Path, side: int = 64, z_dim: int = 8) -> Path:
    """A tiny real generator (Dense → Reshape → tanh) saved in the pipeline's format."""
    import keras

    keras.utils.set_random_seed(0)
    z = keras.Input((z_dim,))
    x = keras.layers.Dense(side * side * 3)(z)
    x = keras.layers.Reshape((side, side, 3))(x)
    out = keras.layers.Activation("tanh")(x)
    model_dir.mkdir(parents=True, exist_ok=True)
    keras.Model(z, out).save(model_dir / "generator.keras")
    write_meta(model_dir, Generator(model=None, z_dim=z_dim))
    return model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_generator(tmp_path_factory.mktemp("model") / "models")


def decode(zf, name):
    return np.asarray(Image.open(io.BytesIO(zf.read(name))))


def test_stage_writes_a_valid_submission_in_generation_order(model_dir, tmp_path):
    params = SubmissionParams(seed=3, batch_size=1000, workers=2)
    zip_path, preview = tmp_path / "submission/images.zip", tmp_path / "submission/preview.png"
    summary = submission_stage(model_dir, params, zip_path, preview)
    assert (
        summary["images"] == N_IMAGES
        and summary["bytes"] == zip_path.stat().st_size
        and summary["seconds"] > 0
    )
    assert validate(zip_path) == []
    expected = next(generate(load_generator(model_dir), 1000, seed=3, batch_size=1000))
    with zipfile.ZipFile(zip_path) as zf:
        assert [info.compress_type for info in zf.infolist()[:3]] == [zipfile.ZIP_STORED] * 3
        for i in (0, 1, 99, 100, 999):
            np.testing.assert_array_equal(decode(zf, f"{i}.png"), expected[i])
    grid = np.asarray(Image.open(preview))
    assert grid.shape == (2 * (8 * 66 + 2), 2 * (8 * 66 + 2), 3)
    np.testing.assert_array_equal(grid[4:132:2, 4:132:2], expected[0])
    assert sorted(p.name for p in zip_path.parent.iterdir()) == ["images.zip", "preview.png"]


def test_stage_is_deterministic_and_checks_a_test_zip_by_its_own_count(model_dir, tmp_path, caplog):
    params = SubmissionParams(n_images=130, seed=1, batch_size=50, workers=1)
    first = submission_stage(model_dir, params, tmp_path / "a.zip", tmp_path / "a.png")
    submission_stage(model_dir, params, tmp_path / "b.zip", tmp_path / "b.png")
    assert first["images"] == 130
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    assert validate(tmp_path / "a.zip", n_images=130) == []
    assert "not a Kaggle submission" in caplog.text
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        assert zf.namelist() == [f"{i}.png" for i in range(130)]


def test_stage_refuses_an_invalid_result_and_leaves_no_zip(tmp_path):
    model = save_generator(tmp_path / "models", side=32)  # makes 32×32 images, metadata claims 64×64
    zip_path = tmp_path / "submission/images.zip"
    params = SubmissionParams(n_images=20, batch_size=20, workers=1)
    with pytest.raises(DogganError, match=r"draws \(32, 32, 3\), but generator\.json says .*\(64, 64, 3\)"):
        submission_stage(model, params, zip_path, tmp_path / "submission/preview.png")
    assert list(zip_path.parent.glob("*")) == []


def test_stage_needs_a_64x64_rgb_generator(tmp_path):
    model = save_generator(tmp_path / "models", side=32)
    write_meta(model, Generator(model=None, z_dim=8, image_shape=(32, 32, 3)))
    with pytest.raises(DogganError, match=r"generator\.json: the generator makes \(32, 32, 3\) images"):
        submission_stage(model, SubmissionParams(), tmp_path / "i.zip", tmp_path / "p.png")
    with pytest.raises(DogganError, match="no trained generator"):
        submission_stage(tmp_path / "none", SubmissionParams(), tmp_path / "i.zip", tmp_path / "p.png")
    assert not (tmp_path / "i.zip").exists()
