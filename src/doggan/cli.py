"""`doggan` command line: run any stage, validate a submission, upload it to Kaggle."""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from doggan.runner import add_options, exit_status, run_stage, setup_logging
from doggan.stages import NAMES


def _stage(name: str) -> ModuleType:
    return importlib.import_module(f"doggan.stages.{name}")


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    """The command line's parser. The options of `generate` and `kernel` come from modules that import
    numpy and PIL: when `argv` starts with another command, they get bare entries (only the list of
    commands, which that command never shows, would describe them)."""
    parser = argparse.ArgumentParser(prog="doggan", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in NAMES:
        add_options(sub.add_parser(name, help=_stage(name).run.__doc__.strip()))
    validate = sub.add_parser("validate", help="check a submission zip against Kaggle's rules")
    validate.add_argument("path", nargs="?", default="submission/images.zip")
    submit = sub.add_parser("submit", help="upload submission/images.zip with the Kaggle API")
    submit.add_argument("--path", default="submission/images.zip")
    submit.add_argument("--message", "-m", default=None, help="defaults to commit, exp and MiFID")
    submit.add_argument("--competition", default=None, help="defaults to submission.competition")
    submit.add_argument("--params", default="params.yaml")
    submit.add_argument("--dry-run", action="store_true", help="validate and print, upload nothing")
    submit.add_argument("--kernel", help="OWNER/SLUG: submit that notebook's images.zip (code competitions)")
    submit.add_argument("--version", type=int, help="with --kernel: the notebook version (default: latest)")
    weights = sub.add_parser("weights", help="download Kaggle's Inception graph into the cache ahead of time")
    weights.add_argument("--private", action="store_true", help="also NASNetLarge's ImageNet weights")
    if not argv or argv[0].startswith("-") or argv[0] in ("generate", "kernel"):
        from doggan.output import generate, kernel_runs

        generate.add_parser(sub)
        kernel_runs.add_parser(sub)
    else:
        sub.add_parser("generate")
        sub.add_parser("kernel")
    return parser


def _run(args: argparse.Namespace) -> int:
    from doggan import params as params_lib

    if args.command == "validate":
        from doggan.output.submission import validate

        problems = validate(args.path)
        for problem in problems:
            print(f"{args.path}: {problem}")
        if not problems:
            print(f"{args.path}: valid submission")
        return 1 if problems else 0
    if args.command == "generate":
        from doggan.output.generate import run

        return run(args)
    if args.command == "kernel":
        from doggan.output.kernel_runs import run

        return run(args)
    if args.command == "submit":
        from doggan.output.upload import submit, submit_code

        p = params_lib.load(args.params)
        if args.kernel:
            submit_code(args.kernel, args.competition or p.submission.competition, args.version, args.message)
            return 0
        submit(
            args.path,
            competition=args.competition or p.submission.competition,
            message=args.message,
            dry_run=args.dry_run,
        )
        return 0
    if args.command == "weights":
        from doggan.scoring.weights import prefetch

        for located in prefetch(args.private):
            print(f"{located.path}: {located.source} ({located.url})")
        return 0
    run_stage(_stage(args.command), args.params)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry of the `doggan` command; a DogganError or a write the machine refused exits 2 with one line."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv).parse_args(argv)
    setup_logging(getattr(args, "verbose", False))
    return exit_status(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
