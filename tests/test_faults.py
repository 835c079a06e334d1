"""Machine faults, really done to real stage processes: killed mid-write, a file-size limit, a read-only
output folder, two runs filling one cache at once, and a CPU-only machine's start-up."""

import ctypes
import http.server
import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import descendants, running, save_generator

ROOT = Path(__file__).resolve().parents[1]
SUBMISSION = ROOT / "pipeline" / "submission.py"
DOWNLOAD = ROOT / "pipeline" / "download.py"
PARAMS = "data:\n  sample_images: 8\nsubmission:\n  n_images: 2000\n  batch_size: 250\n  workers: 2\n"
OUTPUTS = (
    "submission/images.zip",
    "submission/preview.png",
    "data/raw/all-dogs.zip",
    "data/raw/Annotation.zip",
)

pytestmark = pytest.mark.slow
# The tests of one `workdir` share an xdist group: one worker runs them, so its two stage runs happen once.
WORKDIR = pytest.mark.xdist_group("faults-workdir")


def stage_env(**extra) -> dict:
    """The environment of a stage run as a user runs it: TensorFlow's log level left to the stage."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "DOGGAN_VERBOSE")}
    return {**env, **extra}


def run_stage(cwd, preexec_fn=None, script=SUBMISSION, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=stage_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=preexec_fn,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with the download stage's outputs (a tiny sample), a trained (tiny) generator and the
    submission stage's outputs of one quiet run."""
    root = tmp_path_factory.mktemp("faults")
    save_generator(root / "models")
    (root / "params.yaml").write_text(PARAMS)
    assert run_stage(root, script=DOWNLOAD).returncode == 0
    result = run_stage(root)
    assert result.returncode == 0, result.stderr[-3000:]
    root.joinpath("first_stderr.txt").write_text(result.stderr)
    return root


def outputs(root: Path) -> dict:
    return {name: (root / name).read_bytes() for name in OUTPUTS}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@WORKDIR
def test_start_up_is_quiet_about_a_missing_gpu_and_says_what_it_runs_on(workdir):
    stderr = workdir.joinpath("first_stderr.txt").read_text()
    assert "cuInit" not in stderr and not re.search(r"^[IWE]\d{4} ", stderr, re.M), stderr
    assert re.search(r"stage submission: running on (CPU \(\d+ cores\), no GPU|\d+ GPU\(s\): )", stderr)


@WORKDIR
def test_a_killed_submission_leaves_no_process_and_the_next_run_no_temp_file(workdir):
    before = outputs(workdir)
    stage = subprocess.Popen(
        [sys.executable, str(SUBMISSION)], cwd=workdir, env=stage_env(), stderr=subprocess.DEVNULL
    )
    helpers: set[int] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and stage.poll() is None:
        helpers |= descendants(stage.pid)
        written = [p for p in (workdir / "submission").iterdir() if p.name.startswith(".images.zip.")]
        if written and written[0].stat().st_size > 100_000:  # mid-write; any helper process seen
            break
        time.sleep(0.05)
    assert stage.poll() is None, "the stage ended before it could be killed mid-way"
    stage.kill()
    stage.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(map(running, helpers)):
        time.sleep(0.2)
    assert not [pid for pid in helpers if running(pid)], "processes outlived their stage"
    assert outputs(workdir) == before
    assert leftovers(workdir / "submission") == [written[0].name], "killed mid-write"

    again = run_stage(workdir, DOGGAN_VERBOSE="1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert re.search(r"^[IWE]\d{4} ", again.stderr, re.M), "DOGGAN_VERBOSE=1 shows TensorFlow's messages"
    assert leftovers(workdir / "submission") == []
    assert outputs(workdir) == before


def limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))


@WORKDIR
def test_a_file_size_limit_is_one_line_and_leaves_the_previous_outputs(workdir):
    before = outputs(workdir)
    result = run_stage(workdir, preexec_fn=limit_file_size)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == (
        "error: submission/images.zip: file too large (the file-size limit was reached) — nothing was written"
    )
    assert outputs(workdir) == before and leftovers(workdir / "submission") == []


PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: a forked child only calls it
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE = 24, 1


def without_root_override() -> None:
    """Root writes into read-only folders; drop that power (CAP_DAC_OVERRIDE, from the bounding set, so it
    stays dropped across exec) and the folder's mode binds this process as any user's."""
    if os.geteuid() == 0 and PRCTL(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) refused")


@WORKDIR
def test_a_read_only_output_folder_is_one_line_and_leaves_the_previous_outputs(workdir):
    before = outputs(workdir)
    folder = workdir / "data" / "raw"
    folder.chmod(0o555)
    try:
        result = run_stage(workdir, preexec_fn=without_root_override, script=DOWNLOAD)
    finally:
        folder.chmod(0o755)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == (
        "error: data/raw/all-dogs.zip: permission denied — nothing was written"
    )
    assert outputs(workdir) == before and leftovers(folder) == []


class Barrier(http.server.BaseHTTPRequestHandler):
    """Serves `body` for any path, holding back its second half until `expected` requests of that path
    arrived: every client is mid-download at the same moment."""

    body = b""
    expected = 2
    arrived: dict = {}
    lock = threading.Condition()

    def do_GET(self):
        with self.lock:
            self.arrived[self.path] = self.arrived.get(self.path, 0) + 1
            self.lock.notify_all()
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        half = len(self.body) // 2
        self.wfile.write(self.body[:half])
        self.wfile.flush()
        with self.lock:
            self.lock.wait_for(lambda: self.arrived[self.path] >= self.expected, timeout=60)
        self.wfile.write(self.body[half:])

    def log_message(self, *args):
        pass


@pytest.fixture
def barrier_server():
    rng = np.random.default_rng(0)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"mnist-{os.getpid()}.npz"
    x = rng.integers(0, 256, (2000, 28, 28), dtype=np.uint8)  # 1.5 MB: written in many blocks
    y = rng.integers(0, 10, 2000).astype(np.uint8)
    np.savez(path, x_train=x, y_train=y, x_test=x[:2], y_test=y[:2])
    Barrier.body, Barrier.arrived = path.read_bytes(), {}
    path.unlink()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Barrier)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_two_runs_at_once_fill_the_shared_caches_whole(barrier_server, tmp_path):
    """Two download stages (MNIST into the Keras cache) and two `doggan weights` (Kaggle's graph into
    doggan's cache) at once: each pair downloads side by side, and every run reads a whole file."""
    env = stage_env(
        KERAS_HOME=str(tmp_path / "keras"),
        DOGGAN_CACHE=str(tmp_path / "cache"),
        DOGGAN_MNIST_URL=f"{barrier_server}/mnist.npz",
        DOGGAN_INCEPTION_URL=f"{barrier_server}/inception.tgz",
    )
    runs = []
    for i in range(2):
        work = tmp_path / f"run{i}"
        work.mkdir()
        (work / "params.yaml").write_text("data:\n  source: mnist\n  max_images: 10\n")
        for cmd in ([str(ROOT / "pipeline" / "download.py")], ["-m", "doggan.cli", "weights"]):
            runs.append(
                subprocess.Popen([sys.executable, *cmd], cwd=work, env=env, stderr=subprocess.PIPE, text=True)
            )
        if i == 0:  # the second pair starts once the first is mid-download
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and sum(Barrier.arrived.values()) < 2:
                time.sleep(0.05)
    errors = [run.communicate(timeout=180)[1] for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, "\n".join(e[-2000:] for e in errors)
    assert Barrier.arrived == {"/mnist.npz": 2, "/inception.tgz": 2}
    assert (tmp_path / "run0/data/raw/images.zip").read_bytes() == (
        tmp_path / "run1/data/raw/images.zip"
    ).read_bytes()
    assert sorted(os.listdir(tmp_path / "keras" / "datasets")) == ["mnist.npz"]
    assert (tmp_path / "keras" / "datasets" / "mnist.npz").read_bytes() == Barrier.body
    assert sorted(os.listdir(tmp_path / "cache")) == ["inception-2015-12-05.tgz"]
    assert (tmp_path / "cache" / "inception-2015-12-05.tgz").read_bytes() == Barrier.body
