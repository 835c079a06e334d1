"""Run one pipeline stage: validate the params, run the stage, record the values it used.

`pipeline/<stage>.py` and `doggan <stage>` both come here. After a stage succeeds, the values its
preset fixed among the params it declares are written to reports/params/<stage>.yaml, which dvc.yaml
lists as top-level params: `dvc exp show` then shows what a preset run really used beside params.yaml.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from types import ModuleType

from ruamel.yaml import YAML

from doggan import params as params_lib
from doggan import presets
from doggan.errors import DogganError
from doggan.files import atomic_path, refusal
from doggan.stages import outputs

log = logging.getLogger("doggan")
# The stages that run TensorFlow: each says first what it runs on.
TENSORFLOW_STAGES = ("augment", "real_stats", "train", "submission", "evaluate")


def effective(p: params_lib.Params, keys: tuple[str, ...]) -> dict:
    """The values among `keys` ("section" or "section.key") that the run's preset fixed, by section:
    what this run used beyond params.yaml. A run without a preset records nothing, so that `dvc exp
    show` shows each param once."""
    fixed = presets.values(p.train.preset)
    dumped = p.model_dump(mode="json")
    picked: dict[str, dict] = {}
    for key in keys:
        section, _, name = key.partition(".")
        for field in [name] if name else list(dumped[section]):
            if field in fixed.get(section, {}):
                picked.setdefault(section, {})[field] = dumped[section][field]
    return picked


def write_effective(name: str, p: params_lib.Params, keys: tuple[str, ...]) -> None:
    """reports/params/<name>.yaml: the values its preset fixed among the stage's params, atomically."""
    text = io.StringIO()
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    yaml.dump(effective(p, keys), text)
    with atomic_path(outputs.EFFECTIVE_PARAMS / f"{name}.yaml", suffix=".yaml") as tmp:
        tmp.write_text(text.getvalue())


def run_stage(stage: ModuleType, params_path: str = "params.yaml") -> None:
    """Load and validate `params_path`, run `stage`, then record its effective params."""
    name = stage.__name__.rpartition(".")[2]
    p = params_lib.load(params_path)
    start = time.perf_counter()
    log.info("stage %s: started", name)
    if name in TENSORFLOW_STAGES:
        log.info("stage %s: %s", name, start_tensorflow())
    stage.run(p)
    write_effective(name, p, stage.PARAMS)
    log.info("stage %s: done in %.1f s", name, time.perf_counter() - start)


@contextlib.contextmanager
def held_stderr() -> Iterator[None]:
    """Hold back what is written to file descriptor 2 in the block (C++ libraries write there), and
    show it only if the block fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            held.seek(0)
            os.write(saved, held.read())
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def start_tensorflow() -> str:
    """Import TensorFlow and say in one line what it runs on: the GPUs by name, else the CPU's cores.

    At TF_CPP_MIN_LOG_LEVEL 3 (the stages' default) the lines its libraries log as they load, which that
    level does not reach, are held back too (on a machine without a GPU, a failed CUDA probe among them).
    """
    quiet = os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3"
    with held_stderr() if quiet else contextlib.nullcontext():
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return f"running on CPU ({cores} cores), no GPU"
    names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
    return f"running on {len(gpus)} GPU(s): {', '.join(names)}"


def setup_logging(verbose: bool = False) -> None:
    """INFO logs with timestamps. TensorFlow's C++ start-up messages (among them the failed CUDA probe
    of a machine without a GPU) are hidden unless `verbose` or DOGGAN_VERBOSE=1; a TF_CPP_MIN_LOG_LEVEL
    the user set wins. Must run before TensorFlow is imported."""
    if not (verbose or os.environ.get("DOGGAN_VERBOSE", "") not in ("", "0")):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")


def add_options(parser: argparse.ArgumentParser) -> None:
    """A stage command's options: --params FILE and --verbose."""
    parser.add_argument("--params", default="params.yaml", help="params file (params.yaml)")
    parser.add_argument(
        "--verbose", action="store_true", help="also TensorFlow's start-up messages (or DOGGAN_VERBOSE=1)"
    )


def failure(exc: BaseException) -> str | None:
    """The one-line error for a user's or the machine's fault (a DogganError, a refused write), else None:
    a bug, which keeps its traceback."""
    return str(exc) if isinstance(exc, DogganError) else refusal(exc)


def exit_status(command: Callable[[], int | None]) -> int:
    """Run a command: a user's or the machine's fault is one line on stderr and status 2, Ctrl-C one line
    and 130; a bug keeps its traceback."""
    try:
        return command() or 0
    except (DogganError, OSError) as exc:
        if (message := failure(exc)) is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; every output is whole or absent", file=sys.stderr)
        return 130


def main(stage: ModuleType, argv: list[str] | None = None) -> int:
    """Entry of `python pipeline/<stage>.py [--params FILE] [--verbose]`."""
    parser = argparse.ArgumentParser(description=stage.run.__doc__)
    add_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return exit_status(lambda: run_stage(stage, args.params))
