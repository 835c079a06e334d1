"""The submission stage on a tiny real Keras generator: the zip it writes, its preview and its refusals."""

import io
import os
import struct
import zipfile
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from conftest import save_generator
from PIL import Image

from doggan.errors import DogganError
from doggan.output.sampling import Generator, generate, load_generator, write_meta
from doggan.output.submission import N_IMAGES, validate
from doggan.output.submission_writer import check_written, encode_pngs, submission_stage, write_zip
from doggan.params import SubmissionParams


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
    # makes 32×32 images, metadata claims 64×64
    model = save_generator(tmp_path / "models", side=32, claimed_side=64)
    zip_path = tmp_path / "submission/images.zip"
    params = SubmissionParams(n_images=20, batch_size=20, workers=1)
    with pytest.raises(DogganError, match=r"draws \(32, 32, 3\), but generator\.json says .*\(64, 64, 3\)"):
        submission_stage(model, params, zip_path, tmp_path / "submission/preview.png")
    assert list(zip_path.parent.glob("*")) == []


def test_stage_needs_a_64x64_rgb_generator(tmp_path):
    model = save_generator(tmp_path / "models", side=32, claimed_side=64)
    write_meta(model, Generator(model=None, z_dim=8, image_shape=(32, 32, 3)))
    with pytest.raises(DogganError, match=r"generator\.json: the generator makes \(32, 32, 3\) images"):
        submission_stage(model, SubmissionParams(), tmp_path / "i.zip", tmp_path / "p.png")
    with pytest.raises(DogganError, match="no trained generator"):
        submission_stage(tmp_path / "none", SubmissionParams(), tmp_path / "i.zip", tmp_path / "p.png")
    assert not (tmp_path / "i.zip").exists()


def test_pngs_decode_to_the_same_pixels_sub_filtered_at_the_fast_level():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    batch[0], batch[1] = 0, 255
    pngs = encode_pngs(batch)
    for png, image in zip(pngs, batch, strict=True):
        decoded = Image.open(io.BytesIO(png))
        assert decoded.format == "PNG" and decoded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(decoded), image)
        idat = png[png.index(b"IDAT") + 4 :]
        assert idat[:2] == b"\x78\x01", "zlib header of level 1"
        data = idat[: -4 - 12]  # before its CRC and the 12-byte IEND chunk
        rows = np.frombuffer(zlib.decompress(data), np.uint8).reshape(64, 1 + 64 * 3)
        assert (rows[:, 0] == 1).all(), "every row Sub-filtered"


def written_zip(tmp_path, n=6):
    batch = np.random.default_rng(1).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    path = tmp_path / "images.zip"
    return path, batch, write_zip([batch[:4], batch[4:]], n, path, workers=2, chunk=3)


def member_offset(path, name):
    """Where the stored bytes of a member begin in the file."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def test_the_written_zip_is_checked_by_its_entries_crcs_headers_and_first_pixels(tmp_path):
    path, batch, written = written_zip(tmp_path)
    assert [info.filename for info in written] == [f"{i}.png" for i in range(6)]
    assert check_written(path, written, 6, batch[:2]) == [] and validate(path, n_images=6) == []

    assert check_written(path, written, 7, batch[:2]) == ["6 entries written, expected 0.png … 6.png"]
    assert check_written(path, written[:5], 6, batch[:2])[-1] == (
        "the central directory does not list the entries written"
    )
    other = batch[:2].copy()
    other[1, 0, 0, 0] ^= 1
    assert check_written(path, written, 6, other) == ["1.png: decodes to other pixels than were generated"]

    raw = bytearray(path.read_bytes())
    raw[member_offset(path, "3.png") + 100] ^= 0xFF  # one byte of the image data, on the disk
    path.write_bytes(bytes(raw))
    assert check_written(path, written, 6, batch[:2]) == [
        "not readable back as written (Bad CRC-32 for file '3.png')"
    ]


def test_a_header_other_than_the_encoders_is_reported(tmp_path):
    path, batch, _ = written_zip(tmp_path)
    with zipfile.ZipFile(path, "w") as zf:
        for i, image in enumerate(batch):
            buffer = io.BytesIO()
            Image.fromarray(image[:32] if i == 2 else image).save(buffer, format="PNG")
            zf.writestr(f"{i}.png", buffer.getvalue())
        written = zf.infolist()
    assert check_written(path, written, 6, batch[:0]) == ["2.png: not a 64×64 8-bit RGB PNG"]
