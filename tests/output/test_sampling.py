"""A saved generator loads back with its metadata and draws deterministic uint8 batches."""

import numpy as np
import pytest

from doggan.networks import dcgan
from doggan.output import sampling
from doggan.output.grids import to_uint8


def test_saved_generator_round_trips_and_draws_in_batches(tmp_path):
    model = dcgan.make_generator(8, (28, 28, 1), filters=16)
    model.save(tmp_path / sampling.GENERATOR_FILE)
    sampling.write_meta(tmp_path, sampling.Generator(model=None, z_dim=8, image_shape=(28, 28, 1)))
    gen = sampling.load_generator(tmp_path)
    batches = list(sampling.generate(gen, 25, seed=1, batch_size=10))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert batches[0].dtype == np.uint8 and batches[0].shape[1:] == (28, 28, 1)
    again = next(sampling.generate(gen, 10, seed=1, batch_size=10))
    np.testing.assert_array_equal(batches[0], again)


def test_missing_generator_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="generator.keras"):
        sampling.load_generator(tmp_path)


def test_truncation_bounds_the_noise_and_labels_follow_proportions():
    rng = np.random.default_rng(0)
    z = sampling.sample_noise(rng, 1000, 4, truncation=0.5)
    assert np.abs(z).max() <= 0.5
    labels = sampling.sample_labels(rng, 20_000, (0.75, 0.25))
    assert abs(np.mean(labels == 0) - 0.75) < 0.02


def test_sampler_is_traced_once_for_every_batch_size_and_maps_to_uint8_as_grids_do(tmp_path):
    model = dcgan.make_generator(8, (16, 16, 3), filters=8)
    gen = sampling.Generator(model=model, z_dim=8, image_shape=(16, 16, 3))
    forward = sampling.sampler(gen)
    z = sampling.sample_noise(np.random.default_rng(0), 10, 8)
    whole, part = forward(z).numpy(), forward(z[:3]).numpy()
    assert forward.experimental_get_tracing_count() == 1
    assert whole.dtype == np.uint8 and whole.shape == (10, 16, 16, 3)
    np.testing.assert_array_equal(whole, to_uint8(model(z, training=False).numpy()))
    np.testing.assert_array_equal(part, whole[:3])
