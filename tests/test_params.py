import io
import re
import typing
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from doggan import params, presets

ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_loads_and_covers_every_field():
    p = params.load(ROOT / "params.yaml")
    text = (ROOT / "params.yaml").read_text()
    for section, model in params.Params.model_fields.items():
        for key in model.annotation.model_fields:
            assert re.search(rf"^  {key}:", text, re.M), f"params.yaml lacks {section}.{key}"
    assert p.crop.size == 64


def test_every_key_in_params_yaml_is_documented():
    for line in (ROOT / "params.yaml").read_text().splitlines():
        if line.startswith("  ") and ":" in line:
            assert "#" in line, f"undocumented key: {line.strip()}"


def test_unknown_key_names_the_key(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(params.ParamsError, match=r"train\.epoch: unknown key"):
        params.load(path)


def test_ill_typed_and_out_of_range_values_are_refused(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  batch_size: '64'\n  lr_g: -1\n  resume: 1\n")
    with pytest.raises(params.ParamsError) as err:
        params.load(path)
    message = str(err.value)
    assert str(path) in message
    for key in ("train.batch_size", "train.lr_g", "train.resume"):
        assert key in message


def test_label_ranges_must_be_ordered():
    with pytest.raises(params.ParamsError, match="real_label_range"):
        params.parse({"train": {"real_label_range": [1.0, 0.7]}})


def test_scientific_notation_from_dvc_set_is_a_float(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  lr_g: 1e-4\n")
    assert params.load(path).train.lr_g == pytest.approx(1e-4)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(params.ParamsError, match="not found"):
        params.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(params.ParamsError, match="not valid YAML"):
        params.load(bad)


def test_folder_source_needs_a_folder():
    with pytest.raises(params.ParamsError, match="data.folder"):
        params.parse({"data": {"source": "folder"}})


def test_a_preset_overrides_params_in_every_section_it_names():
    p = params.parse({"train": {"preset": "dcgan-mnist", "lr_d": 0.5, "epochs": 3}, "crop": {"size": 64}})
    assert (p.data.source, p.crop.size, p.crop.channels, p.augment.flip) == ("mnist", 28, 1, False)
    assert (p.train.optimizer, p.train.lr_d, p.train.clipvalue, p.train.noise) == (
        "rmsprop",
        8e-4,
        1.0,
        "uniform",
    )
    assert p.train.epochs == 3 and p.submission.resize
    built = params.Params(train=params.TrainParams(preset="biggan-dogs", epochs=2))
    assert built.train.conditional and built.train.loss == "hinge" and built.train.epochs == 2
    assert built.submission.truncation == 0.8
    assert params.parse({}).train == params.TrainParams()


def test_unknown_preset_is_refused_with_the_allowed_names():
    with pytest.raises(params.ParamsError) as err:
        params.parse({"train": {"preset": "wgan-gp"}})
    message = str(err.value)
    assert "train.preset" in message
    for name in presets.PRESETS:
        assert repr(name) in message


def test_every_preset_is_a_valid_name_and_documented_in_params_yaml():
    assert set(typing.get_args(presets.PresetName)) == set(presets.PRESETS)
    line = next(x for x in (ROOT / "params.yaml").read_text().splitlines() if x.startswith("  preset:"))
    for name in presets.PRESETS:
        assert name in line
        p = params.parse({"train": {"preset": name}, "data": {"folder": "faces/"}})
        for section, values in presets.PRESETS[name].values.items():
            for key, value in values.items():
                assert getattr(getattr(p, section), key) == value, f"{name}: {section}.{key}"


def test_the_faces_preset_needs_a_folder_of_photos():
    with pytest.raises(params.ParamsError, match="data.folder.*dcgan-faces"):
        params.parse({"train": {"preset": "dcgan-faces"}})


def test_the_replay_buffer_must_hold_a_batch():
    with pytest.raises(params.ParamsError, match="replay_size"):
        params.parse({"train": {"batch_size": 16, "replay_size": 8}})
    assert params.parse({"train": {"batch_size": 16, "replay_size": 16}}).train.replay_size == 16


def test_enlarge_real_is_refused_with_nearest_enlarging_of_the_fakes():
    with pytest.raises(params.ParamsError, match="enlarge_real and train.enlarge_fake: nearest"):
        params.parse({"train": {"enlarge_real": True, "enlarge_fake": "nearest"}})
    assert (
        params.parse({"train": {"enlarge_real": False, "enlarge_fake": "nearest"}}).train.enlarge_fake
        == "nearest"
    )


def literal_choices(annotation) -> list:
    """Every value a `Literal` (possibly inside an alias or a union) allows."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [v for arg in typing.get_args(annotation) for v in literal_choices(arg)]


@pytest.mark.parametrize("section", list(params.Params.model_fields))
def test_every_choice_reads_the_same_unquoted_in_yaml_1_1(section):
    """`dvc exp run -S` rewrites params.yaml without quotes; PyYAML (YAML 1.1) then reads `off`, `no` or
    `on` as booleans. Every allowed choice must survive that, and so must params.yaml itself."""
    yaml = pytest.importorskip("yaml")
    model = params.Params.model_fields[section].annotation
    for name, field in model.model_fields.items():
        for choice in literal_choices(field.annotation):
            assert yaml.safe_load(f"{name}: {choice}") == {name: choice}, f"{section}.{name}: {choice}"
    rewritten = io.StringIO()  # as DVC writes params.yaml back: ruamel, YAML 1.2, quotes only if needed
    YAML().dump(YAML(typ="safe").load(ROOT / "params.yaml"), rewritten)
    assert params.parse(yaml.safe_load(rewritten.getvalue())) == params.load(ROOT / "params.yaml")


def yaml_with(tmp_path, **sections) -> Path:
    """params.yaml with some of its values changed: `section={key: value}`."""
    raw = YAML(typ="safe").load(ROOT / "params.yaml")
    for section, values in sections.items():
        raw[section].update(values)
    path = tmp_path / "params.yaml"
    YAML().dump(raw, path)
    return path


@pytest.mark.parametrize(
    "changes, keys",
    [
        ({"train": {"resolution": 48}}, ["train.resolution 48", "crop.size 64"]),
        ({"train": {"resolution": 128}}, ["train.resolution 128", "crop.size 64"]),
        ({"train": {"resolution": 0}, "crop": {"size": 63}, "submission": {"resize": True}},
         ["train.architecture dcgan", "crop.size 63"]),
        ({"train": {"architecture": "dcgan-faces", "resolution": 0, "conditional": False},
          "crop": {"size": 34}},
         ["train.architecture dcgan-faces", "crop.size 34"]),
        ({"train": {"architecture": "biggan", "z_dim": 3}}, ["train.architecture biggan", "train.z_dim 3"]),
        ({"train": {"devices": ["/gpu:0", "/gpu:1", "/gpu:2"], "batch_size": 32}},
         ["train.batch_size 32", "train.devices"]),
        ({"crop": {"size": 32}, "train": {"resolution": 0}}, ["crop.size 32", "submission.resize"]),
        ({"crop": {"channels": 1}}, ["crop.channels 1", "submission.resize"]),
    ],
)  # fmt: skip
def test_values_that_cannot_work_together_fail_at_load_naming_both_keys(tmp_path, changes, keys):
    with pytest.raises(params.ParamsError) as caught:
        params.load(yaml_with(tmp_path, **changes))
    for key in keys:
        assert key in str(caught.value), str(caught.value)
    assert "got {" not in str(caught.value)


def test_a_preset_s_values_are_checked_together_with_params_yaml_s(tmp_path):
    p = params.load(yaml_with(tmp_path, train={"preset": "dcgan-mnist", "resolution": 48}))
    assert (p.crop.size, p.train.resolution) == (28, 0)  # the preset's shape wins, and fits
    with pytest.raises(
        params.ParamsError, match="train.architecture dcgan-mnist cannot draw at crop.size 30"
    ):
        params.parse({"train": {"preset": "default", "architecture": "dcgan-mnist", "resolution": 0},
                      "crop": {"size": 30}, "submission": {"resize": True}})  # fmt: skip


@pytest.mark.parametrize(
    "architecture", ["dcgan", "biggan", "fastgan", "dcgan-dogs", "dcgan-mnist", "dcgan-faces", "mlp"]
)
def test_the_sides_params_accept_are_the_sides_the_networks_draw(architecture):
    from doggan import networks

    for side in (6, 8, 10, 12, 14, 16, 18, 24, 28, 30, 32, 48, 64):
        train = params.TrainParams(architecture=architecture, z_dim=4, g_filters=16, d_filters=8, attention=0)
        refused = params.drawing_problem(architecture, side, train.z_dim)
        try:
            networks.make_generator(train, (side, side, 3))
            networks.make_discriminator(train, (side, side, 3))
            built = ""
        except ValueError as exc:
            built = str(exc)
        assert bool(refused) == bool(built), (
            f"{architecture} at {side}: params say {refused!r}, networks {built!r}"
        )
