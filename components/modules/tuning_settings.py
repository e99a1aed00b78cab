"""Typed settings of the opt-in hyperparameter search (``tuning:``), and how its values reach the Trainer.

The pipeline config (``pipeline/config/pipeline_config.py``) embeds
:class:`TuningSettings` as ``tuning:``; with ``trials`` above 0 the pipeline adds TFX's
Tuner before the Trainer (``components/tuner/``, user module ``tuner.py`` beside this
file). Each trial trains the Trainer's own two stages with one point of the search
space applied to :class:`TrainerSettings` (:func:`apply_hyperparameters`); the best
point feeds the Trainer, which applies it the same way and records what it took
(:class:`TunedSettings`, ``tuned_settings.json`` in its ModelRun). Nothing here imports
Keras at import time, so the CLI validates a config in milliseconds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer, model_validator

from components.modules.settings import TrainerSettings

Algorithm = Literal["random", "bayesian", "hyperband"]
# The search's objective: the kept stage's validation accuracy (what the Trainer keeps a stage by).
OBJECTIVE = "val_accuracy"
# KerasTuner's own entries in a trial's values (Hyperband: the trial's epochs and bracket).
KERAS_TUNER_PREFIX = "tuner/"
HYPERBAND_EPOCHS = "tuner/epochs"
AUGMENTATION_STRENGTH = "augmentation_strength"
FINE_TUNE_FRACTION = "fine_tune_fraction"


class TrialMetric:
    """What each trial reports besides :data:`OBJECTIVE` (KerasTuner keeps them in the trial's metrics)."""

    HEAD_ONLY = "head_only_val_accuracy"
    FINE_TUNED = "fine_tuned_val_accuracy"
    KEPT_STAGE = "kept_stage"
    SECONDS = "seconds"


# The Trainer's record of the tuned values it trained with, in its ModelRun folder.
TUNED_SETTINGS = "tuned_settings.json"
_OFF = ("none", "off", "false", "")


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Range(_Settings):
    """Where one hyperparameter is searched: ``min..max`` (``log``: on a log scale), or a list of ``values``.

    Written in a config file as ``1e-4..1e-2 log``, ``0..0.5``, ``[0.5, 1, 2]`` or a
    mapping (``{min: 0, max: 0.5}``); shown and saved in the short text form.
    """

    min: float | None = None
    max: float | None = None
    log: bool = False
    values: tuple[float, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _from_text_or_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _parse_range(value)
        if isinstance(value, list | tuple):
            return {"values": tuple(value)}
        if isinstance(value, int | float):
            raise ValueError("write a range MIN..MAX or a list of values (to fix one value, set it under trainer:)")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Range:
        if self.values:
            if self.min is not None or self.max is not None or self.log:
                raise ValueError("give either values or min..max, not both")
            return self
        if self.min is None or self.max is None:
            raise ValueError("give min..max (e.g. 0.1..0.5) or a list of values")
        if not self.min < self.max:
            raise ValueError("min must be below max")
        if self.log and self.min <= 0:
            raise ValueError("a log range needs min > 0")
        return self

    @model_serializer
    def _as_text(self) -> str:
        return str(self)

    def __str__(self) -> str:
        if self.values:
            return ",".join(repr(value) for value in self.values)
        return f"{self.min!r}..{self.max!r}" + (" log" if self.log else "")

    @property
    def ends(self) -> tuple[float, ...]:
        """The extreme values a trial can get: both ends, or every listed value."""
        return self.values or (float(self.min), float(self.max))  # type: ignore[arg-type]


def _parse_range(text: str) -> dict[str, Any]:
    """``1e-4..1e-2 log`` -> min, max, log; ``0.5,1,2`` -> values."""
    words = text.replace(",", " , ").split()
    if ".." in text:
        low, _, high = words[0].partition("..")
        flags = words[1:]
        if flags not in ([], ["log"]) or not low or not high:
            raise ValueError("write MIN..MAX, MIN..MAX log or a list A,B,C")
        return {"min": float(low), "max": float(high), "log": bool(flags)}
    return {"values": tuple(float(word) for word in words if word != ",")}


def _space_field(default: str, description: str, flag: str) -> Any:
    return Field(Range.model_validate(default), description=description, json_schema_extra={"cli_flag": flag})


class SearchSpace(_Settings):
    """Which Trainer settings the trials vary, and over what; ``none`` leaves one at its configured value."""

    stage1_learning_rate: Range | None = _space_field(
        "0.0001..0.01 log", "Search range of trainer.stage1_learning_rate (none: not searched).", "tune-stage1-lr"
    )
    stage2_learning_rate: Range | None = _space_field(
        "1e-06..0.001 log",
        "Search range of trainer.stage2_learning_rate (none: not searched). Not searched without a stage 2, nor "
        "when fine_tune_schedule auto picks it and the depth is not searched.",
        "tune-stage2-lr",
    )
    dropout: Range | None = _space_field(
        "0.0..0.5", "Search range of trainer.dropout (none: not searched).", "tune-dropout"
    )
    fine_tune_fraction: Range | None = _space_field(
        "0.1..1.0",
        "Search range of the fine-tuning depth, trainer.fine_tune_fraction (share of backbone layers unfrozen in "
        "stage 2; a trial that samples it fine-tunes with fine_tune_schedule fraction). none: not searched; "
        "hub:/savedmodel: backbones have no layers to pick.",
        "tune-fine-tune-fraction",
    )
    augmentation_strength: Range | None = _space_field(
        "0.0..2.0",
        "Search range of the augmentation strength: a factor on trainer.augmentation zoom and translation "
        "(0: none, 1: as configured). none: not searched; nothing to scale when both are 0.",
        "tune-augmentation-strength",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _parsed(cls, value: Any, info: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in _OFF):
            return None
        try:
            return Range.model_validate(value)
        except (ValidationError, ValueError) as error:
            problems = error.errors() if isinstance(error, ValidationError) else [{"msg": str(error), "loc": ()}]
            detail = "; ".join(_problem_text(problem) for problem in problems)
            raise ValueError(f"tuning.search_space.{info.field_name}: {detail}. Received: {value!r}") from None


def _problem_text(problem: Mapping[str, Any]) -> str:
    text = str(problem["msg"]).removeprefix("Value error, ")
    if problem.get("type") == "extra_forbidden":
        return f"unknown key {problem['loc'][-1]!r} (a range has min, max, log or values)"
    return text


class TuningSettings(_Settings):
    """The opt-in hyperparameter search: TFX's Tuner with KerasTuner before the Trainer.

    Enabled by presence: a ``tuning:`` section (or any ``--tuning-*``/``--tune-*`` flag)
    runs ``trials`` trials (8 unless given); ``trials: 0`` or ``tuning: none`` turns it off,
    which is the default without a section.
    """

    trials: int = Field(
        8,
        ge=0,
        description="Tuning trials: each trains both stages once with one point of the search space (a tuning: "
        "section or any tuning flag turns tuning on with 8; 0: off, the default without one).",
    )
    algorithm: Algorithm = Field(
        "bayesian",
        description="KerasTuner search: random (RandomSearch), bayesian (BayesianOptimization: random points first, "
        "then a Gaussian process) or hyperband (Hyperband: most trials train fewer epochs).",
    )
    max_minutes: float | None = Field(
        None,
        gt=0,
        description="Time budget of the search in minutes: once it has passed no new trial starts (the running "
        "one finishes); none: the trials alone bound it.",
    )
    search_space: SearchSpace = Field(SearchSpace(), json_schema_extra={"cli_section": "Tuning search space"})

    @model_validator(mode="before")
    @classmethod
    def _presence_turns_it_on(cls, value: Any) -> Any:
        if value is None:  # an empty `tuning:` section
            return {}
        if value is False or (isinstance(value, str) and value.strip().lower() in _OFF):
            return {"trials": 0}
        return value

    @property
    def enabled(self) -> bool:
        """Whether the pipeline has a Tuner."""
        return self.trials > 0

    def searched(self, trainer: TrainerSettings) -> dict[str, Range]:
        """The ranges a trial samples for ``trainer``: the search space less what cannot apply.

        Stage 2 hyperparameters go when there is no stage 2 (``weights: none`` or
        ``stage2_epochs: 0``), the depth with a ``hub:``/``savedmodel:`` backbone, the
        stage 2 learning rate when ``fine_tune_schedule: auto`` chooses it and the depth
        is not searched (trials that sample the depth use ``fraction``), the
        augmentation strength when zoom and translation are both 0.
        """
        space = {name: value for name, value in self.search_space if value is not None}
        if trainer.from_scratch or trainer.stage2_epochs == 0:
            space.pop("stage2_learning_rate", None)
            space.pop(FINE_TUNE_FRACTION, None)
        if trainer.saved_model_backbone:
            space.pop(FINE_TUNE_FRACTION, None)
        elif trainer.fine_tune_schedule == "auto" and FINE_TUNE_FRACTION not in space:
            space.pop("stage2_learning_rate", None)  # auto picks stage 2's rate itself, unless depth is searched
        if not (trainer.augmentation.zoom or trainer.augmentation.translation):
            space.pop(AUGMENTATION_STRENGTH, None)
        return space

    def epochs_per_trial(self, trainer: TrainerSettings) -> int:
        """The most epochs one trial trains: both stages (stage 2 is skipped with ``weights: none``)."""
        return trainer.stage1_epochs + (0 if trainer.from_scratch else trainer.stage2_epochs)

    def check(self, trainer: TrainerSettings) -> None:
        """Raises ValueError, naming the key, if the search is empty or a range reaches a value ``trainer`` refuses."""
        space = self.searched(trainer)
        if not space:
            raise ValueError(
                "tuning.search_space leaves nothing to search for these trainer settings: give a range to at least "
                "one of " + ", ".join(SearchSpace.model_fields) + ", or set tuning.trials 0."
            )
        for name, searched in space.items():
            for value in searched.ends:
                try:
                    apply_hyperparameters(trainer, {name: value})
                except ValueError as error:
                    raise ValueError(f"tuning.search_space.{name} reaches {value!r}, which {error}") from None


class TunerConfig(_Settings):
    """The Tuner's ``custom_config``: the Trainer's settings and the search (``pipeline/graph/pipeline.py``)."""

    trainer: TrainerSettings
    tuning: TuningSettings


class TunedSettings(BaseModel):
    """What the Trainer took from the Tuner's best hyperparameters (``tuned_settings.json`` in its ModelRun).

    Attributes:
      hyperparameters: The best trial's values, by search-space name.
      settings: The Trainer settings they set, by dotted key (``augmentation.zoom``), with their values.
    """

    hyperparameters: dict[str, float]
    settings: dict[str, Any]


def best_values(hyperparameters: Mapping[str, Any] | None) -> dict[str, float]:
    """The search-space values of a KerasTuner ``HyperParameters`` config (the Trainer's ``fn_args.hyperparameters``).

    KerasTuner's own entries (``tuner/epochs``, ...) are left out; None (no Tuner) is no values.
    """
    values = (hyperparameters or {}).get("values", {})
    return {name: float(value) for name, value in values.items() if not name.startswith(KERAS_TUNER_PREFIX)}


def settings_update(trainer: TrainerSettings, values: Mapping[str, float]) -> dict[str, Any]:
    """The Trainer settings that ``values`` set, by dotted key.

    Raises:
      ValueError: For a name that is not in the search space.
    """
    update: dict[str, Any] = {}
    for name, value in values.items():
        if name.startswith(KERAS_TUNER_PREFIX):
            continue
        if name not in SearchSpace.model_fields:
            raise ValueError(
                f"Unknown hyperparameter {name!r}: the search space has {', '.join(SearchSpace.model_fields)}."
            )
        if name == AUGMENTATION_STRENGTH:
            update["augmentation.zoom"] = trainer.augmentation.zoom * value
            update["augmentation.translation"] = trainer.augmentation.translation * value
        elif name == FINE_TUNE_FRACTION:
            update[FINE_TUNE_FRACTION] = value
            update["fine_tune_schedule"] = "fraction"
        else:
            update[name] = value
    return update


def apply_hyperparameters(trainer: TrainerSettings, values: Mapping[str, float]) -> TrainerSettings:
    """``trainer`` with the tuned ``values`` applied (validated as the config is).

    ``augmentation_strength`` scales the configured zoom and translation;
    ``fine_tune_fraction`` also sets ``fine_tune_schedule`` to ``fraction``.

    Raises:
      ValueError: For an unknown name, or a value the Trainer settings refuse (named).
    """
    fields = trainer.model_dump()
    for key, value in settings_update(trainer, values).items():
        parent, _, leaf = key.rpartition(".")
        (fields[parent] if parent else fields)[leaf] = value
    try:
        return TrainerSettings.model_validate(fields)
    except ValidationError as error:
        problems = "; ".join(
            f"trainer.{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}" for problem in error.errors()
        )
        raise ValueError(f"the Trainer settings refuse: {problems}") from None


def trial_epochs(trainer: TrainerSettings, epochs: int) -> TrainerSettings:
    """``trainer`` training ``epochs`` in all (a Hyperband round), split between the stages as configured.

    Stage 1 gets its share rounded, at least 1; stage 2 the rest.
    """
    total = trainer.stage1_epochs + trainer.stage2_epochs
    if epochs >= total:
        return trainer
    stage1 = max(1, min(epochs, math.floor(epochs * trainer.stage1_epochs / total + 0.5)))
    return trainer.model_copy(update={"stage1_epochs": stage1, "stage2_epochs": epochs - stage1})


def write_tuned(record: TunedSettings, model_run_dir: str) -> str:
    """Writes ``tuned_settings.json`` into a Trainer's ModelRun folder; returns its path."""
    from components import typed_files  # TensorFlow: the CLI's config checks stay without it

    return typed_files.write(os.path.join(model_run_dir, TUNED_SETTINGS), record)


def read_tuned(model_run_dir: str) -> TunedSettings | None:
    """The tuned values a Trainer trained with; None when it had no Tuner (or the file is missing)."""
    from components import typed_files

    return typed_files.read(os.path.join(model_run_dir, TUNED_SETTINGS), TunedSettings)
