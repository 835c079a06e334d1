"""`doggan validate` and `doggan submit` as a user runs them: exit codes and what they print; the list
of commands, and commands that import only what they run."""

import subprocess
import sys

import pytest

from doggan.cli import _stage, main
from doggan.output.submission import N_IMAGES
from doggan.stages import NAMES


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


@pytest.mark.parametrize("argv", [["--help"], ["-h", "crop"]])
def test_help_lists_every_stage_and_command_with_its_help(argv, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out = capsys.readouterr().out
    assert exited.value.code == 0
    for name in NAMES:
        assert f"{name} " in out and _stage(name).run.__doc__.strip() in out
    assert "draw PNGs, a grid or a latent walk from a trained generator" in out
    assert "write, push and follow the Kaggle notebook that runs the pipeline" in out
    assert "check a submission zip against Kaggle's rules" in out


def test_generate_and_kernel_keep_their_options(capsys):
    for command, option in (("generate", "--walk-points"), ("kernel", "--wheels")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert option in capsys.readouterr().out


def test_other_commands_leave_the_generate_and_kernel_modules_unimported(good_zip):
    code = (
        "import sys\nfrom doggan.cli import main\n"
        f"status = main(['validate', {str(good_zip)!r}])\n"
        "lazy = ('doggan.output.generate', 'doggan.output.kernel_runs')\n"
        "print(status, [m for m in lazy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "0 []"
