import re
from pathlib import Path

import pytest

from doggan import params

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
