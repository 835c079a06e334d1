"""The stage runner: the record each stage leaves of what its run used beyond params.yaml
(reports/params/<stage>.yaml), and its quiet TensorFlow start-up."""

import os

import pytest
import yaml

from doggan import params, runner
from doggan.stages import NAMES


def test_a_preset_run_records_exactly_the_values_its_preset_fixed():
    p = params.parse({"train": {"preset": "mlp-mnist", "epochs": 3}})
    used = runner.effective(p, ("crop", "train.preset", "train.epochs", "train.lr_g"))
    assert used == {"crop": {"size": 28, "channels": 1}, "train": {"lr_g": 0.0002}}


def test_a_default_run_records_nothing():
    p = params.parse({"train": {"epochs": 3}})
    assert runner.effective(p, ("crop", "train", "eval")) == {}


@pytest.mark.parametrize("stage", NAMES)
def test_every_stage_record_of_a_preset_run_is_read_back_alike_by_yaml_1_1(stage, tmp_path, monkeypatch):
    """The record is read by DVC (YAML 1.2) and by users' scripts (PyYAML, YAML 1.1): both must agree."""
    import importlib

    module = importlib.import_module(f"doggan.stages.{stage}")
    monkeypatch.chdir(tmp_path)
    p = params.parse({"train": {"preset": "dcgan-faces"}, "data": {"source": "folder", "folder": "x"}})
    runner.write_effective(stage, p, module.PARAMS)
    record = tmp_path / f"reports/params/{stage}.yaml"
    assert yaml.safe_load(record.read_text()) == runner.effective(p, module.PARAMS)


def test_held_stderr_hides_what_libraries_write_unless_the_block_fails(capfd):
    with runner.held_stderr():
        os.write(2, b"I0000 a library's start-up line\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(ImportError), runner.held_stderr():
        os.write(2, b"E0000 why the import failed\n")
        raise ImportError("no module")
    assert capfd.readouterr().err == "E0000 why the import failed\n"


def test_tensorflow_is_quiet_unless_asked_and_a_level_the_user_set_wins(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv("DOGGAN_VERBOSE", raising=False)
    runner.setup_logging(verbose=True)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    monkeypatch.setenv("DOGGAN_VERBOSE", "1")
    runner.setup_logging()
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    monkeypatch.delenv("DOGGAN_VERBOSE")
    runner.setup_logging()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    runner.setup_logging()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1", "the user's level wins"
