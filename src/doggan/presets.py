"""Classic GAN recipes as presets (`presets.yaml` beside this module): each fixes data shape,
architecture, losses and optimizers.

`train.preset` names one; `doggan.params` lays its values over params.yaml (the preset wins) before
validating. The recipes are data, not code, so that DVC tracks each value as a param of exactly the
stages that read its section.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ruamel.yaml import YAML

PRESETS_FILE = Path(__file__).with_name("presets.yaml")
SECTIONS = ("data", "crop", "augment", "train", "eval", "submission")


@dataclass(frozen=True)
class Preset:
    """One recipe: where it comes from and the params it fixes, by section."""

    summary: str
    values: dict[str, dict[str, object]]


def read_presets(path: Path = PRESETS_FILE) -> dict[str, Preset]:
    """The recipes of a presets file; a section that is not a params section is refused."""
    raw = YAML(typ="safe").load(path.read_text())
    found = {}
    for name, body in raw.items():
        unknown = set(body) - {"summary", *SECTIONS}
        if unknown:
            raise ValueError(f"{path}: preset {name}: unknown sections {sorted(unknown)}")
        values = {
            section: {key: tuple(v) if isinstance(v, list) else v for key, v in body[section].items()}
            for section in SECTIONS
            if section in body
        }
        found[name] = Preset(summary=str(body["summary"]), values=values)
    return found


PRESETS = read_presets()
PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]


def values(name: str) -> dict[str, dict[str, object]]:
    """The params a preset fixes, by section; none for a name that is not a preset (validation refuses it)."""
    preset = PRESETS.get(name)
    return preset.values if preset else {}
