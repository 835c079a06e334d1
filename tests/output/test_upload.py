"""The upload, with a fake Kaggle client at the network boundary, and its default message, in real
git repositories and real DVC experiments."""

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

import doggan
from doggan.cli import main
from doggan.errors import DogganError
from doggan.output import upload
from doggan.output.submission import N_IMAGES

BIN = Path(sys.executable).parent


class Reply:
    def __init__(self, message):
        self.message = message


class FakeKaggle:
    """Stands in for kaggle's KaggleApi: same method names and arguments, records what it was sent.

    `code_only` lists the competition as taking only notebooks' outputs, as Kaggle marks code competitions.
    """

    def __init__(self, reply="Successfully submitted to Generative Dog Images", error=None, code_only=False):
        self.calls, self.reply, self.error, self.code_only = [], reply, error, code_only

    def competition_submit(self, file_name, message, competition, quiet=False, sandbox=False):
        if self.error:
            raise self.error
        self.calls.append((file_name, message, competition, Path(file_name).stat().st_size))
        return Reply(self.reply)

    def competition_submit_code(
        self, file_name, message, competition=None, kernel=None, kernel_version=None, quiet=False
    ):
        self.calls.append(("code", file_name, message, competition, kernel, kernel_version))
        return Reply("")

    def competitions_list(
        self, group=None, category=None, sort_by=None, page=-1, search=None, page_size=20, page_token=None
    ):
        self.calls.append(("list", search, category))
        listed = SimpleNamespace(
            ref=f"https://www.kaggle.com/competitions/{search}", is_kernels_submissions_only=self.code_only
        )
        return SimpleNamespace(competitions=[listed])


def test_the_fake_takes_the_clients_arguments():
    from kaggle.api.kaggle_api_extended import KaggleApi

    for name in ("competition_submit", "competition_submit_code", "competitions_list"):
        ours = inspect.signature(getattr(FakeKaggle, name)).parameters
        assert ours.keys() == inspect.signature(getattr(KaggleApi, name)).parameters.keys(), name


def test_submit_uploads_a_valid_zip(good_zip, capsys):
    api = FakeKaggle()
    sent = upload.submit(good_zip, "generative-dog-images", message="dcgan v1", api=api)
    assert sent == "dcgan v1"
    assert api.calls == [(str(good_zip), "dcgan v1", "generative-dog-images", good_zip.stat().st_size)]
    assert "Successfully submitted" in capsys.readouterr().out


def test_submit_refuses_an_invalid_zip_before_any_call(tmp_path, png_zip):
    api = FakeKaggle()
    bad = png_zip(tmp_path / "bad.zip", N_IMAGES - 1)
    with pytest.raises(DogganError, match="not uploading an invalid submission\n  9,999 images"):
        upload.submit(bad, "generative-dog-images", message="m", api=api)
    assert api.calls == []


def test_dry_run_validates_and_sends_nothing(good_zip, capsys):
    api = FakeKaggle()
    assert upload.submit(good_zip, "my-comp", message="try", dry_run=True, api=api) == "try"
    assert api.calls == []
    out = capsys.readouterr().out
    assert out.startswith(f"dry run: would upload {good_zip}") and "to my-comp with message: try" in out


def test_upload_errors_are_explained(good_zip):
    response = requests.Response()
    response.status_code = 403
    api = FakeKaggle(error=requests.HTTPError("403 Client Error: Forbidden", response=response))
    with pytest.raises(DogganError, match="Accept the competition's rules"):
        upload.submit(good_zip, "generative-dog-images", message="m", api=api)
    api = FakeKaggle(reply=upload.UPLOAD_FAILED)
    with pytest.raises(DogganError, match="failed: Kaggle answered 'Could not submit to competition'"):
        upload.submit(good_zip, "generative-dog-images", message="m", api=api)


def bad_request(message="Bad Request"):
    """What the kaggle client raises on a refusal: requests' HTTPError with Kaggle's message."""
    response = requests.Response()
    response.status_code = 400
    return requests.HTTPError(message, response=response)


def test_a_code_competition_refusing_a_file_says_how_to_submit_a_notebook(good_zip):
    api = FakeKaggle(error=bad_request(), code_only=True)
    with pytest.raises(DogganError) as err:
        upload.submit(good_zip, "generative-dog-images", message="m", api=api)
    text = str(err.value)
    assert text.startswith("generative-dog-images is a code competition: Kaggle scores the images.zip")
    assert "doggan kernel --push" in text and "doggan submit --kernel OWNER/SLUG --version N" in text
    assert api.calls == [("list", "generative-dog-images", "all")]
    # Kaggle's answer alone can say so; a file competition's refusal stays what it was.
    api = FakeKaggle(error=bad_request("Submission not allowed: this competition only takes notebook output"))
    with pytest.raises(DogganError, match="is a code competition"):
        upload.submit(good_zip, "generative-dog-images", message="m", api=api)
    with pytest.raises(DogganError, match=r"upload of .* failed \(HTTP 400: Bad Request\)"):
        upload.submit(good_zip, "titanic", message="m", api=FakeKaggle(error=bad_request()))
    with pytest.raises(DogganError, match="is a code competition"):
        upload.submit(
            good_zip,
            "generative-dog-images",
            message="m",
            api=FakeKaggle(upload.UPLOAD_FAILED, code_only=True),
        )


def test_submit_code_sends_the_notebooks_output_name_and_version(capsys):
    api = FakeKaggle()
    sent = upload.submit_code("alice/doggan", "generative-dog-images", version=4, api=api)
    assert sent == "doggan notebook alice/doggan, version 4"
    assert api.calls == [("code", "images.zip", sent, "generative-dog-images", "alice/doggan", 4)]
    assert (
        "submitted images.zip of alice/doggan (version 4) to generative-dog-images" in capsys.readouterr().out
    )
    upload.submit_code("alice/doggan", "generative-dog-images", message="run 2", api=api)
    assert api.calls[-1] == ("code", "images.zip", "run 2", "generative-dog-images", "alice/doggan", None)
    with pytest.raises(DogganError, match="expected the notebook as OWNER/SLUG"):
        upload.submit_code("doggan", "generative-dog-images", api=api)


class FakeSdk:
    """The kaggle client's transport (`build_kaggle_client()`), as for a code competition: a file upload
    is refused, the competition is listed as taking notebooks' outputs, a code submission is recorded."""

    def __init__(self):
        self.requests = []
        self.competitions = SimpleNamespace(competition_api_client=self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def start_submission_upload(self, request):
        self.requests.append(request)
        raise bad_request()

    def list_competitions(self, request):
        from kagglesdk.competitions.types.competition_api_service import (
            ApiCompetition,
            ApiListCompetitionsResponse,
        )

        self.requests.append(request)
        listed = ApiCompetition()
        listed.ref = "https://www.kaggle.com/competitions/generative-dog-images"
        listed.is_kernels_submissions_only = True
        reply = ApiListCompetitionsResponse()
        reply.competitions = [listed]
        return reply

    def create_code_submission(self, request):
        from kagglesdk.competitions.types.competition_api_service import ApiCreateCodeSubmissionResponse

        self.requests.append(request)
        reply = ApiCreateCodeSubmissionResponse()
        reply.message = "Submission created"
        return reply


@pytest.fixture
def kaggle_sdk(tmp_path, kaggle_home, kaggle_key, monkeypatch):
    """The real KaggleApi with made-up credentials, talking to a FakeSdk; params.yaml in the current dir."""
    from kaggle.api.kaggle_api_extended import KaggleApi

    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", kaggle_key)
    sdk = FakeSdk()
    monkeypatch.setattr(KaggleApi, "build_kaggle_client", lambda self: sdk)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("submission: {competition: generative-dog-images}\n")
    return sdk


def test_doggan_submit_kernel_goes_through_the_kaggle_client(kaggle_sdk, capsys):
    assert main(["submit", "--kernel", "alice/doggan", "--version", "4", "-m", "biggan 130 epochs"]) == 0
    (request,) = kaggle_sdk.requests
    assert (request.file_name, request.competition_name) == ("images.zip", "generative-dog-images")
    assert (request.kernel_slug, request.kernel_version, request.submission_description) == (
        "doggan",
        4,
        "biggan 130 epochs",
    )
    assert "(Kaggle: Submission created)" in capsys.readouterr().out


def test_doggan_submit_of_a_file_to_a_code_competition_shows_the_kernel_route(kaggle_sdk, good_zip, capsys):
    assert main(["submit", "--path", str(good_zip), "-m", "m"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: generative-dog-images is a code competition")
    assert "doggan submit --kernel OWNER/SLUG --version N" in err
    upload_request, listing = kaggle_sdk.requests
    assert (upload_request.file_name, listing.search) == ("images.zip", "generative-dog-images")


@pytest.mark.usefixtures("kaggle_home")
def test_submit_without_credentials_says_how_to_set_them_up(good_zip, explains_kaggle_setup):
    with pytest.raises(DogganError) as err:
        upload.submit(good_zip, "generative-dog-images", message="m")
    explains_kaggle_setup(str(err.value))


# --- the default message -----------------------------------------------------------------------------


def run(repo, *cmd):
    """A git or DVC command in `repo`, with its own git identity and this venv's tools and doggan."""
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com")
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", PYTHONPATH=str(Path(doggan.__file__).parents[1]))
    return subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def git(repo, *args):
    return run(repo, "git", *args)


def dvc(repo, *args):
    return run(repo, BIN / "dvc", *args)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A git and DVC repository with a committed dvc.lock, as the current folder."""
    from dvc.repo import Repo

    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    git(tmp_path, "init", "-q")
    Repo.init(str(tmp_path)).close()
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    git(tmp_path, "add", "dvc.lock")
    git(tmp_path, "commit", "-qm", "baseline")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_default_message_names_commit_and_mifid(project):
    short = git(project, "rev-parse", "--short", "HEAD").strip()
    assert upload.default_message() == f"doggan {short}"
    (project / "metrics").mkdir()
    (project / "metrics/eval.json").write_text(json.dumps({"mifid": 55.904, "backbone": "tf2015"}))
    assert upload.default_message() == f"doggan {short}, MiFID 55.90 (tf2015)"
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
    assert upload.default_message().endswith("MiFID 31.10 (tf2015), private MiFID 55.40 (nasnet)")


def test_default_message_marks_a_dirty_tree_and_names_the_experiment(project, monkeypatch):
    head = git(project, "rev-parse", "HEAD").strip()
    short = git(project, "rev-parse", "--short", "HEAD").strip()
    # Experiments as `dvc exp run` records them: commits under refs/exps/<baseline[:2]>/<baseline[2:]>/.
    (project / "dvc.lock").write_text("schema: '2.0'\nstages: {train: {epochs: 2}}\n")
    git(project, "commit", "-qam", "exp")
    exp = git(project, "rev-parse", "HEAD").strip()
    git(project, "reset", "-q", "--hard", head)
    git(project, "update-ref", f"refs/exps/{head[:2]}/{head[2:]}/rerun-of-baseline", head)
    git(project, "update-ref", f"refs/exps/{head[:2]}/{head[2:]}/two-epochs", exp)
    assert upload.experiment_name() is None  # the workspace still holds the commit's results
    git(project, "checkout", "-q", exp, "--", "dvc.lock")  # the experiment's results, in the workspace
    assert upload.experiment_name() == "two-epochs"
    assert upload.default_message() == f"doggan {short}-dirty, exp two-epochs"
    monkeypatch.setenv("DVC_EXP_NAME", "queued-lr")
    assert upload.default_message() == f"doggan {short}-dirty, exp queued-lr"


def test_default_message_outside_git(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert upload.default_message() == "doggan submission"


def test_a_git_repository_without_dvc_is_named_by_its_commit(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    git(tmp_path, "init", "-q")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    git(tmp_path, "add", "dvc.lock")
    git(tmp_path, "commit", "-qm", "first")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {train: {}}\n")
    monkeypatch.chdir(tmp_path)
    short = git(tmp_path, "rev-parse", "--short", "HEAD").strip()
    assert upload.experiment_name() is None
    assert upload.default_message() == f"doggan {short}-dirty"


# The stage records the message an upload would send from inside the run, next to the params it read.
RECORD = (
    "from doggan.output.upload import default_message; print(open('params.yaml').read(), default_message())"
)


@pytest.fixture
def dvc_project(tmp_path, monkeypatch):
    """A git and DVC repository, as the current folder, whose one stage records the upload message;
    its first run is committed as the baseline."""
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    git(tmp_path, "init", "-q")
    (tmp_path / "params.yaml").write_text("lr: 1\n")
    stage = {"cmd": f'python -c "{RECORD}" > out.txt', "params": ["lr"], "outs": ["out.txt"]}
    (tmp_path / "dvc.yaml").write_text(json.dumps({"stages": {"train": stage}}))
    dvc(tmp_path, "init", "-q")
    dvc(tmp_path, "repro", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "baseline")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_experiment_name_after_a_real_dvc_exp_run(dvc_project):
    """`dvc exp run` in the workspace, then `dvc exp apply`: the workspace's experiment is found by name."""
    assert upload.experiment_name() is None
    dvc(dvc_project, "exp", "run", "-q", "-S", "lr=2", "-n", "lr-two")
    dvc(dvc_project, "exp", "run", "-q", "-S", "lr=3", "-n", "lr-three")
    assert upload.experiment_name() == "lr-three"
    dvc(dvc_project, "exp", "apply", "-q", "lr-two")
    assert upload.experiment_name() == "lr-two"


@pytest.mark.slow
def test_a_named_dvc_experiment_is_named_in_the_message_during_and_after_its_run(dvc_project):
    short = git(dvc_project, "rev-parse", "--short", "HEAD").strip()
    dvc(dvc_project, "exp", "run", "-q", "-S", "lr=2", "--name", "my-exp")
    recorded = (dvc_project / "out.txt").read_text().split()
    assert recorded[:2] == ["lr:", "2"] and recorded[-2:] == ["exp", "my-exp"]
    assert upload.default_message() == f"doggan {short}-dirty, exp my-exp"
