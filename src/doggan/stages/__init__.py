"""The pipeline's stages, one module each: `PARAMS` (the params keys it reads, as dvc.yaml declares
them) and `run(params)`, which calls the library and writes the stage's outputs.

Each module imports only what its stage uses, so that its `deps` in dvc.yaml (the module's import
closure inside src/doggan) re-run the stage exactly when code it runs changes. `NAMES` lists them in
pipeline order; `doggan.runner` runs one by name.
"""

NAMES = ("download", "crop", "augment", "real_stats", "train", "submission", "evaluate")
