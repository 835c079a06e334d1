"""Which recipe learns most in the minutes `make repro` has: each candidate trains for the same wall-clock
budget on the embedded sample (this CPU), then draws images scored by FID against the real photos.

Prints one row per recipe (FID and MiFID with the evaluator's offline backbone, steps, epochs, images/s)
and saves each recipe's sample grid to docs/quality/<recipe>.png. The table and the winner's grid in the
README come from this script; the default in params.yaml is its winner.
Run: .venv/bin/python benchmarks/quality.py [budget_minutes] [recipe ...]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from doggan import params  # noqa: E402
from doggan.crops import crop  # noqa: E402
from doggan.data import download  # noqa: E402
from doggan.output import sampling  # noqa: E402
from doggan.scoring import evaluation  # noqa: E402
from doggan.training import loop
from doggan.training.policy import augment_stage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GRIDS = ROOT / "docs" / "quality"
N_SCORED = 2000
TRANS_CUT = {"diff": "translation,cutout"}
SNGAN = {"loss": "hinge", "spectral_norm": True, "beta_1": 0.0, "beta_2": 0.9}
# name → (train overrides, augment overrides), each laid over params.yaml (whose own recipe is "default").
RECIPES = {
    "default": ({}, {}),
    "default-no-diffaug": ({}, {"diff": ""}),
    "default-lr-2e-4": ({"lr_g": 2e-4, "lr_d": 2e-4}, {}),
    "default-batch-16": ({"batch_size": 16}, {}),
    "default-no-ema": ({"ema_decay": 0.0}, {}),
    "default-sngan": (SNGAN, {}),
    "default-at-64": ({"resolution": 0}, {}),
    "biggan-16-at-64-diffaug": (
        {
            **SNGAN,
            "architecture": "biggan",
            "resolution": 0,
            "batch_size": 16,
            "g_filters": 16,
            "d_filters": 16,
            "attention": 0,
            "lr_d": 4e-4,
            "lr_g": 1e-4,
        },
        TRANS_CUT,
    ),
}


def base_params() -> dict:
    """params.yaml as a mapping, with the sample's data and no MiFID during training."""
    from ruamel.yaml import YAML

    raw = YAML(typ="safe").load((ROOT / "params.yaml").read_text())
    raw["train"].update(eval_every=0, keep_best=False, sample_every=1000, checkpoint_every=100_000)
    raw["eval"].update(backbone="standin")
    return raw


def prepare(work: Path, raw: dict) -> dict[str, Path]:
    """Sample photos, crops and real statistics, made once for every recipe."""
    p = params.parse(raw)
    paths = {"raw": work / "raw", "crops": work / "crops.npz", "stats": work / "stats.npz"}
    download.fetch(p.data, paths["raw"])
    crop.crop_stage(paths["raw"], p.crop, paths["crops"], work / "crop.json", work / "crop.png")
    evaluation.real_stats_stage(paths["raw"], paths["crops"], p.eval, paths["stats"])
    return paths


def run_recipe(name: str, work: Path, paths: dict[str, Path], raw: dict, budget_min: float) -> dict:
    """Train one recipe for the budget; score N_SCORED images drawn from its generator."""
    train, augment = RECIPES[name]
    raw = {**raw, "train": {**raw["train"], **train, "epochs": 10_000, "time_budget_min": budget_min}}
    raw["augment"] = {**raw["augment"], **augment}
    p = params.parse(raw)
    out = work / name
    policy = out / "policy.json"
    augment_stage(paths["crops"], p.augment, policy, out / "augment.png")
    run_paths = loop.TrainPaths(
        crops=paths["crops"],
        policy=policy,
        real_stats=paths["stats"],
        models=out / "models",
        checkpoints=out / "ckpt",
        live=out / "live",
        plots=out / "plots",
    )
    summary = loop.train_stage(run_paths, p.train, p.eval)
    gen = sampling.load_generator(out / "models")
    images = np.concatenate(
        list(sampling.generate(gen, N_SCORED, seed=1, truncation=p.submission.truncation))
    )
    scored = evaluation.score_images(images, paths["stats"], p.eval)
    GRIDS.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "plots" / "samples.png", GRIDS / f"{name}.png")
    return {
        "recipe": name,
        "fid": scored["fid"],
        "mifid": scored["mifid"],
        "steps": summary["steps"],
        "epochs": summary["epoch"],
        "images_per_s": summary["images_per_s"],
    }


def main(argv: list[str]) -> None:
    budget = float(argv[0]) if argv else 3.0
    names = argv[1:] or list(RECIPES)
    raw = base_params()
    rows = []
    with tempfile.TemporaryDirectory(prefix="doggan-quality-") as tmp:
        work = Path(tmp)
        paths = prepare(work, raw)
        for name in names:
            began = time.perf_counter()
            rows.append(run_recipe(name, work, paths, raw, budget))
            print(f"{name}: done in {time.perf_counter() - began:.0f} s", flush=True)
    print(f"\n{budget:g} min of training per recipe, FID of {N_SCORED} samples (offline backbone)\n")
    print("| recipe | FID | MiFID | steps | epochs | images/s |")
    print("|---|---|---|---|---|---|")
    for row in sorted(rows, key=lambda r: r["fid"]):
        print(
            f"| {row['recipe']} | {row['fid']:.2f} | {row['mifid']:.2f} | {row['steps']} | "
            f"{row['epochs']} | {row['images_per_s']:.0f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
