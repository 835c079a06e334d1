"""Images/s of the default recipe's train step with TensorFlow's oneDNN CPU kernels on and off.

doggan turns them on (src/doggan/__init__.py) because TensorFlow enables them by itself only on CPUs
with AVX-512 VNNI and newer. The variable is read once, when TensorFlow loads, so each setting is
measured in its own child process, one after the other, and the ratio printed.
Run: .venv/bin/python benchmarks/cpu_kernels.py [steps]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(steps: int) -> None:
    """Print the images/s of doggan's train step on the default recipe (run in a fresh process)."""
    sys.path.insert(0, str(HERE))
    import train_step

    recipe = train_step.default_recipe()
    step = train_step.ours(recipe, train_step.images())
    print(f"{train_step.images_per_s(step, recipe.batch_size, steps):.1f}")


def measure(onednn: str, steps: int) -> float:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(steps)], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        child(int(argv[1]))
        return
    steps = int(argv[0]) if argv else 60
    off, on = measure("0", steps), measure("1", steps)
    print(f"default recipe's train step, {steps} timed steps, images/s")
    print(f"oneDNN off: {off:8.1f}")
    print(f"oneDNN on:  {on:8.1f}")
    print(f"ratio on / off: {on / off:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
