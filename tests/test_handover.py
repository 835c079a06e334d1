"""Every file one stage hands to another is checked when read: cut short, altered, or of the wrong shape,
keys or backbone, it is an error naming the file, what is wrong and the command that remakes it."""

import json
import shutil
import zipfile

import numpy as np
import pytest
from conftest import SQUARES, tiny_params, train_paths

from doggan.crops.file import Crops, load_crops, save_crops
from doggan.errors import HandOverError
from doggan.output import critic, sampling
from doggan.output.submission_writer import submission_stage
from doggan.params import AugmentParams, EvalParams, SubmissionParams
from doggan.scoring.evaluation import load_stats, read_submission, real_stats_stage, stored_backbone
from doggan.training import loop
from doggan.training.policy import augment_stage, load_policy

EVAL = EvalParams(backbone="standin", real="crops", n_images_train=32, batch_size=32)
# One xdist group: one worker runs the file, so the module's small real run is made once.
pytestmark = pytest.mark.xdist_group("handover-run")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The hand-over files of a small real run: crops, policy, real statistics, generator, submission."""
    root = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, *SQUARES), np.uint8)
    labels = np.arange(32, dtype=np.int32) % 2
    save_crops(root / "crops.npz", Crops(images, labels, np.arange(32).astype(str), np.array(["a", "b"])))
    augment_stage(root / "crops.npz", AugmentParams(preview=4), root / "policy.json", root / "aug.png")
    real_stats_stage(root / "no_raw", root / "crops.npz", EVAL, root / "stats.npz")
    loop.train_stage(train_paths(root), tiny_params(epochs=1), EvalParams())
    models = root / "out" / "models"
    submission = SubmissionParams(n_images=12, batch_size=12, resize=True, workers=1)
    submission_stage(models, submission, root / "images.zip", root / "preview.png")
    return root


def read_generator(path):
    return sampling.load_generator(path.parent)


def read_critic(path):
    return critic.load_critic(path.parent, sampling.load_generator(path.parent))


# file under the run's folder, the reader given its path, the stage that writes it
FILES = {
    "crops": ("crops.npz", load_crops, "crop"),
    "policy": ("policy.json", load_policy, "augment"),
    "stats": ("stats.npz", load_stats, "real_stats"),
    "generator": ("out/models/generator.keras", read_generator, "train"),
    "generator_meta": ("out/models/generator.json", read_generator, "train"),
    "critic": ("out/models/discriminator.weights.h5", read_critic, "train"),
    "critic_meta": ("out/models/discriminator.json", read_critic, "train"),
    "submission": ("images.zip", read_submission, "submission"),
}


def copy_of(run, tmp_path, name):
    """The run's file `name` copied to a folder of its own (the generator beside its metadata)."""
    source = run / name
    if source.parent.name == "models":
        shutil.copytree(source.parent, tmp_path / "models")
        return tmp_path / "models" / source.name
    shutil.copy(source, tmp_path / source.name)
    return tmp_path / source.name


def cut_short(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def alter(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


def refused(reader, path, stage, problem=""):
    """`reader(path)` fails with a message naming the file, the problem and `dvc repro -f <stage>`."""
    with pytest.raises(HandOverError) as caught:
        reader(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert problem in message and message.endswith(f"`dvc repro -f {stage}`"), message
    return message


@pytest.mark.parametrize("damage", [cut_short, alter], ids=["truncated", "corrupted"])
@pytest.mark.parametrize("kind", FILES)
def test_a_damaged_hand_over_file_is_named_with_the_command_that_remakes_it(run, tmp_path, kind, damage):
    name, reader, stage = FILES[kind]
    path = copy_of(run, tmp_path, name)
    reader(path)  # whole, it reads
    damage(path)
    refused(reader, path, stage)


def test_the_train_stage_names_a_truncated_crops_file(run, tmp_path):
    shutil.copy(run / "crops.npz", tmp_path / "crops.npz")
    shutil.copy(run / "policy.json", tmp_path / "policy.json")
    cut_short(tmp_path / "crops.npz")
    refused(
        lambda _: loop.train_stage(train_paths(tmp_path), tiny_params(), EvalParams()),
        tmp_path / "crops.npz",
        "crop",
    )
    assert not (tmp_path / "out").exists()


def test_crops_of_the_wrong_dtype_shape_or_keys_are_refused(tmp_path):
    path = tmp_path / "crops.npz"
    labels, ids, breeds = np.zeros(4, np.int32), np.arange(4).astype(str), np.array(["a"])
    np.savez(path, images=np.zeros((4, 8, 8, 3), np.float32), labels=labels, ids=ids, breeds=breeds)
    refused(load_crops, path, "crop", "float32")
    np.savez(path, images=np.zeros((4, 8, 6, 3), np.uint8), labels=labels, ids=ids, breeds=breeds)
    refused(load_crops, path, "crop", "square")
    np.savez(path, images=np.zeros((4, 8, 8, 3), np.uint8), labels=labels + 1, ids=ids, breeds=breeds)
    refused(load_crops, path, "crop", "labels outside the 1 breeds")
    np.savez(path, images=np.zeros((4, 8, 8, 3), np.uint8), labels=labels)
    refused(load_crops, path, "crop", "no ids, breeds array")


def test_a_policy_made_for_other_crops_or_without_its_keys_is_refused(run, tmp_path):
    assert load_policy(run / "policy.json", SQUARES) == AugmentParams(preview=4)
    refused(lambda p: load_policy(p, (64, 64, 3)), run / "policy.json", "augment", "(16, 16, 3)")
    record = json.loads((run / "policy.json").read_text())
    del record["image_shape"]
    (tmp_path / "policy.json").write_text(json.dumps(record))
    refused(load_policy, tmp_path / "policy.json", "augment", "image_shape")


def test_generator_metadata_that_does_not_fit_the_model_is_refused(run, tmp_path):
    path = copy_of(run, tmp_path, "out/models/generator.json")
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "z_dim": meta["z_dim"] + 1}))
    refused(read_generator, path.with_name(sampling.GENERATOR_FILE), "train", "generator.json says")
    path.write_text(json.dumps({**meta, "image_shape": "big"}))
    refused(read_generator, path, "train", "not generator metadata")


def test_statistics_with_missing_arrays_or_of_another_backbone_are_refused(run, tmp_path):
    meta, arrays = load_stats(run / "stats.npz")
    sigma = arrays.pop("public_sigma")
    np.savez(tmp_path / "stats.npz", meta=np.array(json.dumps(meta)), **arrays)
    refused(load_stats, tmp_path / "stats.npz", "real_stats", "public_sigma is missing")
    np.savez(tmp_path / "stats.npz", meta=np.array(json.dumps(meta)), public_sigma=sigma[:3, :3], **arrays)
    refused(load_stats, tmp_path / "stats.npz", "real_stats", "public_sigma is float")
    other = EvalParams(backbone="keras_imagenet")
    message = refused(
        lambda p: stored_backbone(meta, "public", other, p),
        run / "stats.npz",
        "real_stats",
        "standin backbone",
    )
    assert "eval.backbone is keras_imagenet" in message


def test_a_submission_entry_that_is_not_a_png_is_refused(run, tmp_path):
    path = tmp_path / "images.zip"
    with zipfile.ZipFile(run / "images.zip") as source, zipfile.ZipFile(path, "w") as zf:
        for name in source.namelist():
            zf.writestr(name, b"not a png" if name == "3.png" else source.read(name))
    refused(read_submission, path, "submission", "UnidentifiedImageError")
