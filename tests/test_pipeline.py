"""End to end: `dvc repro` of the real pipeline in a fresh git repo, on a tiny embedded sample."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from doggan.output.submission import validate

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "data": {"sample_images": 24},
    "crop": {"preview": 16},
    "augment": {"preview": 16},
    # G draws at 16 px (enlarged to the 64-px crops): fewer blocks to trace than the default 32
    "train": {
        "epochs": 1,
        "batch_size": 16,
        "g_filters": 32,
        "d_filters": 16,
        "resolution": 16,
        "checkpoint_every": 2,
    },
    "eval": {"backbone": "standin", "batch_size": 50},
    "submission": {"n_images": 200, "batch_size": 100, "workers": 1},
}

# metrics/eval.json's headline, in the order `dvc exp show` lists it first.
EVAL_METRICS = ["mifid", "fid", "kid", "precision", "recall", "density", "coverage", "distance", "backbone"]

# One pytest-xdist worker runs this file (--dist loadgroup) and keeps the repo fixture for its session,
# so `dvc repro` runs once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dvc-repro")]


def run(cmd, cwd, env, timeout=None):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def declared_outputs(dvc_yaml):
    for stage in dvc_yaml["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                yield next(iter(entry)) if isinstance(entry, dict) else entry


@pytest.fixture(scope="session")
def repo(tmp_path_factory):
    """A copy of the project in a new git repo, with tiny params, after one `dvc repro`."""
    repo = tmp_path_factory.mktemp("repo")
    for name in ("dvc.yaml", "pipeline", "src"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, repo / name)
    yaml = YAML()
    params = yaml.load(ROOT / "params.yaml")
    for section, values in TINY.items():
        params[section].update(values)
    yaml.dump(params, repo / "params.yaml")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com")
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    run(["git", "init", "-q"], repo, env)
    run(["git", "config", "user.name", "t"], repo, env)
    run(["git", "config", "user.email", "t@example.com"], repo, env)
    run(["dvc", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "init"], repo, env)
    run(["dvc", "repro"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "repro"], repo, env)
    return repo, env


def test_repro_writes_every_declared_output(repo):
    repo, env = repo
    dvc_yaml = YAML(typ="safe").load(repo / "dvc.yaml")
    for output in declared_outputs(dvc_yaml):
        path = repo / output
        assert path.exists(), f"declared output {output} missing"
        if path.is_dir():
            assert any(path.iterdir()), f"declared output folder {output} is empty"
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    assert list(metrics) == EVAL_METRICS
    assert metrics["backbone"] == "standin"
    report = json.loads((repo / "reports/eval.json").read_text())
    assert report["n_generated"] == 200 and report["mifid"] == metrics["mifid"]
    assert list(json.loads((repo / "metrics/train.json").read_text())) == [
        "train_time_s",
        "steps",
        "epoch",
        "stopped_on_budget",
    ]
    problems = validate(repo / "submission/images.zip")
    assert len(problems) == 1 and "expected exactly 10,000" in problems[0], problems


def test_status_is_clean_after_repro(repo):
    repo, env = repo
    result = subprocess.run(["dvc", "status", "-q"], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def set_key(path, dotted, value):
    yaml = YAML()
    doc = yaml.load(path)
    *parents, last = dotted.split(".")
    node = doc
    for part in parents:
        node = node[part]
    node[last] = value
    yaml.dump(doc, path)


@pytest.mark.parametrize(
    "key, value, stages",
    [
        ("mlp-mnist.crop.size", 32, {"crop"}),
        ("dcgan-mnist.data.source", "cifar10", {"download"}),
        ("mlp-mnist.augment.flip", True, {"augment"}),
        ("biggan-dogs.train.lr_g", 0.0003, {"train"}),
        ("biggan-dogs.submission.truncation", 0.9, {"submission"}),
    ],
)
def test_a_preset_value_reaches_exactly_the_stages_that_read_it(repo, key, value, stages):
    repo, env = repo
    path = repo / "src/doggan/presets.yaml"
    original = path.read_text()
    set_key(path, key, value)
    try:
        result = subprocess.run(
            ["dvc", "status", "--json"], cwd=repo, env=env, capture_output=True, text=True
        )
        assert set(json.loads(result.stdout)) == stages, result.stdout
    finally:
        path.write_text(original)


def pty_screen(cmd, cwd, env, columns: int) -> str:
    """What `cmd` shows in a terminal `columns` wide: a pseudo-terminal of that size, DVC's pager `cat`."""
    import fcntl
    import pty
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: runs the command on the terminal
        os.chdir(cwd)
        os.execvpe(cmd[0], cmd, dict(env, COLUMNS=str(columns), LINES="50", DVC_PAGER="cat", TERM="xterm"))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    out = bytearray()
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        out.extend(data)
    os.waitpid(pid, 0)
    return out.decode(errors="replace")


def test_a_default_run_records_no_preset_values_and_exp_show_reads_at_200_columns(repo):
    repo, env = repo
    for path in (repo / "reports/params").glob("*.yaml"):
        assert YAML(typ="safe").load(path) == {}, path.name  # the default preset fixes nothing
    screen = re.sub(r"\x1b\[[0-9;]*m", "", pty_screen(["dvc", "exp", "show"], repo, env, columns=200))
    header = next(line for line in screen.splitlines() if "Experiment" in line).split()
    assert "…" not in header
    assert header[:11] == ["Experiment", "Created", *EVAL_METRICS], header
    assert {"train.preset", "train.epochs", "train.lr_g", "train.lr_d"} <= set(header), header


def test_a_queued_train_change_reruns_only_downstream_and_shows_in_exp_show(repo):
    repo, env = repo
    run(["dvc", "exp", "run", "--queue", "-S", "train.epochs=2", "-n", "two-epochs"], repo, env)
    # A queue worker runs it; `--run-all` starts that worker and returns once its result is collected
    # (rather than a `dvc queue status` process every few seconds, each about a second of CPU).
    run(["dvc", "exp", "run", "--run-all"], repo, env, timeout=600)
    status = run(["dvc", "queue", "status"], repo, env)
    assert status.count("Success") == 1, status
    log = run(["dvc", "queue", "logs", "two-epochs"], repo, env)
    ran = {
        s
        for s in ("download", "crop", "augment", "real_stats", "train", "submission", "evaluate")
        if f"Running stage '{s}'" in log
    }
    assert ran == {"train", "submission", "evaluate"}, log
    table = json.loads(run(["dvc", "exp", "show", "--json"], repo, env))
    names = json.dumps(table)
    assert "two-epochs" in names
    assert '"epochs": 2' in names and '"epochs": 1' in names
    assert "mifid" in names
    header = run(["dvc", "exp", "show", "--csv"], repo, env).splitlines()[0].split(",")
    first = header[header.index("mifid") :][:15]
    assert first == [
        *EVAL_METRICS,
        "train_time_s",
        "steps",
        "epoch",
        "stopped_on_budget",
        "train.preset",  # no file prefix: a default run records no preset values beside params.yaml
        "train.epochs",
    ], header


def test_push_then_pull_restores_outputs(repo, tmp_path):
    repo, env = repo
    run(["dvc", "remote", "add", "-f", "-d", "store", str(tmp_path / "remote")], repo, env)
    run(["dvc", "push"], repo, env)
    before = (repo / "submission/images.zip").read_bytes()
    for path in ("data", "models", "submission/images.zip", ".dvc/cache"):
        target = repo / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    run(["dvc", "pull"], repo, env)
    assert (repo / "submission/images.zip").read_bytes() == before
    result = subprocess.run(["dvc", "status", "-q"], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
