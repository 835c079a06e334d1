"""`doggan` command line: run any stage, validate a submission, upload it to Kaggle."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from doggan.errors import DogganError

log = logging.getLogger("doggan")


def _parser() -> argparse.ArgumentParser:
    from doggan import generate
    from doggan.stages import STAGES

    parser = argparse.ArgumentParser(prog="doggan", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn in STAGES.items():
        stage = sub.add_parser(name, help=(fn.__doc__ or f"run the {name} stage").strip())
        stage.add_argument("--params", default="params.yaml", help="params file (params.yaml)")
    validate = sub.add_parser("validate", help="check a submission zip against Kaggle's rules")
    validate.add_argument("path", nargs="?", default="submission/images.zip")
    submit = sub.add_parser("submit", help="upload submission/images.zip with the Kaggle API")
    submit.add_argument("--path", default="submission/images.zip")
    submit.add_argument("--message", "-m", default=None, help="defaults to commit, exp and MiFID")
    submit.add_argument("--competition", default=None, help="defaults to submission.competition")
    submit.add_argument("--params", default="params.yaml")
    submit.add_argument("--dry-run", action="store_true", help="validate and print, upload nothing")
    generate.add_parser(sub)
    return parser


def _run(args: argparse.Namespace) -> int:
    from doggan import params as params_lib

    if args.command == "validate":
        from doggan.submission import validate

        problems = validate(args.path)
        for problem in problems:
            print(f"{args.path}: {problem}")
        if not problems:
            print(f"{args.path}: valid submission")
        return 1 if problems else 0
    if args.command == "generate":
        from doggan.generate import run

        return run(args)
    if args.command == "submit":
        from doggan.submission import submit

        p = params_lib.load(args.params)
        submit(
            args.path,
            competition=args.competition or p.submission.competition,
            message=args.message,
            dry_run=args.dry_run,
        )
        return 0
    from doggan.stages import STAGES

    p = params_lib.load(args.params)
    start = time.perf_counter()
    log.info("stage %s: started", args.command)
    STAGES[args.command](p)
    log.info("stage %s: done in %.1f s", args.command, time.perf_counter() - start)
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except DogganError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
