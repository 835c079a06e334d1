"""crop: every dog cut out by its box into one crops file, with a report and a preview."""

from __future__ import annotations

from doggan.params import Params
from doggan.stages import outputs

PARAMS = ("crop", "train.preset")


def run(p: Params) -> None:
    """Crop every annotated dog from data/raw into data/crops/crops.npz; report what was skipped."""
    from doggan.crops import crop

    crop.crop_stage(outputs.RAW, p.crop, outputs.CROPS, outputs.CROP_REPORT, outputs.CROP_PREVIEW)
