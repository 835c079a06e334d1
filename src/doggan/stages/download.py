"""download: the chosen data source, normalised to Kaggle's layout in data/raw."""

from __future__ import annotations

from doggan.params import Params
from doggan.stages import outputs

PARAMS = ("data", "train.preset")


def run(p: Params) -> None:
    """Fetch or build the raw archives (all-dogs.zip, Annotation.zip) from data.source."""
    from doggan.data import download

    download.fetch(p.data, outputs.RAW)
