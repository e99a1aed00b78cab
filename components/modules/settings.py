"""Typed settings of the Transform and Trainer user modules, and the training summary.

This is the one home of every training choice: the backbones and their limits, the
fine-tuning schedules, the augmentation operations, and their defaults. The
pipeline config (``pipeline/config/pipeline_config.py``) embeds :class:`TrainerSettings`; the
pipeline passes it to the Trainer as ``custom_config`` and ``run_fn`` parses it
once with :meth:`TrainerSettings.model_validate`. Nothing here imports Keras, so
the CLI can validate a config (and show ``--help``) in milliseconds.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

WEIGHTS_IMAGENET = "imagenet"
WEIGHTS_NONE = "none"
WEIGHTS_BASE_MODEL = "base_model"
WeightsKind = Literal["imagenet", "none", "base_model", "file"]


@dataclasses.dataclass(frozen=True)
class BackboneInfo:
    """What the config needs to know of a Keras applications backbone.

    Attributes:
      min_size: Smallest input side the architecture accepts.
      has_alpha: Whether it takes a width multiplier ``alpha`` (MobileNets).
    """

    min_size: int = 32
    has_alpha: bool = False


BACKBONES: dict[str, BackboneInfo] = {
    "MobileNetV2": BackboneInfo(has_alpha=True),
    "MobileNetV3Small": BackboneInfo(has_alpha=True),
    "MobileNetV3Large": BackboneInfo(has_alpha=True),
    "EfficientNetB0": BackboneInfo(),
    "EfficientNetB1": BackboneInfo(),
    "EfficientNetB2": BackboneInfo(),
    "EfficientNetB3": BackboneInfo(),
    "ResNet50": BackboneInfo(),
    "ResNet50V2": BackboneInfo(),
    "Xception": BackboneInfo(min_size=71),
    "VGG16": BackboneInfo(),
}
# Backbones outside keras.applications: a TF2 image feature-vector SavedModel (image in,
# [batch, features] out), from TF Hub / Kaggle Models or from a path. See saved_model_backbone.py.
HUB_PREFIX = "hub:"
SAVEDMODEL_PREFIX = "savedmodel:"
# Pixel range a SavedModel backbone expects; the model maps its [0, 255] input to it.
InputRange = Literal["0..1", "0..255", "-1..1"]
DEFAULT_INPUT_RANGE: InputRange = "0..1"  # most TF Hub image models


def is_saved_model_backbone(backbone: str) -> bool:
    """``hub:``/``savedmodel:`` (a SavedModel), not a keras.applications name."""
    return backbone.startswith((HUB_PREFIX, SAVEDMODEL_PREFIX))


FineTuneSchedule = Literal["auto", "top_n", "fraction", "progressive"]
# fine_tune_schedule=auto: the stage 2 candidates it tries by default, a ladder from "a little,
# slowly" (a domain close to the backbone's pretraining) to "all of it, fast" (a distant one);
# depth is a share of the backbone's blocks from the top. See auto_schedule.py.
AUTO_CANDIDATES = ((0.25, 1e-4), (0.5, 3e-4), (1.0, 3e-4), (1.0, 1e-3))
Distribution = Literal["auto", "mirrored", "none"]
Flip = Literal["none", "horizontal", "vertical", "both"]


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AugmentationSettings(_Settings):
    """Random changes to training images (never at validation, test or serving time).

    The default (small zoom and shift) keeps orientation: flips and rotations help
    where a mirrored or turned object is the same class (photos of animals, cells,
    satellite tiles) and hurt where orientation carries meaning (digits, text,
    arrows, many industrial and medical images). ``augmentation: none`` turns all
    of them off.
    """

    flip: Flip = Field(
        "none", description="Random flips: none, horizontal, vertical or both. Hurts orientation-sensitive classes."
    )
    rotation: float = Field(
        0.0, ge=0.0, le=0.5, description="Largest random rotation as a fraction of a full turn (0.1 = ±36°)."
    )
    zoom: float = Field(0.1, ge=0.0, lt=1.0, description="Largest random zoom in or out, as a fraction of the side.")
    translation: float = Field(
        0.1, ge=0.0, lt=1.0, description="Largest random shift, as a fraction of the side (both axes)."
    )
    contrast: float = Field(0.0, ge=0.0, lt=1.0, description="Largest random contrast change (0.2 = ±20%).")
    brightness: float = Field(
        0.0, ge=0.0, le=1.0, description="Largest random brightness change, as a fraction of the pixel range."
    )

    @model_validator(mode="before")
    @classmethod
    def _none_turns_everything_off(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "none":
            return {
                "flip": "none",
                "rotation": 0.0,
                "zoom": 0.0,
                "translation": 0.0,
                "contrast": 0.0,
                "brightness": 0.0,
            }
        return value

    @property
    def enabled(self) -> bool:
        """Whether any operation is on."""
        return self.flip != "none" or any((self.rotation, self.zoom, self.translation, self.contrast, self.brightness))


class AutoCandidateSpec(_Settings):
    """One stage 2 candidate for ``fine_tune_schedule: auto``."""

    depth: float = Field(gt=0.0, le=1.0, description="Share of the backbone's blocks unfrozen from the top.")
    learning_rate: float = Field(gt=0.0, lt=1.0, description="Adam learning rate.")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        """``0.25@1e-4`` (the flag's form) is ``{depth: 0.25, learning_rate: 1e-4}``."""
        if not isinstance(value, str):
            return value
        depth, _, rate = value.partition("@")
        try:
            return {"depth": float(depth), "learning_rate": float(rate)}
        except ValueError:
            raise ValueError(f"auto candidate {value!r}: write DEPTH@LEARNING_RATE, e.g. 0.5@3e-4") from None


class TrainerSettings(_Settings):
    """Everything the Trainer's ``run_fn`` reads."""

    image_size: int = Field(224, ge=32, le=1024, description="Side of the square images the model sees (pixels).")
    backbone: str = Field(
        "MobileNetV2",
        description=f"Keras applications backbone ({', '.join(BACKBONES)}; ImageNet-pretrained), or a TF2 image "
        f"feature-vector SavedModel: {HUB_PREFIX}<TF Hub or Kaggle Models URL> or {SAVEDMODEL_PREFIX}<path or URI>.",
    )
    backbone_input_range: InputRange = Field(
        DEFAULT_INPUT_RANGE,
        description="hub:/savedmodel: backbones: the pixel range the model expects (0..1 for most TF Hub image "
        "models, -1..1, or 0..255); its input size is image_size. keras.applications backbones ignore it.",
    )
    backbone_alpha: float = Field(
        1.0,
        gt=0.0,
        description="Width multiplier of MobileNet backbones; must match the weights file (imagenet: 0.35-1.4).",
    )
    weights: str = Field(
        WEIGHTS_IMAGENET,
        min_length=1,
        description="imagenet, none (train everything from scratch), base_model, or a weights file path/URI; "
        "hub:/savedmodel: backbones bring their own weights (keep imagenet).",
    )
    batch_size: int = Field(32, ge=1, description="Training batch size.")
    stage1_epochs: int = Field(5, ge=1, description="Stage 1: epochs training the new head on the frozen backbone.")
    stage2_epochs: int = Field(5, ge=0, description="Stage 2: epochs fine-tuning the top of the backbone (0: skip).")
    stage1_learning_rate: float = Field(1e-3, gt=0.0, lt=1.0, description="Adam learning rate of stage 1.")
    stage2_learning_rate: float = Field(
        1e-5,
        gt=0.0,
        lt=1.0,
        description="Adam learning rate of stage 2 with fine_tune_schedule top_n, fraction or progressive and "
        "for hub:/savedmodel: backbones (keep it low); auto picks its own from auto_candidates.",
    )
    fine_tune_schedule: FineTuneSchedule = Field(
        "auto",
        description="Stage 2 layers: auto (depth and learning rate chosen on validation within the stage 2 "
        "epochs, from auto_candidates by successive halving), top_n (fine_tune_layers at "
        "stage2_learning_rate), fraction (fine_tune_fraction) or progressive (one more block every "
        "epochs_per_block epochs). hub:/savedmodel: backbones have no layers to pick: all their trainable "
        "variables fine-tune at stage2_learning_rate.",
    )
    auto_candidates: tuple[AutoCandidateSpec, ...] = Field(
        tuple(AutoCandidateSpec(depth=depth, learning_rate=rate) for depth, rate in AUTO_CANDIDATES),
        description="auto: the stage 2 candidates, each DEPTH@LEARNING_RATE (depth: share of the backbone's "
        "blocks from the top, 1.0 = all; or {depth: ..., learning_rate: ...} in a config file). Default: "
        f"{', '.join(f'{depth}@{rate:g}' for depth, rate in AUTO_CANDIDATES)}.",
    )
    fine_tune_layers: int = Field(30, ge=1, description="top_n: backbone layers unfrozen from the top.")
    fine_tune_fraction: float = Field(0.3, gt=0.0, le=1.0, description="fraction: share of backbone layers unfrozen.")
    epochs_per_block: int = Field(2, ge=1, description="progressive: epochs per newly unfrozen block.")
    early_stopping_patience: int = Field(
        0,
        ge=0,
        description="Stop a stage after this many epochs without a better validation accuracy and restore the "
        "best epoch (0: off).",
    )
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="Dropout rate before the classification layer.")
    augmentation: AugmentationSettings = Field(
        AugmentationSettings(), json_schema_extra={"cli_section": "Augmentation"}
    )
    mixed_precision: bool = Field(False, description="mixed_float16 compute on GPUs (the output stays float32).")
    xla: bool = Field(False, description="Compile the training step with XLA.")
    distribution: Distribution = Field(
        "auto", description="auto (MirroredStrategy with several GPUs), mirrored or none."
    )
    top_k: int = Field(5, ge=1, description="Classes serving_default returns per image.")
    seed: int = Field(42, description="Seed of shuffling, augmentation and initialisation.")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        return _checked_backbone(value)

    @field_validator("auto_candidates")
    @classmethod
    def _some_candidate(cls, value: tuple[AutoCandidateSpec, ...]) -> tuple[AutoCandidateSpec, ...]:
        if not value:
            raise ValueError("auto_candidates is empty: give at least one DEPTH@LEARNING_RATE")
        return value

    @model_validator(mode="after")
    def _fits_backbone(self) -> TrainerSettings:
        if self.saved_model_backbone:
            if self.weights_kind != WEIGHTS_IMAGENET:
                raise ValueError(
                    f"weights={self.weights!r} does not apply to backbone {self.backbone}: a SavedModel brings its "
                    "own pretrained weights (leave weights at imagenet). weights none, base_model and weights "
                    "files are for keras.applications backbones."
                )
            return self
        minimum = BACKBONES[self.backbone].min_size
        if self.image_size < minimum:
            raise ValueError(f"{self.backbone} needs image_size >= {minimum}. Received: image_size={self.image_size}")
        return self

    @property
    def saved_model_backbone(self) -> bool:
        """The backbone is a SavedModel (``hub:`` or ``savedmodel:``), not a keras.applications model."""
        return is_saved_model_backbone(self.backbone)

    @property
    def weights_kind(self) -> WeightsKind:
        """``imagenet``, ``none``, ``base_model`` or ``file``."""
        if self.weights in (WEIGHTS_IMAGENET, WEIGHTS_NONE, WEIGHTS_BASE_MODEL):
            return self.weights  # type: ignore[return-value]
        return "file"

    @property
    def from_scratch(self) -> bool:
        """All layers train from random weights (no stage 2)."""
        return self.weights_kind == WEIGHTS_NONE

    def from_scratch_comparison(self) -> TrainerSettings:
        """The same model trained from random weights for as many epochs as both stages."""
        return self.model_copy(
            update={
                "weights": WEIGHTS_NONE,
                "stage1_epochs": self.stage1_epochs + self.stage2_epochs,
                "stage2_epochs": 0,
            }
        )


def _checked_backbone(value: str) -> str:
    """A registered name, ``hub:<http(s) URL>`` or ``savedmodel:<path or URI>``; else one clear line."""
    value = value.strip()
    if value in BACKBONES:
        return value
    for prefix in (HUB_PREFIX, SAVEDMODEL_PREFIX):
        if value.startswith(prefix):
            location = value[len(prefix) :].strip()
            if not location:
                raise ValueError(f"backbone {value!r} names no model: write {prefix}<location>.")
            if prefix == HUB_PREFIX and not location.startswith(("https://", "http://")):
                raise ValueError(
                    f"backbone {value!r}: hub: takes a model URL (https://tfhub.dev/... or "
                    "https://www.kaggle.com/models/...); for a folder use savedmodel:<path>."
                )
            return prefix + location
    raise ValueError(
        f"Unknown backbone. Expected one of {', '.join(BACKBONES)}, {HUB_PREFIX}<URL> or {SAVEDMODEL_PREFIX}<path>. "
        f"Received: backbone={value!r}"
    )


class TransformSettings(_Settings):
    """What the Transform's ``preprocessing_fn`` reads."""

    image_size: int = Field(ge=1)


class StageHistory(BaseModel):
    """Per-epoch metrics of one training stage, as Keras logs them."""

    loss: list[float] = []
    accuracy: list[float] = []
    val_loss: list[float] = []
    val_accuracy: list[float] = []


class PlanStep(BaseModel):
    """One step of the stage 2 schedule: from which layer up, for how many epochs."""

    first_layer: str
    epochs: int


class AutoCandidate(BaseModel):
    """One stage 2 candidate of ``fine_tune_schedule: auto`` and how it did in the rungs."""

    depth: float = Field(description="Share of the backbone's blocks unfrozen from the top.")
    blocks: int = Field(description="Blocks unfrozen from the top.")
    first_layer: str
    first_index: int
    learning_rate: float
    batches_trained: int = 0
    rung_accuracies: list[float] = Field(default_factory=list, description="Validation accuracy after each rung.")
    dropped_at_rung: int | None = None
    chosen: bool = False
    seconds: float = 0.0

    def label(self) -> str:
        """``top 9 blocks (from block_13_expand) at 3e-04``."""
        return f"top {self.blocks} blocks (from {self.first_layer}) at {self.learning_rate:.0e}"


class AutoChoice(BaseModel):
    """What ``fine_tune_schedule: auto`` tried and chose; written in the training summary."""

    candidates: list[AutoCandidate]
    rung_batches: list[int] = Field(description="Batches each surviving candidate trained per rung.")
    final_epochs: int
    final_steps: int

    @property
    def chosen(self) -> AutoCandidate:
        """The winner."""
        return next(candidate for candidate in self.candidates if candidate.chosen)

    def reason(self) -> str:
        """One sentence: what won, on which validation accuracy, against what."""
        chosen = self.chosen
        if not chosen.rung_accuracies:
            return f"{chosen.label()}, the only candidate; it trains {self.final_epochs} epoch(s)"
        others = [candidate for candidate in self.candidates if not candidate.chosen]
        runner_up = max(others, key=lambda c: (len(c.rung_accuracies), c.rung_accuracies[-1]), default=None)
        against = (
            f"; next best {runner_up.label()} at {runner_up.rung_accuracies[-1]:.3f}" if runner_up is not None else ""
        )
        return (
            f"{chosen.label()}: validation accuracy {chosen.rung_accuracies[-1]:.3f} after "
            f"{len(self.rung_batches)} rung(s) of {len(self.candidates)} candidates{against}; it then trains "
            f"{self.final_epochs} epoch(s) of {self.final_steps} batches"
        )


class EpochRow(BaseModel):
    """One epoch of either stage."""

    epoch: int
    stage: int
    loss: float
    accuracy: float
    val_loss: float | None
    val_accuracy: float | None


class Phase:
    """Names of the Trainer's phases in ``TrainingSummary.phase_seconds`` (also the benchmark's)."""

    COUNT = "counting the splits"
    BUILD = "building the model"
    STAGE1 = "stage 1"
    STAGE2 = "stage 2"
    EXPORT = "export"


class TrainingSummary(BaseModel):
    """What one Trainer run did; written as ``training_summary.json`` with the model."""

    class_names: list[str]
    settings: TrainerSettings
    split_sizes: dict[str, int]
    stage1: StageHistory
    stage2: StageHistory | None = None
    stage2_plan: list[PlanStep] = []
    stage2_auto: AutoChoice | None = None
    stage2_trainable_layers: list[str] = []
    head_only_validation_accuracy: float
    fine_tuned_validation_accuracy: float | None = None
    kept_stage: int = 1
    xla: bool = False
    trainable_params: int = 0
    validation_confusion_matrix: list[list[int]] = []
    phase_seconds: dict[str, float] = Field(
        default_factory=dict, description="Wall seconds of each Trainer phase, in the order they ran."
    )

    def epochs(self) -> list[EpochRow]:
        """Both stages epoch by epoch (the one place that joins them)."""
        rows = []
        for stage, history in ((1, self.stage1), (2, self.stage2)):
            if history is None:
                continue
            for index, loss in enumerate(history.loss):
                rows.append(
                    EpochRow(
                        epoch=len(rows) + 1,
                        stage=stage,
                        loss=loss,
                        accuracy=history.accuracy[index],
                        val_loss=_at(history.val_loss, index),
                        val_accuracy=_at(history.val_accuracy, index),
                    )
                )
        return rows

    @property
    def stage1_epochs_run(self) -> int:
        """Epochs stage 1 ran (fewer than configured after early stopping)."""
        return len(self.stage1.loss)

    @property
    def kept_validation_accuracy(self) -> float:
        """Validation accuracy of the stage whose weights were exported."""
        if self.kept_stage == 2 and self.fine_tuned_validation_accuracy is not None:
            return self.fine_tuned_validation_accuracy
        return self.head_only_validation_accuracy


def _at(values: list[float], index: int) -> float | None:
    return values[index] if index < len(values) else None
