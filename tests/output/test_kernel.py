"""The Kaggle notebook route: the kernel folder, its wheels dataset, the notebook run end to end in a
simulated Kaggle layout, and push / status / output against fakes of the Kaggle client."""

import hashlib
import inspect
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from kagglesdk.kernels.types.kernels_api_service import (
    ApiGetKernelSessionStatusResponse,
    ApiSaveKernelResponse,
)
from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus

from doggan.cli import main
from doggan.data import kaggle_api
from doggan.data.sample import write_sample
from doggan.errors import DogganError
from doggan.output import kernel_runs
from doggan.output.kernel import (
    Kernel,
    build_wheels,
    kaggle_requirements,
    kernel_params,
    metadata,
    unmet,
    unmet_requirements,
    wheel_requirements,
    write_kernel,
)
from doggan.output.submission import validate

ROOT = Path(__file__).resolve().parents[2]
# Tiny params, as tests/test_pipeline.py runs the pipeline: seconds per stage on a CPU.
TINY = (
    "crop.preview=16",
    "augment.preview=16",
    "train.epochs=1",
    "train.batch_size=16",
    "train.g_filters=32",
    "train.d_filters=16",
    "train.resolution=16",
    "train.checkpoint_every=2",
    "eval.backbone=standin",
    "eval.batch_size=50",
    "submission.n_images=200",
    "submission.batch_size=100",
    "submission.workers=1",
)


def tree_hashes(root: Path) -> dict:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


# The tests of `kaggle_input` share an xdist group: one worker runs them, so doggan's wheel is built once.
KAGGLE_INPUT = pytest.mark.xdist_group("kaggle-input")


@pytest.fixture(scope="module")
def kaggle_input(tmp_path_factory):
    """kaggle/input as a session sees it: the competition's zips extracted as Kaggle mounts them
    (generative-dog-images/all-dogs/all-dogs/*.jpg, .../Annotation/Annotation/<breed>/<id>), read only,
    and the wheels dataset built with doggan's own wheel."""
    base = tmp_path_factory.mktemp("kaggle")
    raw = base / "raw"
    write_sample(raw, 24, seed=0)
    competition = base / "input" / "generative-dog-images"
    for name in ("all-dogs", "Annotation"):
        with zipfile.ZipFile(raw / f"{name}.zip") as zf:
            zf.extractall(competition / name)
    build_wheels(base / "input" / "doggan-wheels", "alice/doggan-wheels", deps=False)
    for path in [competition, *competition.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    yield base / "input"
    for path in [competition, *competition.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)


@pytest.fixture
def offline_env(monkeypatch, tmp_path):
    """No network for anything the notebook starts: proxies at a closed port, pip without its index,
    its machine-wide configuration or extra find-links."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead)
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    return dead


def spec(tmp_path, *overrides, **fields):
    params = tmp_path / "params.yaml"
    if not params.exists():
        shutil.copy(ROOT / "params.yaml", params)
    return Kernel(owner="alice", params=params, overrides=overrides, **fields)


# --- the notebook, end to end ---------------------------------------------------------------------------


@pytest.mark.slow
@KAGGLE_INPUT
def test_the_notebook_runs_end_to_end_in_a_kaggle_layout(tmp_path, kaggle_input, offline_env, monkeypatch):
    from nbclient import NotebookClient

    notebook = write_kernel(tmp_path / "kernel", spec(tmp_path, *TINY, limit_min=30, reserve_min=5))
    working, run = tmp_path / "kaggle" / "working", tmp_path / "kaggle" / "temp" / "doggan"
    monkeypatch.setenv("DOGGAN_KAGGLE_INPUT", str(kaggle_input))
    monkeypatch.setenv("DOGGAN_KAGGLE_WORKING", str(working))
    monkeypatch.setenv("DOGGAN_KAGGLE_RUN", str(run))
    monkeypatch.setenv("PIP_DRY_RUN", "1")  # doggan is installed here already: pip must change nothing
    competition = kaggle_input / "generative-dog-images"
    before = tree_hashes(competition)

    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("print('python:', sys.executable)"))
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    printed = "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )

    assert f"python: {sys.executable}" in printed  # this venv's Python ran it
    assert "Requirement already satisfied: doggan" in printed  # the install cell ran, from the wheels
    assert validate(working / "images.zip", 200) == []
    assert "warning: submission.n_images is 200: a test zip, not a Kaggle submission" in printed
    for name in ("plots/train/samples.png", "submission/preview.png", "models/generator.keras"):
        assert (working / "doggan" / name).is_file(), name
    assert json.loads((working / "doggan/metrics/eval.json").read_text())["backbone"] == "standin"
    used = (working / "doggan/params.yaml").read_text()
    assert "source: local" in used and f"path: {competition}" in used
    budget = float(used.split("time_budget_min:")[1].split()[0])
    assert 0 < budget <= 25  # 30 min limit less 5 reserved, less what the data stages took
    assert tree_hashes(competition) == before
    assert not any(working.rglob("*.npz"))  # the crops and statistics stay in the run folder


# --- the wheels dataset ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_wheels_install_doggan_into_a_fresh_venv_without_an_index(tmp_path, offline_env, capsys):
    """`doggan kernel --wheels`, then the notebook's own settings and install cells run by a fresh venv."""
    wheels = tmp_path / "input" / "doggan-wheels"
    assert main(["kernel", "--wheels", str(wheels), "--no-deps", "--owner", "alice"]) == 0
    assert f"kaggle datasets create -p {wheels}" in capsys.readouterr().out
    assert [p.name for p in wheels.glob("*.whl")] == ["doggan-0.1.0-py3-none-any.whl"]
    assert (wheels / "requirements.txt").read_text() == ""  # deps=False: doggan's wheel only
    assert (wheels / "python.txt").read_text() == f"{sys.version_info[0]}.{sys.version_info[1]}\n"
    meta = json.loads((wheels / "dataset-metadata.json").read_text())
    assert meta["id"] == "alice/doggan-wheels" and len(meta["licenses"]) == 1
    assert 6 <= len(meta["title"]) <= 50

    subprocess.run([sys.executable, "-m", "venv", tmp_path / "venv"], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    cells = nbformat.read(write_kernel(tmp_path / "kernel", spec(tmp_path)), as_version=4).cells
    script = cells[1].source + "\n" + cells[2].source
    env = dict(os.environ, DOGGAN_KAGGLE_INPUT=str(tmp_path / "input"))
    subprocess.run([python, "-c", script], env=env, check=True, capture_output=True, timeout=120)
    found = subprocess.run(
        [python, "-c", "import doggan, importlib.resources as r; print(doggan.__file__, r.files(doggan))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(path.startswith(str(tmp_path / "venv")) for path in found)
    assert Path(found[1], "presets.yaml").is_file()  # the package data came along


@KAGGLE_INPUT
def test_the_requirements_are_what_kaggle_lacks_with_doggans_ranges(kaggle_input):
    from packaging.requirements import Requirement

    def ranges(requirements):
        return {Requirement(r).name: str(Requirement(r).specifier) for r in requirements}

    ours = wheel_requirements(next((kaggle_input / "doggan-wheels").glob("doggan-*.whl")))
    assert ranges(ours)["dvc"] == "<4,>=3.55" and "pytest" not in ranges(ours)  # extras left out
    assert ranges(kaggle_requirements(ours)) == {
        "dvc": "<4,>=3.55",
        "dvclive": "<4,>=3.48",
        "ruamel.yaml": "<0.20,>=0.18.6",
    }
    added = ranges(kaggle_requirements(ours, ["TensorFlow", "timm==1.0"]))
    assert added["tensorflow"] == "<2.22,>=2.20" and added["timm"] == "==1.0"


def test_unmet_requirements_name_the_package_and_the_fix():
    installed = {"tensorflow": "2.18.0", "opencv-python": "4.11.0", "dvc": "3.60"}.get
    wanted = ["tensorflow>=2.20,<2.22", "opencv-python-headless>=4.10", "dvc>=3.55", "pytest; extra == 'dev'"]
    (problem,) = unmet(wanted, installed)
    assert "tensorflow<2.22,>=2.20 wanted, 2.18.0 installed" in problem
    assert problem.endswith("doggan kernel --wheels DIR --add tensorflow")
    assert unmet(["ruamel.yaml>=0.18"], {}.get)[0].startswith("ruamel.yaml>=0.18 wanted, none installed")
    assert unmet_requirements() == []  # this venv meets every requirement


# --- kernel-metadata.json and the params --------------------------------------------------------------

# Every field `kaggle kernels push` reads (KaggleApi.kernels_push), with the type it expects.
PUSH_FIELDS = {
    "id": str,
    "title": str,
    "code_file": str,
    "language": str,
    "kernel_type": str,
    "is_private": bool,
    "enable_gpu": bool,
    "enable_tpu": bool,
    "enable_internet": bool,
    "dataset_sources": list,
    "competition_sources": list,
    "kernel_sources": list,
    "model_sources": list,
}


def test_kernel_metadata_has_every_field_kernels_push_reads(tmp_path):
    write_kernel(tmp_path / "kernel", spec(tmp_path, inception_dataset="bob/inception-graph"))
    meta = json.loads((tmp_path / "kernel/kernel-metadata.json").read_text())
    assert {k: type(v) for k, v in meta.items()} == PUSH_FIELDS
    assert meta["id"] == "alice/doggan" and (tmp_path / "kernel" / meta["code_file"]).is_file()
    assert (meta["language"], meta["kernel_type"], meta["enable_gpu"], meta["enable_internet"]) == (
        "python",
        "notebook",
        True,
        False,
    )
    assert meta["dataset_sources"] == ["alice/doggan-wheels", "bob/inception-graph"]
    assert meta["competition_sources"] == ["generative-dog-images"] and meta["kernel_sources"] == []


def test_the_params_carry_the_overrides_and_the_mounted_data(tmp_path):
    text = kernel_params(spec(tmp_path, "train.epochs=130", "train.preset=biggan-dogs", "eval.backbone=auto"))
    assert "epochs: 130" in text and "preset: biggan-dogs" in text
    assert "source: local" in text and "path: /kaggle/input/generative-dog-images" in text
    assert "# doggan parameters" in text  # the comments of params.yaml are kept for the reader
    with pytest.raises(DogganError, match="train.epochs: Input should be a valid integer"):
        kernel_params(spec(tmp_path, "train.epochs=many"))
    with pytest.raises(DogganError, match="expected section.key=value"):
        kernel_params(spec(tmp_path, "epochs"))
    with pytest.raises(DogganError, match="train.nonsense: unknown key"):
        kernel_params(spec(tmp_path, "train.nonsense=1"))


def test_a_backbone_the_notebook_cannot_download_stops_the_writing(tmp_path):
    with pytest.raises(DogganError, match="needs Kaggle's Inception graph.*--inception-dataset"):
        kernel_params(spec(tmp_path, "eval.backbone=tf2015"))
    assert kernel_params(spec(tmp_path, "eval.backbone=tf2015", inception_dataset="bob/inception-graph"))
    assert kernel_params(spec(tmp_path, "eval.backbone=nasnet", internet=True))
    with pytest.raises(DogganError, match="needs its Keras weights"):
        kernel_params(spec(tmp_path, "eval.backbone=nasnet"))


def test_auto_without_the_graph_warns_that_the_score_is_the_standins(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="doggan"):
        kernel_params(spec(tmp_path, "eval.backbone=auto", inception_dataset="bob/inception-graph"))
        assert caplog.text == ""
        kernel_params(spec(tmp_path, "eval.backbone=auto"))
    assert "the notebook's MiFID is the stand-in's" in caplog.text


def test_the_clock_must_leave_time_to_train(tmp_path):
    with pytest.raises(DogganError, match="--reserve-min 60 leaves no time to train in --limit-min 60"):
        write_kernel(tmp_path / "kernel", spec(tmp_path, limit_min=60, reserve_min=60))


def test_slug_and_title_are_checked_as_kaggle_makes_slugs(tmp_path):
    assert metadata(spec(tmp_path, slug="dog-gan", title="Dog GAN"))["title"] == "Dog GAN"
    with pytest.raises(DogganError, match="does not make the slug"):
        metadata(spec(tmp_path, slug="doggan", title="My dogs"))
    with pytest.raises(DogganError, match="lowercase letters"):
        metadata(spec(tmp_path, slug="Dog"))


# --- push, status, output -------------------------------------------------------------------------------


class FakeSdk:
    """The kaggle client's transport (`build_kaggle_client()`): records the requests Kaggle would get."""

    def __init__(self):
        self.requests = []
        self.kernels = SimpleNamespace(kernels_api_client=SimpleNamespace(save_kernel=self.save_kernel))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def save_kernel(self, request):
        self.requests.append(request)
        reply = ApiSaveKernelResponse()
        reply.version_number, reply.url = 4, "https://www.kaggle.com/code/alice/doggan"
        return reply


@pytest.fixture
def kaggle_client(kaggle_home, kaggle_key, monkeypatch):
    """The real KaggleApi, authenticated with made-up credentials, talking to a FakeSdk."""
    from kaggle.api.kaggle_api_extended import KaggleApi

    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", kaggle_key)
    sdk = FakeSdk()
    monkeypatch.setattr(KaggleApi, "build_kaggle_client", lambda self: sdk)
    return sdk


def test_push_sends_the_folder_through_kaggles_own_checks(tmp_path, kaggle_client, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    assert main(["kernel", "-S", "train.epochs=3"]) == 0  # the owner from the credentials
    assert main(["kernel", "--push"]) == 0
    (request,) = kaggle_client.requests
    assert (request.slug, request.language, request.kernel_type) == ("alice/doggan", "python", "notebook")
    assert request.enable_gpu and not request.enable_internet and request.is_private
    assert request.dataset_data_sources == ["alice/doggan-wheels"]
    assert request.competition_data_sources == ["generative-dog-images"]
    assert "epochs: 3" in "".join(cell["source"] for cell in json.loads(request.text)["cells"])
    out = capsys.readouterr().out
    assert "pushed alice/doggan, version 4" in out and "doggan kernel --status alice/doggan" in out


def test_push_without_a_folder_says_how_to_write_it(tmp_path):
    with pytest.raises(DogganError, match="write the folder first with `doggan kernel`"):
        kernel_runs.push(tmp_path / "kernel", api=object())


class FakeKaggle:
    """Stands in for KaggleApi's kernel methods (same names and arguments): a run that goes through
    `statuses`, then outputs the files of `outputs`."""

    def __init__(self, statuses, outputs, failure=""):
        self.statuses, self.outputs, self.failure, self.calls = list(statuses), outputs, failure, []

    def kernels_status(self, kernel):
        self.calls.append(("kernels_status", kernel))
        reply = ApiGetKernelSessionStatusResponse()
        reply.status = KernelWorkerStatus[self.statuses.pop(0)]
        reply.failure_message = self.failure
        return reply

    def kernels_output(
        self, kernel, path, file_pattern=None, force=False, quiet=True, page_token=None, page_size=20
    ):
        self.calls.append(("kernels_output", kernel, path, force))
        for name, data in self.outputs.items():
            Path(path, name).write_bytes(data)
        return [str(Path(path, name)) for name in self.outputs], None


def test_the_fakes_take_the_clients_arguments():
    from kaggle.api.kaggle_api_extended import KaggleApi

    for name in ("kernels_status", "kernels_output"):
        assert (
            inspect.signature(getattr(FakeKaggle, name)).parameters.keys()
            == inspect.signature(getattr(KaggleApi, name)).parameters.keys()
        )


def test_status_follows_the_run_then_fetches_its_outputs(tmp_path, good_zip, capsys):
    api = FakeKaggle(
        ["QUEUED", "RUNNING", "RUNNING", "COMPLETE"],
        {"images.zip": good_zip.read_bytes(), "doggan.log": b"log"},
    )
    slept = []
    assert kernel_runs.follow("alice/doggan", tmp_path / "out", 30, api=api, sleep=slept.append) == "complete"
    assert slept == [30, 30, 30]
    assert api.calls[-1] == ("kernels_output", "alice/doggan", str(tmp_path / "out"), True)
    assert validate(tmp_path / "out/images.zip") == []
    out = capsys.readouterr().out
    assert out.count("alice/doggan: running") == 1 and "alice/doggan: complete" in out
    assert "valid submission; submit it: doggan submit --kernel alice/doggan --version N" in out


def test_a_failed_run_is_an_error_with_its_message_and_its_log_fetched(tmp_path):
    api = FakeKaggle(["RUNNING", "ERROR"], {"doggan.log": b"Traceback"}, failure="Kernel exited")
    with pytest.raises(DogganError, match=f"alice/doggan ended error: Kernel exited; see {tmp_path / 'out'}"):
        kernel_runs.follow("alice/doggan", tmp_path / "out", 0, api=api, sleep=lambda s: None)
    assert (tmp_path / "out/doggan.log").read_bytes() == b"Traceback"


def test_status_defaults_to_the_folders_kernel(tmp_path, monkeypatch):
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel/kernel-metadata.json").write_text(json.dumps({"id": "alice/dogs-v2"}))
    assert kernel_runs.kernel_id(tmp_path / "kernel") == "alice/dogs-v2"


def test_the_owner_comes_from_the_credentials_or_must_be_named(tmp_path, kaggle_home, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert kaggle_api.username() is None
    assert main(["kernel", "--params", str(ROOT / "params.yaml")]) == 2
    assert "no Kaggle user: pass --owner USER" in capsys.readouterr().err
    assert main(["kernel", "--owner", "bob", "--params", str(ROOT / "params.yaml")]) == 0
    assert json.loads((tmp_path / "kernel/kernel-metadata.json").read_text())["id"] == "bob/doggan"
