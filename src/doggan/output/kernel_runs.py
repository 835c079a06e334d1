"""`doggan kernel`: write the Kaggle notebook folder, build its wheels dataset, push it, follow its run.

Pushing saves a new version of the notebook on Kaggle, which runs it in the competition's session; its
status is then polled until the run ends, and its outputs (images.zip, the grid, the metrics, the log)
fetched into a local folder. `doggan submit --kernel` submits that version's images.zip.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from doggan.errors import DogganError
from doggan.output import kernel as kernel_lib

log = logging.getLogger("doggan")

RUNNING = {"queued", "running", "new_script", "cancel_requested"}  # kernels_status before a run ends


def _client(api):
    if api is not None:
        return api
    from doggan.data.kaggle_api import authenticate

    return authenticate()


def kernel_id(folder: str | Path) -> str:
    """The OWNER/SLUG of the kernel folder `doggan kernel` wrote."""
    meta = Path(folder) / "kernel-metadata.json"
    try:
        return json.loads(meta.read_text())["id"]
    except (OSError, ValueError, KeyError):
        raise DogganError(
            f"{meta}: no kernel metadata; write the folder first with `doggan kernel`"
        ) from None


def push(folder: str | Path, api=None) -> int | None:
    """Push the kernel folder with `kernels_push` (Kaggle saves a new version and runs it); returns it."""
    from doggan.data.kaggle_api import explain

    name = kernel_id(folder)
    api = _client(api)
    try:
        result = api.kernels_push(str(folder))
    except ValueError as exc:  # the client's checks of kernel-metadata.json
        raise DogganError(f"{Path(folder) / 'kernel-metadata.json'}: {exc}") from None
    except OSError as exc:
        raise explain(exc, f"push of {name}") from None
    if getattr(result, "error", ""):
        raise DogganError(f"push of {name} failed: Kaggle answered '{result.error}'")
    for what in ("dataset", "competition", "kernel", "model"):
        invalid = getattr(result, f"invalid_{what}_sources", None)
        if invalid:
            log.warning(
                "Kaggle could not attach the %s source(s) %s: the run will not find them", what, invalid
            )
    version = getattr(result, "version_number", None) or None
    print(f"pushed {name}, version {version}: {getattr(result, 'url', '')}")
    print(f"follow it: doggan kernel --status {name}")
    return version


def _status(response) -> tuple[str, str]:
    """(status in lower case, failure message) of a kernels_status answer, an object or a mapping."""
    if isinstance(response, dict):
        status, failure = response.get("status", ""), response.get("failureMessage", "")
    else:
        status, failure = getattr(response, "status", ""), getattr(response, "failure_message", "")
    return str(getattr(status, "name", status)).lower(), failure or ""


def follow(
    kernel: str,
    out: str | Path,
    interval: float = 60.0,
    api=None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll `kernels_status` every `interval` seconds until the run ends, then fetch its outputs into
    `out` with `kernels_output`; returns the final status, an error when the run did not complete."""
    from doggan.data.kaggle_api import explain

    api = _client(api)
    last = None
    try:
        while True:
            status, failure = _status(api.kernels_status(kernel))
            if status != last:
                print(f"{kernel}: {status}" + (f" ({failure})" if failure else ""), flush=True)
                last = status
            if status not in RUNNING:
                break
            sleep(interval)
        Path(out).mkdir(parents=True, exist_ok=True)
        files = api.kernels_output(kernel, path=str(out), force=True, quiet=True)
    except OSError as exc:
        raise explain(exc, f"following {kernel}") from None
    except ValueError as exc:  # the client's checks, e.g. a kernel it may not read
        raise DogganError(f"{kernel}: {exc}") from None
    files = files[0] if isinstance(files, tuple) else files  # (files, page token) since kaggle 1.7
    for path in files or []:
        print(f"  {path}")
    if status != "complete":
        raise DogganError(f"{kernel} ended {status}" + (f": {failure}" if failure else "") + f"; see {out}")
    _check_output(kernel, Path(out))
    return status


def _check_output(kernel: str, out: Path) -> None:
    """Say whether the run left a valid images.zip, and how to submit it."""
    from doggan.output.submission import validate

    zip_path = out / "images.zip"
    if not zip_path.is_file():
        raise DogganError(f"{kernel} completed without an images.zip; its log is in {out}")
    problems = validate(zip_path)
    for problem in problems:
        print(f"{zip_path}: {problem}")
    if not problems:
        print(f"{zip_path}: valid submission; submit it: doggan submit --kernel {kernel} --version N")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The `kernel` subcommand and its options."""
    cmd = sub.add_parser("kernel", help="write, push and follow the Kaggle notebook that runs the pipeline")
    cmd.add_argument("--out", default="kernel", help="the kernel folder (kernel/)")
    act = cmd.add_mutually_exclusive_group()
    act.add_argument("--wheels", metavar="DIR", help="build the wheels dataset the notebook installs from")
    act.add_argument("--push", action="store_true", help="push the kernel folder: Kaggle saves and runs it")
    act.add_argument(
        "--status", nargs="?", const="", metavar="OWNER/SLUG", help="follow a run, then fetch its outputs"
    )
    cmd.add_argument("--owner", help="Kaggle user (default: the credentials' username)")
    cmd.add_argument("--slug", default="doggan", help="the notebook's slug (doggan)")
    cmd.add_argument("--title", default="", help="the notebook's title (default: the slug)")
    cmd.add_argument("--params", default="params.yaml", help="params the notebook runs with (params.yaml)")
    cmd.add_argument("-S", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    cmd.add_argument("--wheels-dataset", default="", help="OWNER/SLUG (default: OWNER/doggan-wheels)")
    cmd.add_argument("--inception-dataset", default="", help="OWNER/SLUG of a dataset with Kaggle's graph")
    cmd.add_argument("--internet", action="store_true", help="let the notebook use the internet (off)")
    cmd.add_argument("--public", action="store_true", help="a public notebook (private by default)")
    cmd.add_argument("--limit-min", type=float, default=kernel_lib.KAGGLE_LIMIT_MIN, help="Kaggle's limit")
    cmd.add_argument(
        "--reserve-min", type=float, default=kernel_lib.RESERVE_MIN, help="minutes kept after training"
    )
    cmd.add_argument("--add", action="append", default=[], metavar="PACKAGE", help="--wheels: one more")
    cmd.add_argument("--no-deps", action="store_true", help="--wheels: doggan's own wheel only")
    cmd.add_argument("--interval", type=float, default=60.0, help="--status: seconds between polls (60)")
    cmd.add_argument("--output", default="kernel-output", help="--status: where outputs go (kernel-output/)")


def _owner(args: argparse.Namespace) -> str:
    from doggan.data.kaggle_api import username

    owner = args.owner or username()
    if not owner:
        raise DogganError("no Kaggle user: pass --owner USER, or set up credentials (KAGGLE_USERNAME)")
    return owner


def run(args: argparse.Namespace) -> int:
    """Carry out `doggan kernel` as its options say."""
    if args.push:
        push(args.out)
    elif args.status is not None:
        follow(args.status or kernel_id(args.out), args.output, args.interval)
    elif args.wheels:
        dataset = args.wheels_dataset or f"{_owner(args)}/doggan-wheels"
        wheels = kernel_lib.build_wheels(args.wheels, dataset, args.add, deps=not args.no_deps)
        print(f"{args.wheels}: {len(wheels)} wheels; upload: kaggle datasets create -p {args.wheels}")
    else:
        spec = kernel_lib.Kernel(
            owner=_owner(args),
            slug=args.slug,
            title=args.title,
            params=Path(args.params),
            overrides=tuple(args.overrides),
            wheels_dataset=args.wheels_dataset,
            inception_dataset=args.inception_dataset,
            internet=args.internet,
            private=not args.public,
            limit_min=args.limit_min,
            reserve_min=args.reserve_min,
        )
        path = kernel_lib.write_kernel(args.out, spec)
        print(f"{path}: notebook of {spec.id}; push it: doggan kernel --push --out {args.out}")
    return 0
