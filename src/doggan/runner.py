"""Run one pipeline stage: validate the params, run the stage, record the values it used.

`pipeline/<stage>.py` and `doggan <stage>` both come here. After a stage succeeds, the values its
preset fixed among the params it declares are written to reports/params/<stage>.yaml, which dvc.yaml
lists as top-level params: `dvc exp show` then shows what a preset run really used beside params.yaml.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import time
from types import ModuleType

from ruamel.yaml import YAML

from doggan import params as params_lib
from doggan import presets
from doggan.errors import DogganError
from doggan.files import atomic_path
from doggan.stages import outputs

log = logging.getLogger("doggan")


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
    stage.run(p)
    write_effective(name, p, stage.PARAMS)
    log.info("stage %s: done in %.1f s", name, time.perf_counter() - start)


def setup_logging() -> None:
    """INFO logs with timestamps, TensorFlow's C++ chatter off."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")


def main(stage: ModuleType, argv: list[str] | None = None) -> int:
    """Entry of `python pipeline/<stage>.py [--params FILE]`; a DogganError exits 2 with its message."""
    parser = argparse.ArgumentParser(description=stage.run.__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file (params.yaml)")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        run_stage(stage, args.params)
    except DogganError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
