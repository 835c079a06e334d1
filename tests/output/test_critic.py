"""Best-of-k sampling by the trained discriminator: which candidate it keeps, how D is saved and checked,
and the submission stage drawing through it."""

import json
import os
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
from conftest import save_generator, tiny_params

from doggan import networks
from doggan.errors import DogganError, HandOverError
from doggan.output import critic as critic_lib
from doggan.output.sampling import Generator, load_generator, render, sample_noise
from doggan.output.submission_writer import submission_stage
from doggan.params import SubmissionParams

SIDE = 16
SHAPE = (SIDE, SIDE, 3)


def tiny_generator(model_dir):
    """A tiny real generator of SIDE-px images saved in the pipeline's format, loaded back."""
    return load_generator(save_generator(model_dir, side=SIDE))


def brightness_critic():
    """A real Keras model whose logit is an image's mean value: a critic whose choice is easy to check."""
    image = keras.Input(SHAPE)
    dense = keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")
    model = keras.Model(image, dense(keras.layers.GlobalAveragePooling2D()(image)) / 3)
    return model


def test_best_of_keeps_for_each_image_the_candidate_the_critic_scores_highest(tmp_path):
    gen = tiny_generator(tmp_path / "models")
    critic = brightness_critic()
    kept = np.concatenate(list(critic_lib.best_of(gen, critic, n=12, k=4, seed=3, batch_size=12)))
    rng = np.random.default_rng(3)  # the draws best_of makes: k noise batches per batch of images
    candidates = np.stack([next(render(gen, sample_noise(rng, 12, gen.z_dim))) for _ in range(4)])
    means = candidates.reshape(4, 12, -1).astype(float).mean(-1)
    np.testing.assert_array_equal(kept, candidates[means.argmax(0), np.arange(12)])
    assert (means.argmax(0) != 0).any()  # the first candidate is not always kept
    assert critic_lib.score(critic, kept, None).mean() > critic_lib.score(critic, candidates[0], None).mean()


@pytest.mark.parametrize(
    "overrides, n_classes",
    [({"conditional": True}, 3), ({"architecture": "fastgan", "spectral_norm": False}, 0)],
    ids=["dcgan-conditional", "fastgan-subclassed"],
)
def test_a_saved_discriminator_rebuilds_with_the_same_logits(tmp_path, overrides, n_classes):
    params = tiny_params(resolution=0, **overrides)
    d = networks.make_discriminator(params, SHAPE, n_classes)
    images = np.random.default_rng(0).integers(0, 256, (4, *SHAPE), dtype=np.uint8)
    labels = np.arange(4, dtype=np.int32) % 3 if n_classes else None
    before = critic_lib.score(d, images, labels)
    critic_lib.write_critic(d, params, SHAPE, n_classes, tmp_path)
    gen = Generator(
        model=None, z_dim=8, n_classes=n_classes, class_probs=(1 / 3,) * n_classes, image_shape=SHAPE
    )
    np.testing.assert_allclose(
        critic_lib.score(critic_lib.load_critic(tmp_path, gen), images, labels), before
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [critic_lib.CRITIC_META, critic_lib.CRITIC_FILE]


def test_a_missing_damaged_or_foreign_discriminator_is_named_with_the_command_that_remakes_it(tmp_path):
    params = tiny_params(resolution=0)
    critic_lib.write_critic(networks.make_discriminator(params, SHAPE), params, SHAPE, 0, tmp_path)
    gen = Generator(model=None, z_dim=8, image_shape=SHAPE)
    weights, meta = tmp_path / critic_lib.CRITIC_FILE, tmp_path / critic_lib.CRITIC_META
    other = Generator(model=None, z_dim=8, n_classes=2, class_probs=(0.5, 0.5), image_shape=SHAPE)
    with pytest.raises(
        HandOverError, match=r"discriminator\.json: judges .* of 0 classes.*dvc repro -f train"
    ):
        critic_lib.load_critic(tmp_path, other)
    whole = weights.read_bytes()
    weights.write_bytes(whole[:200])
    with pytest.raises(
        HandOverError, match=r"discriminator\.weights\.h5: truncated or corrupted: its SHA-256"
    ):
        critic_lib.load_critic(tmp_path, gen)
    wider = tiny_params(resolution=0, d_filters=16)
    critic_lib.write_critic(networks.make_discriminator(wider, SHAPE), wider, SHAPE, 0, tmp_path / "wide")
    weights.write_bytes((tmp_path / "wide" / critic_lib.CRITIC_FILE).read_bytes())
    record = json.loads(meta.read_text())
    meta.write_text(
        json.dumps(
            {
                **record,
                "sha256": json.loads((tmp_path / "wide" / critic_lib.CRITIC_META).read_text())["sha256"],
            }
        )
    )
    with pytest.raises(HandOverError, match=r"discriminator\.weights\.h5: not this discriminator's weights"):
        critic_lib.load_critic(tmp_path, gen)
    meta.write_text(json.dumps({"train": {"d_filters": "wide"}, "image_shape": [16, 16, 3], "n_classes": 0}))
    with pytest.raises(HandOverError, match=r"discriminator\.json: not discriminator metadata"):
        critic_lib.load_critic(tmp_path, gen)
    meta.unlink()
    with pytest.raises(FileNotFoundError, match="no trained discriminator"):
        critic_lib.load_critic(tmp_path, gen)


def test_the_submission_draws_the_best_of_k_and_says_what_to_do_without_a_discriminator(tmp_path):
    model_dir = tmp_path / "models"
    tiny_generator(model_dir)
    params = SubmissionParams(n_images=20, batch_size=10, best_of=3, resize=True)
    zip_path, preview = tmp_path / "submission" / "images.zip", tmp_path / "submission" / "preview.png"
    with pytest.raises(
        DogganError, match=r"discriminator\.weights\.h5: no trained discriminator.*best_of: 1"
    ):
        submission_stage(model_dir, params, zip_path, preview)
    assert not zip_path.exists()
    train = tiny_params(resolution=0)
    critic_lib.write_critic(networks.make_discriminator(train, SHAPE), train, SHAPE, 0, model_dir)
    submission_stage(model_dir, params, zip_path, preview)
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist(), key=lambda n: int(n[:-4])) == [f"{i}.png" for i in range(20)]
    assert preview.is_file()


def test_generate_best_of_draws_what_the_submission_draws_and_needs_the_discriminator(tmp_path, capsys):
    from PIL import Image

    from doggan.cli import main

    model_dir = tmp_path / "models"
    gen = tiny_generator(model_dir)
    args = ["generate", "--model", str(model_dir), "--n", "6", "--best-of", "3", "--seed", "2"]
    assert main([*args, "--out", str(tmp_path / "pngs")]) == 2
    assert "discriminator.weights.h5: no trained discriminator" in capsys.readouterr().err
    train = tiny_params(resolution=0)
    critic_lib.write_critic(networks.make_discriminator(train, SHAPE), train, SHAPE, 0, model_dir)
    assert main([*args, "--out", str(tmp_path / "pngs")]) == 0
    written = np.stack([np.asarray(Image.open(tmp_path / "pngs" / f"{i}.png")) for i in range(6)])
    critic = critic_lib.load_critic(model_dir, gen)
    np.testing.assert_array_equal(written, next(critic_lib.best_of(gen, critic, 6, 3, seed=2)))
    assert main([*args[:-4], "--best-of", "0", "--grid", str(tmp_path / "g.png")]) == 2
    assert "--best-of must be at least 1" in capsys.readouterr().err
