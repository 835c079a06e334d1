"""How one preset's measures move over a long run: the preset trains on the embedded sample for a wall-clock
budget, scored against the real photos every k epochs during training (fid, kid, precision, recall,
density, coverage, as train/<name> in the run's dvclive series).

k is chosen so that about `--evals` evaluations fall within the budget: a pilot of PILOT_EPOCHS epochs
times an epoch and one evaluation on this machine first (outside the budget). The data, crops and real
statistics are made once, as benchmarks/quality.py makes them (the preset's crop values apply), and the
scores use an offline backbone (`--backbone`, default standin). Written to `--out` (default docs/long_run):
<preset>-measures.png (one panel per measure over training steps), <preset>-samples.png (the run's last
sample grid) and <preset>.json (the series, steps, images/s and the load average at the run's start and
end: the CPU may be shared, and a busy machine reaches fewer steps in the same minutes).
Run: .venv/bin/python benchmarks/long_run.py [--preset biggan-dogs] [--minutes 20] [--evals 8]
[--out docs/long_run] [--backbone standin]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))

from quality import HIGHER_IS_BETTER, ROOT, base_params, prepare  # noqa: E402

from doggan import params, presets  # noqa: E402
from doggan.crops.file import load_crops  # noqa: E402
from doggan.output import sampling  # noqa: E402
from doggan.training import loop, report  # noqa: E402
from doggan.training.policy import augment_stage  # noqa: E402

MEASURES = ("fid", "kid", "precision", "recall", "density", "coverage")
PILOT_EPOCHS = 2  # the first traces and compiles the step; the second is the typical epoch
EPOCHS = 100_000  # more than any preset reaches on the sample in a budget: the budget ends the run
# presets that train on the embedded sample (the others read MNIST or a folder of photos)
SAMPLE_PRESETS = [name for name, p in presets.PRESETS.items() if "source" not in p.values.get("data", {})]


def train(out: Path, paths: dict[str, Path], raw: dict, **values) -> dict:
    """One training run into `out` with `values` over raw's train section; returns its summary."""
    p = params.parse({**raw, "train": {**raw["train"], **values}})
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
    return loop.train_stage(run_paths, p.train, p.eval)


def read_series(live: Path, name: str, steps_per_epoch: int, last_step: int) -> dict[str, list]:
    """A dvclive series as training steps and values; dvclive's step k is epoch k + 1, the run's last
    (maybe partial) epoch ending at `last_step`."""
    path = live / "plots" / "metrics" / "train" / f"{name}.tsv"
    if not path.is_file():
        return {"steps": [], "values": []}
    rows = list(csv.DictReader(path.read_text().splitlines(), delimiter="\t"))
    steps = [min((int(row["step"]) + 1) * steps_per_epoch, last_step) for row in rows]
    return {"steps": steps, "values": [float(row[name]) for row in rows]}


def choose_eval_every(work: Path, paths: dict[str, Path], raw: dict, minutes: float, evals: int) -> dict:
    """Time a pilot's epoch and a warm evaluation, and the epochs between evaluations that fit about `evals`
    of them in the budget."""
    out = work / "pilot"
    summary = train(out, paths, raw, epochs=PILOT_EPOCHS, eval_every=0, time_budget_min=0.0)
    p = params.parse(raw)
    steps_per_epoch = summary["steps"] // PILOT_EPOCHS
    rate = read_series(out / "live", "images_per_s", steps_per_epoch, summary["steps"])["values"][-1]
    epoch_s = steps_per_epoch * p.train.batch_size / rate
    overhead_s = max(summary["train_time_s"] - PILOT_EPOCHS * epoch_s, 0.0)  # set-up and compiling
    gen = sampling.load_generator(out / "models")
    report.score(gen, p.train, p.eval, paths["stats"])  # the first one also loads and traces the backbone
    began = time.perf_counter()
    report.score(gen, p.train, p.eval, paths["stats"])
    eval_s = time.perf_counter() - began
    epochs = (minutes * 60 - overhead_s - evals * eval_s) / epoch_s
    every = max(1, int(epochs // evals))
    print(
        f"pilot: {epoch_s:.1f} s an epoch, {eval_s:.1f} s an evaluation, {overhead_s:.0f} s set-up: "
        f"about {max(epochs, 0):.0f} epochs, evaluated every {every}",
        flush=True,
    )
    if epochs < evals:
        print(f"warning: {evals} evaluations do not fit in {minutes:g} min here; evaluating every epoch")
    return {"epoch_s": epoch_s, "eval_s": eval_s, "overhead_s": overhead_s, "eval_every": every}


def plot(series: dict[str, dict], title: str, last_step: int, path: Path) -> None:
    """One small panel per measure over training steps, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(11, 6), sharex=True)
    for ax, name in zip(axes.flat, MEASURES, strict=True):
        ax.plot(series[name]["steps"], series[name]["values"], marker="o", markersize=3)
        if not series[name]["steps"]:
            ax.text(0.5, 0.5, "no evaluation within the budget", ha="center", transform=ax.transAxes)
        ax.set_title(f"{name} ({'higher' if name in HIGHER_IS_BETTER else 'lower'} is better)", fontsize=10)
        ax.set_xlim(0, last_step)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="biggan-dogs", choices=SAMPLE_PRESETS, help="train.preset")
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-clock training (default 20)")
    parser.add_argument("--evals", type=int, default=8, help="evaluations to fit in the budget (default 8)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "long_run", help="output folder")
    parser.add_argument("--backbone", default="standin", help="eval.backbone of the scores (default standin)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.evals < 1:
        parser.error("--minutes must be positive and --evals at least 1")
    return args


def long_run(args: argparse.Namespace) -> dict:
    """Prepare the sample, run the pilot and the budgeted run; copy the run's last grid to `args.out` and
    return the record of the run (its series of MEASURES by training step)."""
    raw = base_params(args.backbone)
    raw["train"]["preset"] = args.preset
    with tempfile.TemporaryDirectory(prefix="doggan-long-run-") as tmp:
        work = Path(tmp)
        paths = prepare(work, raw)
        pilot = choose_eval_every(work, paths, raw, args.minutes, args.evals)
        every = pilot["eval_every"]
        load_start = os.getloadavg()
        values = {"epochs": EPOCHS, "eval_every": every, "sample_every": every}
        summary = train(work / "run", paths, raw, time_budget_min=args.minutes, **values)
        load_end = os.getloadavg()
        batch_size = params.parse(raw).train.batch_size
        steps_per_epoch = len(load_crops(paths["crops"]).images) // batch_size
        live, steps = work / "run" / "live", summary["steps"]
        series = {name: read_series(live, name, steps_per_epoch, steps) for name in MEASURES}
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copy(work / "run" / "plots" / "samples.png", args.out / f"{args.preset}-samples.png")
    return {
        "preset": args.preset,
        "minutes": args.minutes,
        "backbone": args.backbone,
        "steps": steps,
        "epochs": summary["epoch"],
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "eval_every": every,
        "images_per_s": summary["images_per_s"],
        "train_time_s": summary["train_time_s"],
        "stopped_on_budget": summary["stopped_on_budget"],
        "load_average": {"start": list(load_start), "end": list(load_end)},
        "pilot": pilot,
        "series": series,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    record = long_run(args)
    preset, steps = args.preset, record["steps"]
    title = f"{preset}: {args.minutes:g} min on the embedded sample, {steps} steps, {args.backbone} backbone"
    plot(record["series"], title, steps, args.out / f"{preset}-measures.png")
    (args.out / f"{preset}.json").write_text(json.dumps(record, indent=1) + "\n")
    load = record["load_average"]
    print(
        f"\n{preset}: {steps} steps ({record['epochs']} epochs, {record['images_per_s']:.0f} images/s) in "
        f"{args.minutes:g} min, {len(record['series']['fid']['steps'])} evaluations every "
        f"{record['eval_every']} epochs; load {load['start'][0]:.1f} → {load['end'][0]:.1f}; "
        f"written to {args.out}"
    )


if __name__ == "__main__":
    main()
