"""Which recipe learns most in the minutes `make repro` has: each candidate trains on the embedded sample for
the same budget, on several seeds, then draws images scored against the real photos.

The budget is wall clock (`--minutes`, what a user of this CPU gets) or a number of steps (`--steps`, the
same work for every candidate whatever else runs on the machine; rounded up to whole epochs). Each recipe
runs once per seed of `--seeds` (the seed of its weights, noise and data order), and the table shows every
numeric measure `doggan.scoring.evaluation.score_images` returns as its worst and its median over the
seeds: a recipe that draws dogs on one seed only is not a default. Each seed's sample grid is saved to
docs/quality/<recipe>-seed<k>.png and every run's numbers, with the commit it ran at, to
docs/quality/quality.json, where runs of the same budget accumulate over invocations (a recipe and seed
run again replace their entry) and the table shows them all. A budget other than the steps `make repro`
trains adds its own suffix to those names (`-10800steps`, `-3min`).
`--rescore DIR` trains nothing: it scores every generator `--keep` saved in DIR again with the current
backbone, as its run was scored, and puts those measures in place of its run's in the record (`--records`,
default docs/quality), so runs measured before a change of the backbone compare with the runs after it.
Run: .venv/bin/python benchmarks/quality.py [--minutes 3 | --steps 3600] [--seeds 0,1,2] [--backbone standin]
[--keep DIR] [--records DIR] [recipe ...]
     .venv/bin/python benchmarks/quality.py --rescore DIR [--backbone standin] [--records DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from doggan import params  # noqa: E402
from doggan.crops import crop  # noqa: E402
from doggan.crops.file import load_crops  # noqa: E402
from doggan.data import download  # noqa: E402
from doggan.output import critic, sampling  # noqa: E402
from doggan.output.grids import save_grid  # noqa: E402
from doggan.scoring import evaluation  # noqa: E402
from doggan.training import loop  # noqa: E402
from doggan.training.policy import augment_stage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GRIDS = ROOT / "docs" / "quality"
N_SCORED = 2000
GRID_IMAGES = 64  # the images of each saved grid, as the training grid
HIGHER_IS_BETTER = {"precision", "recall", "density", "coverage", "distance", "distance_thresholded"}
RUN_VALUES = ("steps", "epochs", "images_per_s")  # what each run reports beside the measures
NOT_MEASURES = ("recipe", "seed", "commit", "rescored", *RUN_VALUES)
BUDGET_TAG = re.compile(r"-\d+steps$|-\d+(\.\d+)?min$")  # budget_tag's suffixes
TRANS_CUT = {"diff": "translation,cutout"}
ALL_OPS = {"diff": "color,translation,cutout"}
SNGAN = {"loss": "hinge", "spectral_norm": True, "beta_1": 0.0, "beta_2": 0.9}
ADA = {"ada_target": 0.6}
ADA_FAST = {"ada_target": 0.6, "ada_kimg": 100.0}  # p can reach 1 within the 3,600 steps of a run
RESIZE = {"g_upsample": "resize"}
TRANSPOSE = {"conditional": False, "g_upsample": "transpose"}  # as every default before conditional-resize
LECAM = {"lecam": 0.3}
# name → (train overrides, augment overrides), each laid over params.yaml (whose own recipe is "default").
RECIPES = {
    "default": ({}, {}),
    "resize": (RESIZE, {}),
    "diff-translation": ({}, {"diff": "translation"}),
    "diff-color-translation": ({}, {"diff": "color,translation"}),
    "diff-color-translation-cutout": ({}, ALL_OPS),
    "lecam-0.3": (LECAM, {}),
    "ada-0.6": ({}, ADA),
    "ada-0.6-kimg-100": ({}, ADA_FAST),
    "sngan-paper": ({**SNGAN, "sn_form": "paper"}, {}),
    "sngan-keras": (SNGAN, {}),
    "resize-lecam-0.3": ({**RESIZE, **LECAM}, {}),
    "resize-lecam-ada-all-ops": ({**RESIZE, **LECAM}, {**ALL_OPS, **ADA_FAST}),
    "enlarge-real": ({**TRANSPOSE, "enlarge_real": True}, {}),
    "batch-32": ({"batch_size": 32}, {}),
    "batch-32-enlarge-real": ({"batch_size": 32, "enlarge_real": True}, {}),
    "no-diffaug": ({}, {"diff": ""}),
    "lr-2e-4": ({"lr_g": 2e-4, "lr_d": 2e-4}, {}),
    "no-ema": ({"ema_decay": 0.0}, {}),
    "at-64": ({"resolution": 0}, {}),
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
    "fastgan": ({**TRANSPOSE, "architecture": "fastgan"}, {}),
    # Measured against the default before conditional resize blocks (`enlarge-real`), so each names its knobs.
    "conditional": ({**TRANSPOSE, "conditional": True}, {}),
    "unconditional-resize": ({**TRANSPOSE, **RESIZE}, {}),
    "conditional-resize": ({"conditional": True, **RESIZE}, {}),
    "enlarge-fake-nearest": ({**TRANSPOSE, "enlarge_real": False, "enlarge_fake": "nearest"}, {}),
    "at-16": ({**TRANSPOSE, "resolution": 16}, {}),
    "top-k-0.5": ({"top_k": 0.5}, {}),
    "top-k-0.75": ({"top_k": 0.75}, {}),
    "batch-8": ({"batch_size": 8}, {}),  # twice the steps of the default's batch for the same images
    "d-filters-64": ({"d_filters": 64}, {}),
    "cosine": ({"lr_schedule": "cosine"}, {}),  # both rates decayed to 0 over the run
    "ralsgan": ({"loss": "ralsgan"}, {}),  # relativistic average least squares, as 2019's public dog kernels
    "translation-cutout": ({}, TRANS_CUT),  # the default before augment.diff: translation
}
# run when no recipe is named: the default against the options that may make dogs on every seed
CANDIDATES = tuple(list(RECIPES)[:15])


def base_params(backbone: str) -> dict:
    """params.yaml as a mapping, with the sample's data, no MiFID during training and the scores'
    offline `backbone` (eval.backbone)."""
    from ruamel.yaml import YAML

    raw = YAML(typ="safe").load((ROOT / "params.yaml").read_text())
    raw["train"].update(eval_every=0, keep_best=False, sample_every=1000, checkpoint_every=100_000)
    raw["eval"].update(backbone=backbone)
    return raw


def prepare(work: Path, raw: dict) -> dict[str, Path]:
    """Sample photos, crops and real statistics, made once for every recipe."""
    p = params.parse(raw)
    paths = {"raw": work / "raw", "crops": work / "crops.npz", "stats": work / "stats.npz"}
    download.fetch(p.data, paths["raw"])
    crop.crop_stage(paths["raw"], p.crop, paths["crops"], work / "crop.json", work / "crop.png")
    evaluation.real_stats_stage(paths["raw"], paths["crops"], p.eval, paths["stats"])
    return paths


def budget_values(train: dict, minutes: float, steps: int, n_crops: int) -> dict:
    """The train values that set the budget: `steps` rounded up to whole epochs, else `minutes`."""
    if steps:
        return {"epochs": math.ceil(steps / (n_crops // train["batch_size"])), "time_budget_min": 0.0}
    return {"epochs": 10_000, "time_budget_min": minutes}


def budget_tag(budget: dict, raw: dict, n_crops: int) -> str:
    """ "" for the steps `make repro` trains (params.yaml's epochs), else "-<N>steps" or "-<M>min": the
    suffix of the grids' and the json's names, so runs of another budget sit beside the pipeline's."""
    if budget["steps"]:
        pipeline = raw["train"]["epochs"] * (n_crops // raw["train"]["batch_size"])
        return "" if budget["steps"] == pipeline else f"-{budget['steps']}steps"
    return f"-{budget['minutes']:g}min"


def run_recipe(
    name: str,
    seed: int,
    work: Path,
    paths: dict[str, Path],
    raw: dict,
    budget: dict,
    tag: str = "",
    keep: Path | None = None,
) -> dict:
    """Train one recipe on one seed within the budget; score N_SCORED images drawn from its generator. Its
    grid is saved as <name><tag>-seed<seed>.png, its generator in `keep`/<name><tag>-seed<seed> if given."""
    train, augment = RECIPES[name]
    train = {**raw["train"], **train, "seed": seed}
    n_crops = len(load_crops(paths["crops"]).images)
    raw = {**raw, "train": {**train, **budget_values(train, n_crops=n_crops, **budget)}}
    raw["augment"] = {**raw["augment"], **augment}
    p = params.parse(raw)
    out = work / f"{name}-seed{seed}"
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
    measures = score_generator(gen, paths["stats"], p)
    GRIDS.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "plots" / "samples.png", GRIDS / f"{name}{tag}-seed{seed}.png")
    if p.submission.best_of > 1:
        save_best_of_grid(gen, out / "models", p.submission, GRIDS / f"{name}{tag}-seed{seed}-best-of.png")
    if keep:
        shutil.copytree(out / "models", keep / f"{name}{tag}-seed{seed}", dirs_exist_ok=True)
    run = {"steps": summary["steps"], "epochs": summary["epoch"], "images_per_s": summary["images_per_s"]}
    return {"recipe": name, "seed": seed, **measures, **run, "commit": commit()}


def save_best_of_grid(
    gen: sampling.Generator, models: Path, submission: params.SubmissionParams, path: Path
) -> None:
    """64 images as the submission draws them, each the best of `submission.best_of` by the D saved in
    `models` beside `gen`."""
    k, truncation = submission.best_of, submission.truncation
    drawn = critic.draw(gen, models, GRID_IMAGES, k, 0, GRID_IMAGES, truncation, off="submission.best_of: 1")
    save_grid(path, np.concatenate(list(drawn)), scale=2)


def score_generator(gen: sampling.Generator, stats: Path, p: params.Params) -> dict[str, float]:
    """The numeric measures of N_SCORED images drawn from a saved generator (noise seed 1, the submission's
    truncation) against the real statistics: how every run is scored."""
    images = np.concatenate(
        list(sampling.generate(gen, N_SCORED, seed=1, truncation=p.submission.truncation))
    )
    scored = evaluation.score_images(images, stats, p.eval)
    return {k: float(v) for k, v in scored.items() if isinstance(v, numbers.Real) and not isinstance(v, bool)}


def kept_name(name: str) -> tuple[str, str, int] | None:
    """(recipe, budget tag, seed) of a generator folder `--keep` saved, <recipe><tag>-seed<k>; None when the
    name is not one of those or its recipe is unknown."""
    found = re.fullmatch(r"(.+)-seed(\d+)", name)
    if not found:
        return None
    tag = BUDGET_TAG.search(found[1])
    tag = tag[0] if tag else ""
    recipe = found[1][: len(found[1]) - len(tag)]
    return (recipe, tag, int(found[2])) if recipe in RECIPES else None


def rescore(keep: Path, records: Path, backbone: str) -> None:
    """Score each generator kept in `keep` again with the current `backbone`, as `run_recipe` scored it, and
    put the measures in place of its run's in records/quality<tag>.json: its steps, epochs, images/s and
    commit stay, `rescored` names the commit and the scoring code's commit. Print each record's table."""
    raw = base_params(backbone)
    p = params.parse(raw)
    loaded: dict[Path, dict] = {}
    rescored = {"commit": commit(), "scoring": commit("src/doggan/scoring"), "backbone": backbone}
    with tempfile.TemporaryDirectory(prefix="doggan-rescore-") as tmp:
        stats = prepare(Path(tmp), raw)["stats"]
        for folder in sorted(d for d in keep.iterdir() if (d / "generator.keras").is_file()):
            parsed = kept_name(folder.name)
            if parsed is None:
                print(f"{folder.name}: not <recipe><tag>-seed<k> of a known recipe, skipped", flush=True)
                continue
            recipe, tag, seed = parsed
            measures = score_generator(sampling.load_generator(folder), stats, p)
            record = records / f"quality{tag}.json"
            if record not in loaded:
                loaded[record] = json.loads(record.read_text()) if record.is_file() else {"runs": []}
            runs = loaded[record]["runs"]
            run = next((r for r in runs if (r["recipe"], r["seed"]) == (recipe, seed)), None)
            shown = ", ".join(
                f"{k} {measures[k]:.4g}" for k in ("fid", "kid", "precision", "density", "coverage")
            )
            print(f"{folder.name}: {shown}" + ("" if run else f" (no run of it in {record}, not recorded)"))
            if run:
                run.update(measures, rescored=rescored)
    for record, content in loaded.items():
        if content["runs"]:
            record.write_text(json.dumps(content, indent=1) + "\n")
            print(f"\n{record}, {N_SCORED} samples scored ({backbone} backbone)\n")
            print("\n".join(table(content["runs"])))


def worst(key: str, values: list[float]) -> float:
    return min(values) if key in HIGHER_IS_BETTER else max(values)


def table(runs: list[dict]) -> list[str]:
    """The markdown table: one row per recipe, each measure as "worst / median" over its seeds, sorted by
    the worst density, the measure that follows the dogs a person counts most closely (benchmarks/eyes.py);
    measures that no run changes are named once below it."""
    names = list(dict.fromkeys(r["recipe"] for r in runs))
    keys = [k for k in runs[0] if k not in NOT_MEASURES]
    varying = [k for k in keys if len({r.get(k) for r in runs}) > 1]
    rows = []
    for name in names:
        mine = [r for r in runs if r["recipe"] == name]
        cells = {k: (worst(k, [r[k] for r in mine]), float(np.median([r[k] for r in mine]))) for k in varying}
        seeds = ",".join(str(r["seed"]) for r in mine)
        run = {k: float(np.median([r[k] for r in mine])) for k in RUN_VALUES}
        rows.append((name, seeds, cells, run))
    rows.sort(key=lambda row: -row[2].get("density", (0.0, 0.0))[0])
    lines = [
        "| recipe | seeds | "
        + " | ".join(f"{k} (worst / median)" for k in varying)
        + " | steps | epochs | images/s |",
        "|---|---|" + "---|" * (len(varying) + 3),
    ]
    for name, seeds, cells, run in rows:
        measured = " | ".join(f"{cells[k][0]:.3g} / {cells[k][1]:.3g}" for k in varying)
        lines.append(
            f"| {name} | {seeds} | {measured} | {run['steps']:.0f} | {run['epochs']:.0f} | "
            f"{run['images_per_s']:.0f} |"
        )
    constant = [f"{k} {runs[0][k]:.3g}" for k in keys if k not in varying]
    if constant:
        lines += ["", "The same in every run: " + ", ".join(constant)]
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=3.0, help="wall-clock training per run (default 3)")
    budget.add_argument("--steps", type=int, default=0, help="training steps per run instead of minutes")
    parser.add_argument("--seeds", default="0,1,2", help="comma list of train.seed values (default 0,1,2)")
    parser.add_argument("--backbone", default="standin", help="eval.backbone of the scores (default standin)")
    parser.add_argument(
        "--keep", type=Path, help="folder to keep each run's generator in, to sample or score it again later"
    )
    parser.add_argument("--rescore", type=Path, help="train nothing: score the generators kept in DIR again")
    parser.add_argument("--records", type=Path, default=GRIDS, help="folder of the records (docs/quality)")
    parser.add_argument(
        "recipes", nargs="*", help=f"recipes to run (default: the candidates), of: {', '.join(RECIPES)}"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.recipes if name not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.recipes = args.recipes or list(CANDIDATES)
    return args


def kept_runs(path: Path, budget: dict, runs: list[dict]) -> list[dict]:
    """The runs of an earlier quality.json of the same budget that this invocation did not redo, so
    recipes can be measured one invocation at a time; each run names the commit it ran at."""
    if not path.is_file():
        return []
    earlier = json.loads(path.read_text())
    if earlier.get("budget") != budget:
        return []
    redone = {(r["recipe"], r["seed"]) for r in runs}
    return [r for r in earlier["runs"] if (r["recipe"], r["seed"]) not in redone]


def commit(path: str = ".") -> str:
    """The last commit that changed `path` (the checked-out one for the whole tree), with "+" when its files
    have changes: recorded with every run."""
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
    head = git("log", "-1", "--format=%h", "--", path) if path != "." else git("rev-parse", "--short", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", path)
    return (head or "unknown") + ("+" if changed else "")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.rescore:
        rescore(args.rescore, args.records, args.backbone)
        return
    budget = {"minutes": 0.0 if args.steps else args.minutes, "steps": args.steps}
    raw = base_params(args.backbone)
    runs = []
    with tempfile.TemporaryDirectory(prefix="doggan-quality-") as tmp:
        work = Path(tmp)
        paths = prepare(work, raw)
        tag = budget_tag(budget, raw, len(load_crops(paths["crops"]).images))
        for name in args.recipes:
            for seed in args.seeds:
                began = time.perf_counter()
                runs.append(run_recipe(name, seed, work, paths, raw, budget, tag, args.keep))
                print(f"{name} seed {seed}: done in {time.perf_counter() - began:.0f} s", flush=True)
    record = args.records / f"quality{tag}.json"
    runs = kept_runs(record, budget, runs) + runs
    args.records.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"budget": budget, "runs": runs}, indent=1) + "\n")
    spent = f"{args.steps} steps" if args.steps else f"{args.minutes:g} min of training"
    print(f"\n{spent} per run, seeds {args.seeds}; {N_SCORED} samples scored ({args.backbone} backbone)\n")
    print("\n".join(table(runs)))


if __name__ == "__main__":
    main()
