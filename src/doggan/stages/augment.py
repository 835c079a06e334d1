"""augment: the input pipeline's augmentation policy, resolved for the crops, and its preview."""

from __future__ import annotations

from doggan.params import Params
from doggan.stages import outputs

PARAMS = ("augment", "train.preset")


def run(p: Params) -> None:
    """Write the augmentation policy training will use, previewed through the training pipeline."""
    from doggan.training.policy import augment_stage

    augment_stage(outputs.CROPS, p.augment, outputs.POLICY, outputs.AUGMENT_PREVIEW)
