"""Uploading a submission to Kaggle, validated first, with a message naming what produced it.

The default message names the git commit, the DVC experiment whose results the workspace holds and
the MiFID of the evaluate stage: whatever of these is known.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from pathlib import Path

from doggan.errors import DogganError
from doggan.output.submission import validate

log = logging.getLogger("doggan")

UPLOAD_FAILED = "Could not submit to competition"  # what kaggle's competition_submit returns on failure
OUTPUT_FILE = "images.zip"  # the file a notebook leaves in /kaggle/working for the competition to score


def _git(*args: str) -> str:
    """Output of a read-only git command in the current folder; '' outside a repository."""
    try:
        result = subprocess.run(
            ["git", "--no-optional-locks", *args], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return ""
    return result.stdout.strip()


def _workspace_experiment(repo) -> str | None:
    """The experiment of the HEAD commit whose dvc.lock is the workspace's, unless HEAD's own is.

    `dvc exp run` in the workspace and `dvc exp apply` both leave an experiment's dvc.lock there,
    and its outputs with it; HEAD stays at the experiment's baseline.
    """
    lock = Path(repo.root_dir, "dvc.lock")
    if not lock.is_file():
        return None
    ours = lock.read_bytes()
    in_git = Path(os.path.relpath(repo.root_dir, repo.scm.root_dir), "dvc.lock").as_posix()

    def committed(rev: str) -> bytes | None:
        fs = repo.scm.get_fs(rev)
        return fs.read_bytes(in_git) if fs.isfile(in_git) else None

    for baseline, experiments in repo.experiments.ls().items():
        if committed(baseline) == ours:
            return None
        for name, rev in sorted(experiments):
            if rev and committed(rev) == ours:
                return name
    return None


def experiment_name() -> str | None:
    """The DVC experiment the workspace holds: $DVC_EXP_NAME, which DVC sets for the stages of
    `dvc exp run`, else the experiment of HEAD found through DVC's API; None outside a DVC repo."""
    if os.environ.get("DVC_EXP_NAME"):
        return os.environ["DVC_EXP_NAME"]
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo() as repo:
            return _workspace_experiment(repo)
    except DvcException:  # not a DVC repo, no git, or no commit yet
        return None


def _scores(metrics_path: Path) -> list[str]:
    """'MiFID 55.90 (tf2015)' for each protocol scored in the evaluate stage's metrics."""
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError):
        return []
    first = "private " if metrics.get("protocol") == "private" else ""
    out = []
    for prefix, label in (("", first), ("private_", "private ")):
        if isinstance(metrics.get(f"{prefix}mifid"), (int, float)):
            out.append(
                f"{label}MiFID {metrics[f'{prefix}mifid']:.2f} ({metrics.get(f'{prefix}backbone', '?')})"
            )
    return out


def default_message(metrics_path: Path = Path("metrics/eval.json")) -> str:
    """'doggan 1a2b3c4-dirty, exp lucky-dogs, MiFID 55.90 (tf2015)': whatever of these is known."""
    parts = []
    commit = _git("rev-parse", "--short", "HEAD")
    if commit:
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        parts.append(commit + ("-dirty" if dirty else ""))
    name = experiment_name()
    if name:
        parts.append(f"exp {name}")
    parts += _scores(metrics_path)
    return "doggan " + ", ".join(parts) if parts else "doggan submission"


def submit(
    path: str | Path, competition: str, message: str | None = None, dry_run: bool = False, api=None
) -> str:
    """Validate a submission zip, then upload it with the Kaggle API; returns the message sent.

    `dry_run` validates and prints what would be sent, without touching the network. `api` is a
    Kaggle client (`competition_submit(file_name, message, competition)`); by default an
    authenticated `KaggleApi`.
    """
    path = Path(path)
    problems = validate(path)
    if problems:
        raise DogganError(f"{path}: not uploading an invalid submission\n  " + "\n  ".join(problems))
    message = message or default_message()
    size = path.stat().st_size / 1e6
    if dry_run:
        print(f"dry run: would upload {path} ({size:.1f} MB, valid) to {competition} with message: {message}")
        return message
    if api is None:
        from doggan.data.kaggle_api import authenticate

        api = authenticate()
    log.info("uploading %s (%.1f MB) to %s", path, size, competition)
    try:
        result = api.competition_submit(str(path), message, competition)
    except OSError as exc:  # requests' errors are OSErrors
        from doggan.data.kaggle_api import explain

        if code_only(api, competition, exc):
            raise code_competition(competition) from None
        raise explain(exc, f"upload of {path} to {competition}", competition) from None
    reply = getattr(result, "message", "") or ""
    if reply == UPLOAD_FAILED:
        if code_only(api, competition):
            raise code_competition(competition)
        raise DogganError(f"upload of {path} to {competition} failed: Kaggle answered '{reply}'")
    print(f"submitted {path} to {competition}: {message}" + (f" (Kaggle: {reply})" if reply else ""))
    return message


# --- code competitions: Kaggle scores a notebook's output ---------------------------------------------


def code_only(api, competition: str, exc: Exception | None = None) -> bool:
    """Whether Kaggle refused a file upload because `competition` takes only notebooks' outputs: its
    answer says so, or the competition's listing is marked kernels-submissions-only."""
    response = getattr(exc, "response", None)
    answer = f"{exc} {getattr(response, 'text', '')}".lower() if exc else ""
    if re.search(r"code competition|kernel|notebook", answer):
        return True
    try:
        listed = api.competitions_list(search=competition, category="all")
    except (OSError, ValueError):
        return False
    for found in getattr(listed, "competitions", None) or []:
        if str(getattr(found, "ref", "")).rstrip("/").rpartition("/")[2] == competition:
            return bool(getattr(found, "is_kernels_submissions_only", False))
    return False


def code_competition(competition: str) -> DogganError:
    """What to do instead of uploading a file to a code competition."""
    return DogganError(
        f"{competition} is a code competition: Kaggle scores the {OUTPUT_FILE} a notebook leaves in "
        "its own session, not an uploaded file. Run the pipeline there and submit that notebook's output:\n"
        "  doggan kernel --wheels wheels/ && kaggle datasets create -p wheels/   # once per doggan version\n"
        "  doggan kernel && doggan kernel --push        # the notebook; Kaggle runs it\n"
        "  doggan kernel --status OWNER/SLUG            # until it ends; fetches its outputs\n"
        "  doggan submit --kernel OWNER/SLUG --version N"
    )


def submit_code(
    kernel: str, competition: str, version: int | None = None, message: str | None = None, api=None
) -> str:
    """Submit the images.zip a notebook version wrote (its latest when `version` is None) to a code
    competition, with Kaggle's `competition_submit_code`; returns the message sent."""
    if not re.fullmatch(r"[^/\s]+/[^/\s]+", kernel):
        raise DogganError(f"--kernel {kernel!r}: expected the notebook as OWNER/SLUG")
    which = f"version {version}" if version else "latest version"
    message = message or f"doggan notebook {kernel}, {which}"
    if api is None:
        from doggan.data.kaggle_api import authenticate

        api = authenticate()
    log.info("submitting %s of %s (%s) to %s", OUTPUT_FILE, kernel, which, competition)
    try:
        result = api.competition_submit_code(
            file_name=OUTPUT_FILE,
            message=message,
            competition=competition,
            kernel=kernel,
            kernel_version=version,
        )
    except OSError as exc:
        from doggan.data.kaggle_api import explain

        raise explain(exc, f"submission of {kernel} ({which}) to {competition}", competition) from None
    except ValueError as exc:  # the client's own checks of its arguments
        raise DogganError(f"submission of {kernel} to {competition}: {exc}") from None
    reply = getattr(result, "message", "") or ""
    print(
        f"submitted {OUTPUT_FILE} of {kernel} ({which}) to {competition}: {message}"
        + (f" (Kaggle: {reply})" if reply else "")
    )
    return message
