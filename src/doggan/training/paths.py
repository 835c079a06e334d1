"""The files a training run reads and the folders it writes, shared by the loop and its reporter."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class TrainPaths:
    """What the train stage reads (crops, augmentation policy, real-image statistics for MiFID during
    training, used when the file exists) and the folders it writes."""

    crops: Path
    policy: Path
    real_stats: Path
    models: Path
    checkpoints: Path
    live: Path
    plots: Path

    def outputs_under(self, root: Path) -> TrainPaths:
        """The same inputs, with every output folder moved under `root`."""
        return replace(self, **{f: root / f for f in ("models", "checkpoints", "live", "plots")})
