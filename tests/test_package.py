"""Importing doggan turns TensorFlow's oneDNN CPU kernels on, unless the environment says otherwise."""

import os
import subprocess
import sys

import pytest

PROBE = "import doggan, os, tensorflow; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"


@pytest.mark.parametrize(("given", "seen"), [(None, "1"), ("0", "0")])
def test_onednn_kernels_are_on_unless_the_environment_turns_them_off(given, seen):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"  # the line TensorFlow logs when the kernels are on
    if given is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = given
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == seen
    assert ("oneDNN custom operations are on" in result.stderr) == (seen == "1")
