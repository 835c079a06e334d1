"""`doggan validate` and `doggan submit` as a user runs them: exit codes and what they print."""

import pytest

from doggan.cli import main
from doggan.output.submission import N_IMAGES


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("submission:\n  competition: dogs-rematch\n")
    return path


def test_validate_accepts_a_good_zip(good_zip, capsys):
    assert main(["validate", str(good_zip)]) == 0
    assert capsys.readouterr().out == f"{good_zip}: valid submission\n"


def test_validate_defaults_to_the_pipeline_output(good_zip, monkeypatch, capsys):
    monkeypatch.chdir(good_zip.parent.parent)
    assert main(["validate"]) == 0
    assert capsys.readouterr().out == "submission/images.zip: valid submission\n"


def test_validate_prints_one_line_per_problem_and_exits_1(tmp_path, png, png_zip, capsys):
    path = png_zip(tmp_path / "bad.zip", N_IMAGES - 1, odd={"3.png": png((65, 64))})
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: 9,999 images at the zip root, expected exactly 10,000; missing 9999.png",
        f"{path}: 3.png: 65×64 pixels, expected 64×64",
    ]


def test_validate_a_missing_file(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "none.zip")]) == 1
    assert capsys.readouterr().out == f"{tmp_path / 'none.zip'}: file not found\n"


def test_submit_dry_run_uses_the_competition_from_params(good_zip, params_file, capsys):
    argv = ["submit", "--path", str(good_zip), "--params", str(params_file), "--dry-run", "-m", "first dcgan"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"dry run: would upload {good_zip} (")
    assert out.rstrip().endswith("valid) to dogs-rematch with message: first dcgan")


def test_submit_dry_run_with_a_competition_option(good_zip, params_file, capsys):
    argv = ["submit", "--path", str(good_zip), "--params", str(params_file), "--dry-run"]
    assert main([*argv, "--competition", "generative-dog-images", "-m", "m"]) == 0
    assert "to generative-dog-images with message: m" in capsys.readouterr().out


def test_submit_refuses_an_invalid_zip(tmp_path, png_zip, params_file, capsys):
    path = png_zip(tmp_path / "bad.zip", 10)
    assert main(["submit", "--path", str(path), "--params", str(params_file), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: not uploading an invalid submission\n")
    assert "10 images at the zip root, expected exactly 10,000" in err


@pytest.mark.usefixtures("kaggle_home")
def test_submit_without_credentials_says_how_to_set_them_up(
    good_zip, params_file, explains_kaggle_setup, capsys
):
    assert main(["submit", "--path", str(good_zip), "--params", str(params_file), "-m", "m"]) == 2
    explains_kaggle_setup(capsys.readouterr().err)
