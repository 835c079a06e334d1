"""MiFID during training: logged per epoch through dvclive, and the best epoch's generator kept."""

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import prepare, tiny_params, train_paths

from doggan.crops.file import Crops, save_crops
from doggan.output import sampling
from doggan.params import EvalParams
from doggan.scoring.evaluation import real_stats_stage, score_images
from doggan.training import loop

SEED = 3
EVAL = EvalParams(backbone="standin", real="crops", n_images_train=64, batch_size=64)


def with_stats(root):
    """`root` with real-image statistics of its crops."""
    real_stats_stage(root / "no_raw", root / "crops.npz", EVAL, root / "stats.npz")
    return root


@pytest.fixture
def prepared(prepared):
    """The shared crops and policy, with real-image statistics of those crops."""
    return with_stats(prepared)


def train_in(root, **overrides):
    """Train on `root` with tiny settings plus `overrides`, scored against its stats.npz; (out, summary)."""
    summary = loop.train_stage(train_paths(root, "stats.npz"), tiny_params(seed=SEED, **overrides), EVAL)
    return root / "out", summary


@pytest.fixture
def train():
    return train_in


def logged_mifid(live_dir):
    """The train/mifid series dvclive wrote, as (step, value) rows."""
    with open(live_dir / "plots" / "metrics" / "train" / "mifid.tsv") as f:
        return [(int(row["step"]), float(row["mifid"])) for row in csv.DictReader(f, delimiter="\t")]


def saved_generator_mifid(out, root):
    """MiFID of the saved generator's samples, drawn as training draws them."""
    gen = sampling.load_generator(out / "models")
    images = np.concatenate(list(sampling.generate(gen, EVAL.n_images_train, seed=SEED + 2)))
    return score_images(images, root / "stats.npz", EVAL)["mifid"]


def test_eval_every_epoch_logs_mifid_through_dvclive(prepared, train):
    out, summary = train(prepared, epochs=3, eval_every=1)
    series = logged_mifid(out / "live")
    assert [step for step, _ in series] == [0, 1, 2]
    assert all(np.isfinite(value) and value > 0 for _, value in series)
    metrics = json.loads((out / "live" / "metrics.json").read_text())
    assert metrics["train"]["mifid"] == pytest.approx(series[-1][1])
    assert "best_mifid" not in summary
    # Without keep_best the final generator is saved, and the last logged value is its MiFID.
    assert saved_generator_mifid(out, prepared) == pytest.approx(series[-1][1], rel=1e-5)


def test_eval_every_two_epochs_logs_every_other_epoch(prepared, train):
    out, _ = train(prepared, epochs=4, eval_every=2)
    assert [step for step, _ in logged_mifid(out / "live")] == [1, 3]


FAST = dict(lr_g=2e-3, lr_d=2e-3)


def stats_from_epoch_two(root, train):
    """Real statistics made from the samples of an epoch-2 generator of this run: the MiFID series dips
    around there and rises as training moves on, so the last generator is not the best one."""
    out, _ = train(root, epochs=2, **FAST)
    gen = sampling.load_generator(out / "models")
    samples = np.concatenate(list(sampling.generate(gen, EVAL.n_images_train, seed=1)))
    labels = np.zeros(len(samples), np.int32)
    save_crops(root / "epoch2.npz", Crops(samples, labels, labels.astype(str), np.array(["a"])))
    real_stats_stage(root / "no_raw", root / "epoch2.npz", EVAL, root / "stats.npz")


@pytest.fixture(scope="module")
def epoch_two(tmp_path_factory):
    """A prepared folder after `stats_from_epoch_two`, made once for the keep_best tests (one worker runs
    them: they share an xdist group)."""
    root = with_stats(prepare(tmp_path_factory.mktemp("epoch_two")))
    stats_from_epoch_two(root, train_in)
    return root


@pytest.fixture
def dipping(epoch_two, tmp_path):
    """A copy of `epoch_two` for one test: statistics its runs' MiFID series dips towards, then leaves."""
    shutil.copytree(epoch_two, tmp_path, dirs_exist_ok=True)
    return tmp_path


KEEP_BEST = pytest.mark.xdist_group("keep-best")


@KEEP_BEST
def test_keep_best_saves_the_generator_of_the_lowest_mifid_epoch(dipping, train):
    prepared = dipping
    out, summary = train(prepared, epochs=5, eval_every=1, keep_best=True, **FAST)
    values = [value for _, value in logged_mifid(out / "live")]
    assert len(values) == 5
    assert values[-1] > 1.5 * min(values), f"the series should rise after its minimum: {values}"
    assert summary["best_mifid"] == pytest.approx(min(values))
    assert summary["best_epoch"] == int(np.argmin(values)) + 1
    metrics = json.loads((out / "live" / "metrics.json").read_text())
    assert metrics["best_mifid"] == summary["best_mifid"] and metrics["best_epoch"] == summary["best_epoch"]
    assert saved_generator_mifid(out, prepared) == pytest.approx(summary["best_mifid"], rel=1e-5)


@KEEP_BEST
def test_a_resumed_run_keeps_the_best_generator_of_the_epochs_before_it(dipping, train):
    prepared = dipping
    train(prepared, epochs=3, eval_every=1, keep_best=True, **FAST)
    out, summary = train(prepared, epochs=5, eval_every=1, keep_best=True, resume=True, **FAST)
    values = [value for _, value in logged_mifid(out / "live")]
    assert len(values) == 5 and min(values[:3]) < min(values[3:]), values
    assert summary["best_mifid"] == pytest.approx(min(values))
    assert summary["best_epoch"] == int(np.argmin(values)) + 1
    assert saved_generator_mifid(out, prepared) == pytest.approx(summary["best_mifid"], rel=1e-5)
