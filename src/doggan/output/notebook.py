"""The notebook `doggan kernel` writes: the whole pipeline run where Kaggle scored the competition.

Kaggle ran each entry's notebook in its own enclosed session (the competition's data mounted read-only
under /kaggle/input, a GPU, 9 hours, no internet) and scored the `images.zip` it left in
/kaggle/working. The notebook installs doggan from an attached wheels dataset, runs the stages on the
mounted data with the params chosen when it was written, trains to a clock that ends before Kaggle's,
and leaves a validated images.zip with the sample grid and the metrics beside it.

It runs the stages directly, `python -m doggan.cli <stage>` in pipeline order, rather than `dvc repro`:
Kaggle's working folder is no git or DVC repository, the wheel carries the library and not dvc.yaml or
pipeline/, and a single run from nothing has no stage to skip, so each stage in order is exactly what
`dvc repro` would run. The DOGGAN_KAGGLE_INPUT, _WORKING and _RUN variables move its folders (tests run
it in a simulated layout); on Kaggle the defaults apply.
"""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

STAGES_BEFORE_TRAIN = ("download", "crop", "augment", "real_stats")

SETUP = '''
def mounted(slug):
    """Where Kaggle mounts an attached source: /kaggle/input/<slug>, else the first such folder below."""
    found = [INPUT / slug, *sorted(INPUT.glob(f"*/{slug}")), *sorted(INPUT.glob(f"*/*/{slug}"))]
    for folder in found:
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"{slug} is not attached to this notebook: no folder of that name under {INPUT}")


def run(*command, cwd=None):
    """Run a command with its output shown here as it comes; stop the notebook when it fails."""
    command = [str(part) for part in command]
    with subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        for line in p.stdout:
            print(line, end="")
    if p.returncode:
        raise subprocess.CalledProcessError(p.returncode, command)


def stage(name):
    """One pipeline stage, as `doggan <stage>` runs it, in the run folder."""
    run(sys.executable, "-m", "doggan.cli", name, "--params", "params.yaml", cwd=RUN)
'''

INSTALL = """\
# doggan and what Kaggle's image lacks, from the wheels dataset: no network (--no-index). doggan itself
# goes in without its dependencies, so that the image's TensorFlow, Keras, NumPy... stay as they are;
# requirements.txt names the packages the image lacks, whose wheels (and theirs) the dataset holds.
WHEELS = mounted(WHEELS_DATASET)
built, here = (WHEELS / "python.txt").read_text().strip(), f"{sys.version_info[0]}.{sys.version_info[1]}"
if built != here:
    print(f"warning: the wheels were built with Python {built}, this is {here}: binary ones may not install")
pip = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", WHEELS]
run(*pip, "--no-deps", "doggan")
if (WHEELS / "requirements.txt").read_text().split():
    run(*pip, "-r", WHEELS / "requirements.txt")
importlib.invalidate_caches()
"""

CHECK = """\
from doggan.output.kernel import unmet_requirements

print("doggan", importlib.metadata.version("doggan"))
for problem in unmet_requirements():
    print("warning:", problem)
"""

PARAMS_CELL = """\
# The competition's data where Kaggle mounts it, and Kaggle's Inception graph if that dataset is attached.
from ruamel.yaml import YAML

yaml = YAML()
yaml.width = 4096  # one line per key, however long the mounted paths
params = yaml.load(PARAMS)
params["data"]["path"] = str(mounted(COMPETITION))
if INCEPTION_DATASET:
    graphs = [*mounted(INCEPTION_DATASET).rglob("classify_image_graph_def.pb")]
    graphs += [*mounted(INCEPTION_DATASET).rglob("inception-2015-12-05.tgz")]
    if not graphs:
        raise FileNotFoundError(f"{INCEPTION_DATASET} holds neither classify_image_graph_def.pb nor its .tgz")
    params["eval"]["inception_graph"] = str(graphs[0])
RUN.mkdir(parents=True, exist_ok=True)
yaml.dump(params, RUN / "params.yaml")
"""

DATA = f"""\
# The stages in pipeline order, as `dvc repro` runs them from nothing (there is no repository here).
for name in {STAGES_BEFORE_TRAIN!r}:
    stage(name)
"""

TRAIN = """\
# Train to a clock: what is left of Kaggle's limit, less what the submission, the evaluation and a margin
# need (RESERVE_MIN), or the params' own budget if that is shorter.
left = LIMIT_MIN - RESERVE_MIN - (time.time() - START) / 60
if left <= 0:
    raise RuntimeError(f"no time left to train: {LIMIT_MIN} min limit, {RESERVE_MIN} min reserved")
chosen = params["train"].get("time_budget_min") or 0
params["train"]["time_budget_min"] = float(round(min(left, chosen) if chosen else left, 1))
yaml.dump(params, RUN / "params.yaml")
print(f"training for at most {params['train']['time_budget_min']} min")
stage("train")
"""

SUBMIT = """\
# The zip Kaggle scores, validated where Kaggle reads it; then the evaluation, whose failure (weights
# missing, say) must not cost the submission.
from doggan.output.submission import N_IMAGES, validate
from doggan.params import load

stage("submission")
WORKING.mkdir(parents=True, exist_ok=True)
shutil.copyfile(RUN / "submission/images.zip", WORKING / "images.zip.tmp")
(WORKING / "images.zip.tmp").replace(WORKING / "images.zip")
n_images = load(RUN / "params.yaml").submission.n_images
problems = validate(WORKING / "images.zip", n_images)
if problems:
    raise RuntimeError("images.zip is not a valid submission:\\n  " + "\\n  ".join(problems))
print(f"{WORKING / 'images.zip'}: valid, {n_images:,} images")
if n_images != N_IMAGES:
    print(f"warning: submission.n_images is {n_images:,}: a test zip, not a Kaggle submission")
try:
    stage("evaluate")
except subprocess.CalledProcessError as error:
    print(f"warning: the evaluation failed ({error}); images.zip is written all the same")
"""

OUTPUTS = """\
# What a person looks at beside images.zip: the params, metrics and reports, grids, the generator.
from IPython.display import Image, display

SHOWN = ["params.yaml", "metrics", "reports", "plots/train/samples.png", "plots/eval"]
SHOWN += ["submission/preview.png", "models/generator.keras", "models/generator.json"]
for name in SHOWN:
    source, target = RUN / name, WORKING / "doggan" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    elif source.is_file():
        shutil.copyfile(source, target)
for name in ("metrics/train.json", "metrics/eval.json"):
    if (RUN / name).is_file():
        print(name, json.dumps(json.loads((RUN / name).read_text()), indent=1))
if (RUN / "plots/train/samples.png").is_file():
    display(Image(filename=str(RUN / "plots/train/samples.png")))
"""


def _python_text(text: str) -> str:
    """`text` as a Python string literal a person can read: raw triple quotes when that is exact."""
    if '"""' in text or text.endswith("\\"):
        return repr(text)
    return 'r"""' + text + '"""'


def settings_cell(settings: dict) -> str:
    """The first cell: standard-library imports, the chosen constants, the folders and the helpers."""
    lines = [
        "# Written by `doggan kernel`. The DOGGAN_KAGGLE_* variables move the folders (tests); on Kaggle,",
        "# the defaults apply.",
        "import importlib",
        "import importlib.metadata",
        "import json",
        "import os",
        "import shutil",
        "import subprocess",
        "import sys",
        "import time",
        "from pathlib import Path",
        "",
        "START = time.time()",
        'INPUT = Path(os.environ.get("DOGGAN_KAGGLE_INPUT", "/kaggle/input"))',
        'WORKING = Path(os.environ.get("DOGGAN_KAGGLE_WORKING", "/kaggle/working"))',
        'RUN = Path(os.environ.get("DOGGAN_KAGGLE_RUN", "/kaggle/temp/doggan"))  # not kept as an output',
    ]
    lines += [f"{name} = {value!r}" for name, value in settings.items()]
    return "\n".join(lines) + "\n" + SETUP


def build(settings: dict, params_yaml: str, title: str) -> nbformat.NotebookNode:
    """The notebook: `settings` become its constants (COMPETITION, WHEELS_DATASET, INCEPTION_DATASET,
    LIMIT_MIN, RESERVE_MIN), `params_yaml` the params it runs with."""
    intro = (
        f"# {title}\n\n"
        "The doggan pipeline on the competition's data: install from the wheels dataset (no internet), "
        "the data stages, training to a clock that ends before Kaggle's limit, then `images.zip` in "
        "/kaggle/working, validated, with the sample grid, the metrics and the generator under `doggan/`."
    )
    cells = [
        new_markdown_cell(intro),
        new_code_cell(settings_cell(settings)),
        new_code_cell(INSTALL),
        new_code_cell(CHECK),
        new_code_cell(f"PARAMS = {_python_text(params_yaml)}\n"),
        new_code_cell(PARAMS_CELL),
        new_code_cell(DATA),
        new_code_cell(TRAIN),
        new_code_cell(SUBMIT),
        new_code_cell(OUTPUTS),
    ]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook = new_notebook(
        cells=cells, metadata={"kernelspec": kernelspec, "language_info": {"name": "python"}}
    )
    nbformat.validate(notebook)
    return notebook
