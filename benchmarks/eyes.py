"""Which offline measure agrees with a person: for 64-sample sets whose dogs were counted by eye, each
numeric measure of `doggan.scoring.evaluation.score_images` on the same 64 images, and its rank correlation
(Spearman) with the counts, against the sample's real photos (eval.real: photos, what the pipeline scores
against) and against its crops.

The sets live in docs/quality/eyes: one borderless 8x8 grid of 64-px images per set (`<name>.png`, which a
person can open and count again) and counts.json, the count and the command that drew each set.
`add` tiles a folder of 64 PNGs (`doggan generate --n 64 --out DIR`) into a set with its count.
Run: .venv/bin/python benchmarks/eyes.py [--backbone standin]
     .venv/bin/python benchmarks/eyes.py add NAME DIR --dogs N --made-by "doggan generate ..."
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from quality import HIGHER_IS_BETTER, base_params, prepare  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from doggan import params  # noqa: E402
from doggan.files import atomic_path, write_json  # noqa: E402
from doggan.output.grids import make_grid  # noqa: E402
from doggan.scoring import evaluation  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EYES = ROOT / "docs" / "quality" / "eyes"
SIDE, PER_ROW = 64, 8
SHOWN = ("fid", "kid", "precision", "recall", "density", "coverage")  # the columns of the per-set table


def tile(folder: Path) -> Image.Image:
    """The 64 PNGs of a `doggan generate` folder (0.png ... 63.png), in order, as one borderless grid."""
    files = sorted(folder.glob("*.png"), key=lambda f: int(f.stem))
    if len(files) != PER_ROW**2:
        raise SystemExit(f"{folder}: {len(files)} PNGs, a set holds {PER_ROW**2}")
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    return Image.fromarray(make_grid(images, PER_ROW, pad=0))


def untile(path: Path) -> np.ndarray:
    """A set's grid back as (64, 64, 64, 3) uint8 images."""
    grid = np.asarray(Image.open(path).convert("RGB"))
    rows = grid.reshape(PER_ROW, SIDE, PER_ROW, SIDE, 3).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(rows.reshape(-1, SIDE, SIDE, 3))


def add(name: str, folder: Path, dogs: int, made_by: str) -> None:
    """Save a folder of 64 images as set `name` with its count of dogs."""
    EYES.mkdir(parents=True, exist_ok=True)
    with atomic_path(EYES / f"{name}.png") as tmp:
        tile(folder).save(tmp, format="PNG")
    counts_path = EYES / "counts.json"
    counts = json.loads(counts_path.read_text()) if counts_path.is_file() else {}
    counts[name] = {"dogs": dogs, "of": PER_ROW**2, "made_by": made_by}
    write_json(counts_path, dict(sorted(counts.items())))


def measured(backbone: str, real: str, work: Path, counts: dict) -> dict[str, dict]:
    """Each set's measures against the sample's real statistics of `real` (photos | crops)."""
    raw = base_params(backbone)
    raw["eval"]["real"] = real
    paths = prepare(work / real, raw)
    eval_params = params.parse(raw).eval
    score = evaluation.score_images
    return {name: score(untile(EYES / f"{name}.png"), paths["stats"], eval_params) for name in counts}


def agreement(counts: dict, scores: dict[str, dict]) -> dict[str, float]:
    """Spearman's rho between the eye counts and each numeric measure, signed so that 1 is full agreement
    (a measure where lower is better counts as agreeing when it falls as the dogs rise)."""
    names = sorted(counts)
    dogs = [counts[n]["dogs"] for n in names]
    rho = {}
    for key, value in scores[names[0]].items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or key.endswith(("_k", "_size")):
            continue
        values = [scores[n][key] for n in names]
        if len(set(values)) > 1:
            sign = 1.0 if key in HIGHER_IS_BETTER else -1.0
            rho[key] = round(sign * float(spearmanr(dogs, values)[0]), 2)
    return rho


def report(counts: dict, results: dict[str, dict[str, dict]]) -> None:
    """Markdown: rho per measure and reference, then each set's count and measures."""
    rhos = {real: agreement(counts, scores) for real, scores in results.items()}
    refs = list(results)
    print("| measure | " + " | ".join(f"rho vs {r}" for r in refs) + " |")
    print("|---|" + "---|" * len(refs))
    for key in rhos[refs[0]]:
        print(f"| {key} | " + " | ".join(f"{rhos[r].get(key, float('nan')):.2f}" for r in refs) + " |")
    for real, scores in results.items():
        print(f"\nagainst the {real}:\n\n| set | dogs by eye | " + " | ".join(SHOWN) + " |")
        print("|---|---|" + "---|" * len(SHOWN))
        for name in sorted(counts, key=lambda n: counts[n]["dogs"]):
            cells = " | ".join(f"{scores[name][k]:.3g}" for k in SHOWN)
            print(f"| {name} | {counts[name]['dogs']}/{counts[name]['of']} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="standin", help="eval.backbone of the measures (standin)")
    sub = parser.add_subparsers(dest="command")
    adding = sub.add_parser("add", help="save a folder of 64 PNGs as a set with its count of dogs")
    adding.add_argument("name")
    adding.add_argument("folder", type=Path)
    adding.add_argument("--dogs", type=int, required=True, help="samples a person would call a dog")
    adding.add_argument("--made-by", required=True, help="the command that drew the folder")
    args = parser.parse_args()
    if args.command == "add":
        add(args.name, args.folder, args.dogs, args.made_by)
        return
    counts = json.loads((EYES / "counts.json").read_text())
    with tempfile.TemporaryDirectory() as work:
        results = {real: measured(args.backbone, real, Path(work), counts) for real in ("photos", "crops")}
    report(counts, results)


if __name__ == "__main__":
    main()
