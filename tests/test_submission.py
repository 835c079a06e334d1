"""The submission stage, its validator and the upload, on real zips, real PNGs and a real Keras model."""

import io
import json
import os
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import requests
from PIL import Image

from doggan import submission
from doggan.errors import DogganError
from doggan.params import SubmissionParams
from doggan.sampling import Generator, generate, load_generator, write_meta

N = submission.N_IMAGES


def png(size=(64, 64), mode="RGB", seed=0) -> bytes:
    """A small real PNG: a smooth gradient with a little noise, so it compresses but is not flat."""
    w, h = size
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(h), np.arange(w)) * 2 + rng.integers(0, 4, (h, w))
    rgb = np.stack([ramp, ramp[::-1], np.full((h, w), 90)], -1).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


GOOD = png()


def images(n=N):
    return [(f"{i}.png", GOOD) for i in range(n)]


def write(path, entries):
    """A real zip of (name, bytes) entries; a name ending in '/' is a folder entry."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names, on purpose
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def good_zip(tmp_path_factory):
    return write(tmp_path_factory.mktemp("good") / "images.zip", images())


def test_good_zip_passes(good_zip):
    assert submission.validate(good_zip) == []


def test_zip_with_9999_images_fails(tmp_path):
    problems = submission.validate(write(tmp_path / "a.zip", images(N - 1)))
    assert problems == ["9,999 images at the zip root, expected exactly 10,000; missing 9999.png"]


def test_zip_with_one_65x64_image_fails(tmp_path):
    entries = images()
    entries[123] = ("123.png", png((65, 64)))
    assert submission.validate(write(tmp_path / "a.zip", entries)) == [
        "123.png: 65×64 pixels, expected 64×64"
    ]


def test_repeated_problems_are_capped_with_a_count(tmp_path):
    wrong = png((65, 64))
    problems = submission.validate(write(tmp_path / "a.zip", [(f"{i}.png", wrong) for i in range(N)]))
    assert problems[:2] == ["0.png: 65×64 pixels, expected 64×64", "1.png: 65×64 pixels, expected 64×64"]
    assert len(problems) == submission.LINES_PER_KIND + 1
    assert problems[-1] == f"and {N - submission.LINES_PER_KIND:,} more images of size 65×64"


@pytest.mark.parametrize(("mode", "shown"), [("L", "L"), ("LA", "LA"), ("RGBA", "RGBA"), ("P", "P")])
def test_images_that_are_not_rgb_fail(tmp_path, mode, shown):
    entries = images()
    entries[7] = ("7.png", png(mode=mode))
    problems = submission.validate(write(tmp_path / "a.zip", entries))
    assert problems == [f"7.png: mode {shown}, expected 8-bit RGB"]


def png_48bit(w=64, h=64) -> bytes:
    """A 16-bit-per-channel RGB PNG, written by hand (PIL cannot write one; it reads it as plain 'RGB')."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + (bytes(range(256)) * 2)[: w * 6] for _ in range(h))
    return (
        submission.PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_sixteen_bit_pngs_fail(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64), 40000, np.uint16)).save(buffer, format="PNG")
    entries = images()
    entries[3] = ("3.png", buffer.getvalue())
    entries[4] = ("4.png", png_48bit())
    problems = submission.validate(write(tmp_path / "a.zip", entries))
    assert problems == [
        "3.png: mode I;16, 16-bit, expected 8-bit RGB",
        "4.png: mode RGB, 16-bit, expected 8-bit RGB",
    ]


def test_jpeg_named_png_fails(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, format="JPEG")
    entries = images()
    entries[5] = ("5.png", buffer.getvalue())
    entries[6] = ("6.png", b"hello, not an image at all")
    problems = submission.validate(write(tmp_path / "a.zip", entries))
    assert problems == ["5.png: not a PNG (a JPEG file)", "6.png: not a PNG (not an image)"]


def test_truncated_png_fails(tmp_path):
    entries = images()
    entries[42] = ("42.png", GOOD[: len(GOOD) // 2])
    problems = submission.validate(write(tmp_path / "a.zip", entries))
    assert len(problems) == 1 and problems[0].startswith("42.png: PNG does not decode")


def test_extra_files_fail(tmp_path):
    entries = [*images(), ("readme.txt", b"dogs"), ("10.jpg", GOOD)]
    problems = submission.validate(write(tmp_path / "a.zip", entries))
    assert problems == [
        "readme.txt: unexpected file; only the images may be in the zip",
        "10.jpg: unexpected file; only the images may be in the zip",
    ]


def test_folders_fail(tmp_path):
    entries = [("images/", b""), *[(f"images/{name}", data) for name, data in images()]]
    problems = submission.validate(write(tmp_path / "a.zip", entries))
    assert problems[0] == "images/: a folder; the images must sit at the zip root"
    assert problems[1] == "images/0.png: inside a folder; the images must sit at the zip root"
    assert f"and {N - submission.LINES_PER_KIND:,} more entries inside folders" in problems
    assert problems[-1] == "0 images at the zip root, expected exactly 10,000; missing 0.png … 9999.png"


def test_bad_names_fail(tmp_path):
    entries = images()
    entries[0] = ("00.png", GOOD)
    entries[1] = ("10000.png", GOOD)
    entries[2] = ("2.PNG", GOOD)
    problems = submission.validate(write(tmp_path / "a.zip", entries))
    assert problems == [
        "00.png: unexpected name; expected 0.png … 9999.png",
        "10000.png: unexpected name; expected 0.png … 9999.png",
        "2.PNG: unexpected name; expected 0.png … 9999.png",
        "missing 0.png … 2.png",
    ]


def test_duplicate_and_unsafe_entries_fail(tmp_path):
    entries = [*images(), ("17.png", GOOD), ("../0.png", GOOD)]
    problems = submission.validate(write(tmp_path / "a.zip", entries))
    assert problems == ["17.png: appears more than once in the zip", "../0.png: path with '..'"]


def test_corrupt_zip_entry_fails(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in images():
            zf.writestr(name, data)
        offset = zf.getinfo("9.png").header_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 30 + len("9.png") + 100] ^= 0xFF  # a byte of 9.png's stored data: its CRC no longer matches
    path.write_bytes(bytes(raw))
    problems = submission.validate(path)
    assert len(problems) == 1 and problems[0].startswith("9.png: cannot be read from the zip (Bad CRC-32")


def test_missing_empty_and_non_zip_files_fail(tmp_path):
    assert submission.validate(tmp_path / "nothing.zip") == ["file not found"]
    (tmp_path / "empty.zip").write_bytes(b"")
    assert submission.validate(tmp_path / "empty.zip")[0].startswith("not a zip archive")
    (tmp_path / "text.zip").write_text("0.png\n")
    assert submission.validate(tmp_path / "text.zip") == ["not a zip archive (File is not a zip file)"]


def test_file_over_the_upload_limit_fails(tmp_path):
    path = tmp_path / "big.zip"
    with open(path, "wb") as f:
        f.truncate(submission.MAX_UPLOAD_BYTES)  # a sparse prefix: zips may carry data before them
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("0.png", GOOD)
    size = path.stat().st_size
    assert submission.validate(path, n_images=1) == [
        f"{size:,} bytes, over Kaggle's upload limit of 524,288,000 bytes (500 MiB)"
    ]


def test_encrypted_entries_fail(tmp_path):
    path = write(tmp_path / "a.zip", images(1))
    raw = bytearray(path.read_bytes())
    # Set the 'encrypted' flag bit, as a password-protected zip has, in the local and central headers.
    raw[6] |= 0x1
    raw[raw.index(b"PK\x01\x02") + 8] |= 0x1
    path.write_bytes(bytes(raw))
    assert submission.validate(path, n_images=1) == ["0.png: encrypted; Kaggle cannot read it"]


def test_smaller_test_zips_validate_against_their_own_count(tmp_path):
    path = write(tmp_path / "a.zip", images(200))
    assert submission.validate(path, n_images=200) == []
    assert submission.validate(path) == [
        "200 images at the zip root, expected exactly 10,000; missing 200.png … 9999.png"
    ]


# --- the stage, on a tiny real Keras generator -------------------------------------------------------


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
    summary = submission.submission_stage(model_dir, params, zip_path, preview)
    assert summary["images"] == N and summary["bytes"] == zip_path.stat().st_size and summary["seconds"] > 0
    assert submission.validate(zip_path) == []
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
    first = submission.submission_stage(model_dir, params, tmp_path / "a.zip", tmp_path / "a.png")
    submission.submission_stage(model_dir, params, tmp_path / "b.zip", tmp_path / "b.png")
    assert first["images"] == 130
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    assert submission.validate(tmp_path / "a.zip", n_images=130) == []
    assert "not a Kaggle submission" in caplog.text
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        assert zf.namelist() == [f"{i}.png" for i in range(130)]


def test_stage_refuses_an_invalid_result_and_leaves_no_zip(tmp_path):
    model = save_generator(tmp_path / "models", side=32)  # makes 32×32 images, metadata claims 64×64
    zip_path = tmp_path / "submission/images.zip"
    params = SubmissionParams(n_images=20, batch_size=20, workers=1)
    with pytest.raises(DogganError, match=r"invalid submission\n  0\.png: 32×32 pixels, expected 64×64"):
        submission.submission_stage(model, params, zip_path, tmp_path / "submission/preview.png")
    assert list(zip_path.parent.iterdir()) == []


def test_stage_needs_a_64x64_rgb_generator(tmp_path):
    model = save_generator(tmp_path / "models", side=32)
    write_meta(model, Generator(model=None, z_dim=8, image_shape=(32, 32, 3)))
    with pytest.raises(DogganError, match=r"generator\.json: the generator makes \(32, 32, 3\) images"):
        submission.submission_stage(model, SubmissionParams(), tmp_path / "i.zip", tmp_path / "p.png")
    with pytest.raises(DogganError, match="no trained generator"):
        submission.submission_stage(
            tmp_path / "none", SubmissionParams(), tmp_path / "i.zip", tmp_path / "p.png"
        )
    assert not (tmp_path / "i.zip").exists()


# --- upload, with a fake Kaggle client at the network boundary ------------------------------------------


class Reply:
    def __init__(self, message):
        self.message = message


class FakeKaggle:
    """Stands in for kaggle's KaggleApi: same method name and arguments, records what it was sent."""

    def __init__(self, reply="Successfully submitted to Generative Dog Images", error=None):
        self.calls, self.reply, self.error = [], reply, error

    def competition_submit(self, file_name, message, competition, quiet=False, sandbox=False):
        if self.error:
            raise self.error
        self.calls.append((file_name, message, competition, Path(file_name).stat().st_size))
        return Reply(self.reply)


def test_submit_uploads_a_valid_zip(good_zip, capsys):
    api = FakeKaggle()
    sent = submission.submit(good_zip, "generative-dog-images", message="dcgan v1", api=api)
    assert sent == "dcgan v1"
    assert api.calls == [(str(good_zip), "dcgan v1", "generative-dog-images", good_zip.stat().st_size)]
    assert "Successfully submitted" in capsys.readouterr().out


def test_submit_refuses_an_invalid_zip_before_any_call(tmp_path):
    api = FakeKaggle()
    bad = write(tmp_path / "bad.zip", images(N - 1))
    with pytest.raises(DogganError, match="not uploading an invalid submission\n  9,999 images"):
        submission.submit(bad, "generative-dog-images", message="m", api=api)
    assert api.calls == []


def test_dry_run_validates_and_sends_nothing(good_zip, capsys):
    api = FakeKaggle()
    assert submission.submit(good_zip, "my-comp", message="try", dry_run=True, api=api) == "try"
    assert api.calls == []
    out = capsys.readouterr().out
    assert out.startswith(f"dry run: would upload {good_zip}") and "to my-comp with message: try" in out


def test_upload_errors_are_explained(good_zip):
    response = requests.Response()
    response.status_code = 403
    api = FakeKaggle(error=requests.HTTPError("403 Client Error: Forbidden", response=response))
    with pytest.raises(DogganError, match="Accept the competition's rules"):
        submission.submit(good_zip, "generative-dog-images", message="m", api=api)
    api = FakeKaggle(reply=submission.UPLOAD_FAILED)
    with pytest.raises(DogganError, match="failed: Kaggle answered 'Could not submit to competition'"):
        submission.submit(good_zip, "generative-dog-images", message="m", api=api)


def test_submit_without_credentials_says_how_to_set_them_up(good_zip, tmp_path, monkeypatch):
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    with pytest.raises(DogganError, match="kaggle.json"):
        submission.submit(good_zip, "generative-dog-images", message="m")


# --- the default message -----------------------------------------------------------------------------


def git(repo, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com")
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A git repository with a committed dvc.lock, as the current folder."""
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    git(tmp_path, "init", "-q")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    git(tmp_path, "add", "dvc.lock")
    git(tmp_path, "commit", "-qm", "baseline")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_default_message_names_commit_and_mifid(project):
    short = git(project, "rev-parse", "--short", "HEAD").strip()
    assert submission.default_message() == f"doggan {short}"
    (project / "metrics").mkdir()
    (project / "metrics/eval.json").write_text(json.dumps({"mifid": 55.904, "backbone": "tf2015"}))
    assert submission.default_message() == f"doggan {short}, MiFID 55.90 (tf2015)"
    (project / "metrics/eval.json").write_text(
        json.dumps(
            {
                "protocol": "both",
                "mifid": 31.1,
                "backbone": "tf2015",
                "private_mifid": 55.4,
                "private_backbone": "nasnet",
            }
        )
    )
    assert submission.default_message().endswith("MiFID 31.10 (tf2015), private MiFID 55.40 (nasnet)")


def test_default_message_marks_a_dirty_tree_and_names_the_experiment(project, monkeypatch):
    head = git(project, "rev-parse", "HEAD").strip()
    short = git(project, "rev-parse", "--short", "HEAD").strip()
    # An experiment as `dvc exp run` records it: a commit under refs/exps/<baseline[:2]>/<baseline[2:]>/.
    (project / "dvc.lock").write_text("schema: '2.0'\nstages: {train: {epochs: 2}}\n")
    git(project, "commit", "-qam", "exp")
    exp = git(project, "rev-parse", "HEAD").strip()
    git(project, "reset", "-q", "--hard", head)
    git(project, "update-ref", f"refs/exps/{head[:2]}/{head[2:]}/rerun-of-baseline", head)
    git(project, "update-ref", f"refs/exps/{head[:2]}/{head[2:]}/two-epochs", exp)
    assert submission.experiment_name() is None  # the workspace still holds the commit's results
    git(project, "checkout", "-q", exp, "--", "dvc.lock")  # the experiment's results, in the workspace
    assert submission.experiment_name() == "two-epochs"
    assert submission.default_message() == f"doggan {short}-dirty, exp two-epochs"
    monkeypatch.setenv("DVC_EXP_NAME", "queued-lr")
    assert submission.default_message() == f"doggan {short}-dirty, exp queued-lr"


def test_default_message_outside_git(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert submission.default_message() == "doggan submission"


def test_experiment_name_after_a_real_dvc_exp_run(tmp_path, monkeypatch):
    """`dvc exp run` in the workspace, then `dvc exp apply`: the workspace's experiment is found by name."""
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    bin_dir = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    git(tmp_path, "init", "-q")
    (tmp_path / "params.yaml").write_text("lr: 1\n")
    stage = {
        "cmd": "python -c \"print(open('params.yaml').read())\" > out.txt",
        "params": ["lr"],
        "outs": ["out.txt"],
    }
    (tmp_path / "dvc.yaml").write_text(json.dumps({"stages": {"train": stage}}))

    def dvc(*args):
        env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com")
        env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
        subprocess.run([bin_dir / "dvc", *args], cwd=tmp_path, env=env, check=True, capture_output=True)

    dvc("init", "-q")
    dvc("repro", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "baseline")
    monkeypatch.chdir(tmp_path)
    assert submission.experiment_name() is None
    dvc("exp", "run", "-q", "-S", "lr=2", "-n", "lr-two")
    dvc("exp", "run", "-q", "-S", "lr=3", "-n", "lr-three")
    assert submission.experiment_name() == "lr-three"
    dvc("exp", "apply", "-q", "lr-two")
    assert submission.experiment_name() == "lr-two"
