"""The one typed configuration of the pipeline, parsed once at the edge.

Every value that a user may change lives in :class:`PipelineConfig` (pydantic):
defaults, then an optional YAML/JSON file, then CLI flags (``pipeline/cli/options.py``
makes one flag per field, with the field's description as its help and its
``json_schema_extra`` section as its place in ``--help``). The
Trainer's settings are the nested :class:`TrainerSettings` (``trainer:`` in the
file), owned by ``components/modules/settings.py``; the opt-in hyperparameter search is
the nested :class:`TuningSettings` (``tuning:``, ``components/modules/tuning_settings.py``).
Nothing here does I/O at import.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from components.ingest.duplicates import (
    DEFAULT_NEAR_DUPLICATE_DISTANCE,
    MAX_NEAR_DUPLICATE_DISTANCE,
    NEAR_DUPLICATES_OFF,
)
from components.ingest.splits import DEFAULT_TEST_PERCENT, DEFAULT_VALIDATION_PERCENT, SplitPercents
from components.modules.settings import WEIGHTS_BASE_MODEL, TrainerSettings
from components.modules.tuning_settings import TuningSettings
from components.serving.tflite import TfliteVariant

PIPELINE_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,127}$"
Runner = Literal["local", "beam"]
UserCode = Literal["wheel", "installed"]
# Sections of `image-pipeline run --help`: each field names the one its flag is listed under.
_DATA = {"cli_section": "Data and splits"}
_GATE = {"cli_section": "Gate and serving"}
_TRANSFER = {"cli_section": "Comparison and transfer"}
_RUNTIME = {"cli_section": "Pipeline and runtime"}
# Keys of earlier versions, with where their value goes now.
_MOVED_KEYS = {
    "eval_percent": "validation_percent and test_percent (the Trainer selects on validation, the gate judges on test)",
    "augment": "trainer.augmentation (e.g. 'augmentation: none', or per operation: flip, rotation, zoom, ...)",
}


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


class PipelineConfig(BaseModel):
    """All user-facing settings of one pipeline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_root: str = Field(
        min_length=1, description="Folder (or URI) with one sub-folder of images per class.", json_schema_extra=_DATA
    )
    pipeline_name: str = Field(
        "image-transfer",
        pattern=PIPELINE_NAME_PATTERN,
        description="Name of the pipeline in MLMD and Kubeflow ([a-z0-9][a-z0-9-]*).",
        json_schema_extra=_RUNTIME,
    )
    pipeline_root: str = Field(
        "tfx_root",
        description="Where TFX writes artifacts, MLMD (metadata.sqlite) and logs.",
        json_schema_extra=_RUNTIME,
    )
    serving_dir: str = Field(
        "serving", description="Base directory of the TF Serving model repository.", json_schema_extra=_GATE
    )
    model_name: str = Field(
        "image_classifier",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Blessed models are pushed to <serving_dir>/<model_name>/<version>/.",
        json_schema_extra=_GATE,
    )
    keep_versions: int = Field(
        5, ge=0, description="Pushed versions kept in the serving directory (0: all).", json_schema_extra=_GATE
    )
    input_pattern: str = Field(
        "*/*",
        description="Glob of the class folders' files, relative to data_root; "
        "span-{SPAN:4}/*/* reads the newest span-NNNN folder.",
        json_schema_extra=_DATA,
    )
    span: int | None = Field(
        None, ge=0, description="With {SPAN} in input_pattern: read this span, not the newest.", json_schema_extra=_DATA
    )
    validation_percent: int = Field(
        DEFAULT_VALIDATION_PERCENT,
        description="Percent of each class in the validation split (early stopping, choosing the stage).",
        json_schema_extra=_DATA,
    )
    test_percent: int = Field(
        DEFAULT_TEST_PERCENT,
        description="Percent of each class in the test split, read only by the Evaluator.",
        json_schema_extra=_DATA,
    )
    max_pixels: int = Field(
        50_000_000,
        ge=1,
        description="Images with more pixels are rejected before decoding (decoding bombs); "
        "Pillow also refuses any image over 178 million pixels.",
        json_schema_extra=_DATA,
    )
    min_side: int = Field(
        8, ge=1, description="Images with a shorter side are rejected at ingest.", json_schema_extra=_DATA
    )
    near_duplicate_distance: int = Field(
        DEFAULT_NEAR_DUPLICATE_DISTANCE,
        ge=NEAR_DUPLICATES_OFF,
        le=MAX_NEAR_DUPLICATE_DISTANCE,
        description="Images whose perceptual hashes differ in at most this many of 64 bits (and whose 8x8 "
        "thumbnails match) are copies (resized, re-encoded): one group, one split; copies under two classes "
        "are rejected as label conflicts. -1: near duplicates off (exact duplicates are always grouped).",
        json_schema_extra=_DATA,
    )
    compare_from_scratch: bool = Field(
        False,
        description="Also train the same model from scratch (its own Trainer) and compare on test: "
        "flags negative transfer.",
        json_schema_extra=_TRANSFER,
    )
    base_model: str = Field(
        "",
        description="With weights=base_model: URI of an earlier run's Model artifact whose backbone to transfer.",
        json_schema_extra=_TRANSFER,
    )
    min_accuracy: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="The gate: test accuracy at or above this (default: no fixed bound; above_majority_class "
        "still applies).",
        json_schema_extra=_GATE,
    )
    above_majority_class: bool = Field(
        True,
        description="The gate: bless only if the test accuracy's 95% interval lies above the majority-class rate "
        "(the share of the test split's most frequent class: what always answering it scores); false: "
        "min_accuracy and max_accuracy_drop alone.",
        json_schema_extra=_GATE,
    )
    max_accuracy_drop: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="The gate: at most this much below the served model (its stable label, else its newest version).",
        json_schema_extra=_GATE,
    )
    allow_class_changes: bool = Field(
        False,
        description="Push a blessed model whose classes differ from the served model's (default: hold it back).",
        json_schema_extra=_GATE,
    )
    allow_data_shift: bool = Field(
        False,
        description="Push a blessed model even when the served model scores far below its own push-time accuracy "
        "on this run's test images (their 95% intervals do not overlap: the data or labels changed); "
        "default: hold it back.",
        json_schema_extra=_GATE,
    )
    tflite: TfliteVariant = Field(
        "float32",
        description="On-device copy written into each pushed version: model.tflite and labels.txt. float32, "
        "float16 (half the size) or dynamic (int8 weights, a third to a quarter); none: no TFLite file.",
        json_schema_extra=_GATE,
    )
    runner: Runner = Field(
        "local", description="local (LocalDagRunner) or beam (BeamDagRunner).", json_schema_extra=_RUNTIME
    )
    beam_args: tuple[str, ...] = Field(
        (),
        description="Extra Beam pipeline flags, e.g. --direct_num_workers=2.",
        json_schema_extra={**_RUNTIME, "cli_flag": "beam-arg"},  # repeatable: one flag per Beam flag
    )
    enable_cache: bool = Field(
        True, description="Reuse outputs of unchanged components across runs.", json_schema_extra=_RUNTIME
    )
    user_code: UserCode = Field(
        "wheel",
        description="wheel: Transform/Trainer code packaged from the module files per run (edits invalidate the "
        "cache); installed: imported from the installed package, as in the Kubeflow image.",
        json_schema_extra=_RUNTIME,
    )
    schema_file: str = Field(
        "", description="A curated schema.pbtxt of your own (default: schemas/schema.pbtxt).", json_schema_extra=_DATA
    )
    transform_statistics: bool = Field(
        False,
        description="Also compute Transform's pre/post-transform statistics (StatisticsGen already does).",
        json_schema_extra=_RUNTIME,
    )
    trainer: TrainerSettings = Field(TrainerSettings(), json_schema_extra={"cli_section": "Training"})
    # Off unless the file has a tuning: section or a tuning flag is given (then 8 trials by default).
    tuning: TuningSettings = Field(TuningSettings(trials=0), json_schema_extra={"cli_section": "Tuning"})

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        if self.span is not None and "{SPAN" not in self.input_pattern:
            raise ValueError(
                f"span={self.span} needs a {{SPAN}} placeholder in input_pattern. Received: {self.input_pattern!r}"
            )
        if (self.trainer.weights == WEIGHTS_BASE_MODEL) != bool(self.base_model):
            raise ValueError(
                "weights=base_model and base_model=<URI of an earlier run's Model artifact> go together. "
                f"Received: weights={self.trainer.weights!r}, base_model={self.base_model!r}"
            )
        if self.compare_from_scratch and self.trainer.saved_model_backbone:
            raise ValueError(
                f"compare_from_scratch needs a keras.applications backbone: a SavedModel backbone "
                f"({self.trainer.backbone}) cannot be rebuilt with random weights. Set compare_from_scratch false."
            )
        if not self.above_majority_class and self.min_accuracy is None:
            raise ValueError(
                "above_majority_class false leaves the gate no absolute bound: a first run (nothing served to "
                "compare with) would never be blessed. Also set min_accuracy (e.g. 0.0 to accept any accuracy)."
            )
        if self.tuning.enabled:
            self.tuning.check(self.trainer)
        self.split_percents  # noqa: B018 (validates the three shares)
        return self

    @property
    def split_percents(self) -> SplitPercents:
        """Train / validation / test shares."""
        return SplitPercents(validation=self.validation_percent, test=self.test_percent)

    @property
    def metadata_path(self) -> str:
        """SQLite MLMD database of local runs."""
        return os.path.join(self.pipeline_root, "metadata.sqlite")

    @property
    def model_push_dir(self) -> str:
        """TF Serving base path of this model (versions are sub-folders)."""
        return os.path.join(self.serving_dir, self.model_name)

    def to_dict(self) -> dict[str, Any]:
        """All fields, JSON-serialisable (nested as in a config file)."""
        return self.model_dump(mode="json")


def _normalise_keys(values: Any) -> Any:
    """``data-root`` -> ``data_root``, at every level."""
    if isinstance(values, Mapping):
        return {str(key).replace("-", "_"): _normalise_keys(value) for key, value in values.items()}
    return values


def _message(error: ValidationError) -> str:
    """One line per problem, naming the key and the value."""
    lines = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"])
        text = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            lines.append(_unknown_key(location))
        elif problem["type"] == "missing":
            lines.append(f"{location} is required: {_description(location)}")
        elif not location or problem["type"] == "value_error":
            lines.append(text)
        else:
            lines.append(f"{location}: {text}. Received: {location}={problem['input']!r}")
    return "; ".join(lines)


def _unknown_key(location: str) -> str:
    key = location.rsplit(".", 1)[-1]
    if key in _MOVED_KEYS:
        return f"Config key {key!r} was replaced by {_MOVED_KEYS[key]}."
    if "." not in location and key in TrainerSettings.model_fields:
        return f"Config key {key!r} is a Trainer setting: put it under 'trainer:' in the config file."
    if "." not in location and key in TuningSettings.model_fields:
        return f"Config key {key!r} is a tuning setting: put it under 'tuning:' in the config file."
    parent = location.rsplit(".", 1)[0] if "." in location else ""
    known = _model_at(parent).model_fields
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"Unknown config key {location!r}. Did you mean {'.'.join(filter(None, (parent, close[0])))!r}?"
    return f"Unknown config key {location!r}. Known keys{' of ' + parent if parent else ''}: {', '.join(sorted(known))}"


def _model_at(location: str) -> type[BaseModel]:
    model: type[BaseModel] = PipelineConfig
    for part in filter(None, location.split(".")):
        model = model.model_fields[part].annotation  # type: ignore[assignment]
    return model


def _description(location: str) -> str:
    parent, _, key = location.rpartition(".")
    return _model_at(parent).model_fields[key].description or ""


def build_config(values: Mapping[str, Any]) -> PipelineConfig:
    """Builds a validated config from a (possibly nested) mapping of keys to raw values.

    Raises:
      ConfigError: On an unknown key or a value of the wrong type or range.
    """
    try:
        return PipelineConfig.model_validate(_normalise_keys(values))
    except ValidationError as error:
        raise ConfigError(_message(error)) from None


def read_config_file(path: str) -> dict[str, Any]:
    """Reads a YAML or JSON config file into a mapping (not yet validated).

    Raises:
      ConfigError: If the file is missing or does not hold a mapping.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"Config file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"Config file {path} is not valid YAML/JSON: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of keys to values.")
    return _normalise_keys(data)


def _set_path(values: dict[str, Any], dotted: str, value: Any) -> None:
    parent, _, key = dotted.rpartition(".")
    node = values
    for part in filter(None, parent.split(".")):
        child = node.get(part)
        node[part] = child = dict(child) if isinstance(child, Mapping) else {}
        node = child
    node[key] = value


def load_config(path: str | None, overrides: Mapping[str, Any]) -> PipelineConfig:
    """Defaults, then the config file (if any), then overrides (CLI flags).

    Args:
      path: A YAML/JSON config file, or None.
      overrides: Dotted keys (``trainer.image_size``) to values; None values are
        ignored so that unset flags keep the file's or the default value.
    """
    values: dict[str, Any] = read_config_file(path) if path else {}
    for key, value in overrides.items():
        if value is not None:
            _set_path(values, key.replace("-", "_"), value)
    return build_config(values)


def flag_fields(model: type[BaseModel] = PipelineConfig, prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf setting as (dotted key, pydantic FieldInfo), in declaration order.

    The CLI makes one flag per entry; nested models (``trainer``,
    ``trainer.augmentation``) contribute their fields.
    """
    leaves = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            leaves += flag_fields(annotation, f"{prefix}{name}.")
        else:
            leaves.append((f"{prefix}{name}", field))
    return leaves
