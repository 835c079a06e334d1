"""The one typed params object: every knob of every stage, validated before any work starts.

`params.yaml` mirrors these sections. Unknown keys, wrong types and out-of-range values fail at
load time with the key's dotted name and what was expected.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from doggan import presets
from doggan.errors import DogganError

log = logging.getLogger("doggan")
Interpolation = Literal["area", "nearest", "linear", "cubic", "lanczos"]
Architecture = Literal["dcgan", "biggan", "fastgan", "mlp", "dcgan-mnist", "dcgan-faces", "dcgan-dogs"]
Range = Annotated[tuple[float, float], Field(strict=False)]
DIFF_OPS = (
    "color",
    "translation",
    "cutout",
)  # DiffAugment's ops (doggan.training.diffaugment), in the order applied


class ParamsError(DogganError):
    """A params file that cannot be used, with one line per problem."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _ordered(name: str, value: tuple[float, float]) -> None:
    if value[0] > value[1]:
        raise ValueError(f"{name} must be [low, high] with low <= high, got {list(value)}")


def split_ops(policy: str) -> tuple[str, ...]:
    """The DiffAugment ops a comma list such as augment.diff names, in the order they are applied."""
    names = {name.strip() for name in policy.split(",") if name.strip()}
    unknown = sorted(names - set(DIFF_OPS))
    if unknown:
        raise ValueError(
            f"unknown DiffAugment op {', '.join(unknown)}; expected a comma list of "
            f"{', '.join(DIFF_OPS)}, or '' (off)"
        )
    return tuple(op for op in DIFF_OPS if op in names)


class DataParams(Section):
    source: Literal["sample", "kaggle", "stanford", "folder", "local", "mnist", "cifar10"] = "sample"
    sample_images: int = Field(300, ge=8, le=100_000)
    max_images: int = Field(0, ge=0)
    sample_seed: int = 0
    competition: str = "generative-dog-images"
    dataset: str = "jessicali9530/stanford-dogs-dataset"
    folder: str = ""
    path: str = ""
    download_dir: str = "data/download"

    @model_validator(mode="after")
    def _folder_needs_path(self) -> DataParams:
        if self.source == "folder" and not self.folder:
            raise ValueError(
                "data.source 'folder' needs data.folder (a folder or zip of images); "
                "presets that train on photos of your own, such as dcgan-faces, set data.source to folder"
            )
        if self.source == "local" and not self.path:
            raise ValueError(
                "data.source 'local' needs data.path (the folder holding all-dogs and Annotation, "
                "as zips or extracted, or Stanford Dogs' images and annotations)"
            )
        return self


class CropParams(Section):
    size: int = Field(64, ge=8, le=512)
    channels: Literal[1, 3] = 3
    margin: float = Field(0.1, ge=0.0, le=1.0)
    interpolation_down: Interpolation = "area"
    interpolation_up: Interpolation = "cubic"
    min_box: int = Field(4, ge=1)
    max_aspect: float = Field(0.0, ge=0.0)
    whole_photos: Literal["none", "pad", "center"] = "none"
    workers: int = Field(0, ge=0)
    preview: int = Field(64, ge=1, le=1024)

    @model_validator(mode="after")
    def _aspect_off_or_at_least_one(self) -> CropParams:
        if 0.0 < self.max_aspect < 1.0:
            raise ValueError(f"crop.max_aspect must be 0 (off) or at least 1, got {self.max_aspect}")
        return self


class AugmentParams(Section):
    diff: str = ""
    flip: bool = True
    brightness: float = Field(0.0, ge=0.0, le=1.0)
    contrast: float = Field(0.0, ge=0.0, le=1.0)
    saturation: float = Field(0.0, ge=0.0, le=1.0)
    hue: float = Field(0.0, ge=0.0, le=0.5)
    translate: float = Field(0.0, ge=0.0, le=0.5)
    ada_target: float = Field(0.0, ge=0.0, lt=1.0)
    ada_kimg: float = Field(500.0, gt=0.0)
    shuffle_buffer: int = Field(4096, ge=1)
    seed: int = 0
    preview: int = Field(64, ge=1, le=1024)

    @field_validator("diff")
    @classmethod
    def _diff_ops(cls, value: str) -> str:
        split_ops(value)
        return value

    @model_validator(mode="after")
    def _ada_needs_ops(self) -> AugmentParams:
        if self.ada_target and not split_ops(self.diff):
            raise ValueError("augment.ada_target adapts how often the augment.diff ops apply: name some ops")
        return self


class TrainParams(Section):
    """Training knobs. `preset` names a recipe whose values `Params` lays over these (doggan.presets)."""

    preset: presets.PresetName = "default"
    architecture: Architecture = "dcgan"
    epochs: int = Field(25, ge=1)
    batch_size: int = Field(16, ge=1)
    z_dim: int = Field(128, ge=1)
    resolution: int = Field(0, ge=0)
    enlarge_real: bool = False
    enlarge_fake: Literal["bilinear", "nearest"] = "bilinear"
    noise: Literal["normal", "uniform"] = "normal"
    g_filters: int = Field(256, ge=8)
    g_upsample: Literal["transpose", "resize"] = "transpose"
    d_filters: int = Field(32, ge=8)
    attention: int = Field(32, ge=0)
    g_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    d_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    init_stddev: float = Field(0.02, ge=0.0)
    use_bias: bool = True
    optimizer: Literal["adam", "rmsprop"] = "adam"
    clipvalue: float = Field(0.0, ge=0.0)
    lr_g: float = Field(2e-4, gt=0.0)
    lr_d: float = Field(2e-4, gt=0.0)
    beta_1: float = Field(0.0, ge=0.0, lt=1.0)
    beta_2: float = Field(0.9, ge=0.0, lt=1.0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    loss: Literal["gan", "hinge", "rasgan", "ralsgan", "rahinge"] = "hinge"
    n_critic: int = Field(1, ge=1)
    spectral_norm: bool = True
    sn_form: Literal["keras", "paper"] = "keras"
    lecam: float = Field(0.0, ge=0.0)
    top_k: float = Field(1.0, gt=0.0, le=1.0)
    top_k_decay: float = Field(0.99, gt=0.0, le=1.0)
    real_label_range: Range = (0.7, 1.0)
    fake_label_range: Range = (0.0, 0.3)
    label_noise: float = Field(0.05, ge=0.0, le=1.0)
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)
    ema_start: int = Field(0, ge=0)
    conditional: bool = False
    mixed_precision: bool = False
    jit_compile: bool = False
    steps_per_call: int = Field(1, ge=1)
    devices: list[str] = Field(default_factory=list)
    seed: int = 0
    deterministic: bool = False
    checkpoint_every: int = Field(100, ge=1)
    resume: bool = False
    time_budget_min: float = Field(0.0, ge=0.0)
    on_nonfinite: Literal["stop", "rollback"] = "stop"
    rollback_lr_factor: float = Field(0.5, gt=0.0, lt=1.0)
    sample_every: int = Field(1, ge=1)
    eval_every: int = Field(5, ge=0)
    keep_best: bool = False
    instance_noise: float = Field(0.0, ge=0.0)
    instance_noise_epochs: int = Field(0, ge=0)
    replay_size: int = Field(0, ge=0)
    replay_every: int = Field(1, ge=1)
    balance_d: float = Field(0.0, ge=0.0)
    balance_g: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _ranges(self) -> TrainParams:
        _ordered("train.real_label_range", self.real_label_range)
        _ordered("train.fake_label_range", self.fake_label_range)
        if self.conditional and self.architecture not in ("dcgan", "biggan"):
            raise ValueError(f"train.architecture {self.architecture!r} has no class-conditional form")
        if self.replay_size and self.replay_size < self.batch_size:
            raise ValueError(
                f"train.replay_size ({self.replay_size}) must hold at least one batch "
                f"(train.batch_size {self.batch_size}), or be 0 (off)"
            )
        if self.enlarge_real and self.enlarge_fake == "nearest":
            raise ValueError(
                "train.enlarge_real and train.enlarge_fake: nearest do not go together: with nearest, D "
                "judges G's drawings themselves against the crops pooled once, so set enlarge_real: false"
            )
        return self


class EvalParams(Section):
    backbone: Literal["auto", "tf2015", "keras_imagenet", "nasnet", "standin"] = "auto"
    protocol: Literal["public", "private", "both"] = "public"
    inception_graph: str = ""
    real: Literal["photos", "crops"] = "photos"
    n_images: int = Field(0, ge=0)
    n_images_train: int = Field(1000, ge=2)
    batch_size: int = Field(100, ge=1)


class SubmissionParams(Section):
    n_images: int = Field(10_000, ge=1)
    seed: int = 0
    batch_size: int = Field(500, ge=1)
    truncation: float = Field(0.0, ge=0.0)
    best_of: int = Field(1, ge=1)
    resize: bool = False
    workers: int = Field(0, ge=0)
    competition: str = "generative-dog-images"


class Params(Section):
    data: DataParams = DataParams()
    crop: CropParams = CropParams()
    augment: AugmentParams = AugmentParams()
    train: TrainParams = TrainParams()
    eval: EvalParams = EvalParams()
    submission: SubmissionParams = SubmissionParams()

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: object) -> object:
        """Lay the values of `train.preset` over the sections before they are validated (the preset wins)."""
        if not isinstance(data, dict):
            return data
        train = data.get("train")
        train = train.model_dump() if isinstance(train, BaseModel) else train
        name = train.get("preset", "default") if isinstance(train, dict) else "default"
        fixed = presets.values(name) if isinstance(name, str) else {}
        merged = dict(data)
        for section, values in fixed.items():
            current = merged.get(section) or {}
            current = current.model_dump() if isinstance(current, BaseModel) else current
            if isinstance(current, dict):
                merged[section] = {**current, **values}
        return merged

    @model_validator(mode="after")
    def _combinations(self) -> Params:
        """Values that pass alone but not together, refused before any stage starts rather than minutes in."""
        crop, train = self.crop, self.train
        if train.resolution and (train.resolution > crop.size or crop.size % train.resolution):
            raise ValueError(
                f"train.resolution {train.resolution} must divide crop.size {crop.size} (G's images are "
                "enlarged to the crop size by a whole factor), or be 0 (train at crop.size)"
            )
        side = train.resolution or crop.size
        problem = drawing_problem(train.architecture, side, train.z_dim)
        if problem:
            at = "train.resolution" if train.resolution else "crop.size"
            raise ValueError(f"train.architecture {train.architecture} cannot draw at {at} {side}: {problem}")
        if train.devices and train.batch_size % len(train.devices):
            raise ValueError(
                f"train.batch_size {train.batch_size} does not split over the {len(train.devices)} "
                f"replicas of train.devices: make it a multiple of {len(train.devices)}"
            )
        if not self.submission.resize and (crop.size, crop.channels) != (64, 3):
            raise ValueError(
                f"crop.size {crop.size} and crop.channels {crop.channels} train a generator of "
                f"{crop.size}×{crop.size}×{crop.channels} images, but Kaggle needs 64×64×3 and "
                "submission.resize is false: set crop.size 64 and crop.channels 3, or submission.resize "
                "true (upsized for scoring)"
            )
        return self


def drawing_problem(architecture: str, side: int, z_dim: int) -> str:
    """Why the networks of `architecture` (doggan.networks) cannot draw images of this side, or ""."""
    if architecture == "mlp":
        return ""
    if architecture in ("dcgan-mnist", "dcgan-faces"):
        return "" if side % 4 == 0 else "its G upsamples twice by 2, so the side must be a multiple of 4"
    if architecture == "fastgan" and (side < 16 or side & (side - 1)):
        return "its G doubles from 4×4 and its D decodes 8×8 and 16×16 maps: the side must be 16, 32, 64, ..."
    if side % 2 or side < 8:
        return "its G doubles the side from a start of 4-7 pixels (or an odd one): it must be even, 8 or more"
    doublings = 0
    while side % 2 == 0 and side > 7:
        side, doublings = side // 2, doublings + 1
    if architecture == "biggan" and z_dim <= doublings:
        return (
            f"train.z_dim {z_dim} is fewer than the {doublings + 1} chunks its G splits z into "
            "(one per block and one more)"
        )
    return ""


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "value_error" and isinstance(error["input"], dict):  # a check across keys
        message = message.removeprefix("Value error, ")
        return f"{key}: {message}" if error["loc"] else message
    return f"{key}: {message} (got {error['input']!r})"


def parse(raw: object, source: str = "params") -> Params:
    """Validate a mapping (as read from YAML) into Params, or raise ParamsError naming each key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = "\n".join(f"  {_describe(e)}" for e in exc.errors())
        raise ParamsError(f"{source}: invalid params\n{lines}") from None


def load(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = YAML(typ="safe").load(path.read_text())
    except YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    params = parse(raw, str(path))
    fixed = presets.values(params.train.preset)
    if fixed:
        keys = ", ".join(f"{section}.{key}" for section, values in fixed.items() for key in values)
        log.info("preset %s fixes %s", params.train.preset, keys)
    return params
