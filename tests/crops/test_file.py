"""Reading crops stays light: the crops file and the input pipeline need none of the crop stage's
decoders (OpenCV), annotation parser (lxml) or process pool."""

import json
import os
import subprocess
import sys

CHECK = """
import json, sys
import doggan.crops.file
light = sorted(m for m in sys.modules if m.split(".")[0] in ("cv2", "lxml") or m == "multiprocessing.pool")
for name in ("cv2", "lxml"):  # Keras imports OpenCV when it can: only a failing import shows who needs it
    sys.modules[name] = None
import doggan.training.policy
stage = sorted(m for m in sys.modules if m.startswith("doggan.") and m.split(".")[1] in {
    "crop", "crop_pool", "photo_crops", "photo_decode", "boxes", "annotations"})
print(json.dumps({"crops_file": light, "data_provider": stage}))
"""


def test_crops_file_and_data_provider_import_no_decoder_parser_or_pool():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = json.loads(result.stdout.strip().splitlines()[-1])
    assert imported == {"crops_file": [], "data_provider": []}
