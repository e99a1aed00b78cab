"""The one typed configuration of the pipeline, parsed once at the edge.

Every value that a user may change lives in :class:`PipelineConfig`. It is built
from defaults, then an optional YAML/JSON file, then CLI flags (see
``pipeline/cli.py``), and validated in one place. Nothing here does I/O at import.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

RUNNERS = ("local", "beam")
PIPELINE_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
WEIGHTS_IMAGENET = "imagenet"
WEIGHTS_NONE = "none"
WEIGHTS_BASE_MODEL = "base_model"
FINE_TUNE_SCHEDULES = ("top_n", "fraction", "progressive")
DISTRIBUTIONS = ("auto", "mirrored", "none")
USER_CODE = ("wheel", "installed")
# Hash buckets used for the deterministic train/eval split (out of 100).
SPLIT_BUCKETS = 100


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """All user-facing settings of one pipeline.

    Attributes:
      pipeline_name: Name of the pipeline in MLMD and Kubeflow
        (``[a-z0-9][a-z0-9-]*``).
      data_root: Folder with one sub-folder per class.
      pipeline_root: Where TFX writes artifacts and the SQLite MLMD database.
      serving_dir: Base directory of the TF Serving model repository.
      model_name: Blessed models are pushed to ``<serving_dir>/<model_name>/<version>/``.
      keep_versions: How many pushed versions stay in the serving dir (0: all).
      input_pattern: Glob, relative to ``data_root``, of the class folders' files.
        ``span-{SPAN:4}/*/*`` reads the latest ``span-NNNN`` folder (see README).
      span: With ``{SPAN}`` in the pattern, read this span instead of the latest.
      eval_percent: Share of the images (by hash of their relative path) in the
        eval split.
      image_size: Side of the square images the model sees.
      backbone: Keras applications backbone (see ``components/modules/model.py``).
      backbone_alpha: Width multiplier for MobileNet backbones.
      weights: ``imagenet``, ``none`` (train from scratch) or a local weights file.
      batch_size: Training batch size.
      stage1_epochs: Epochs with the backbone frozen (head only).
      stage2_epochs: Epochs fine-tuning the top layers (0 skips stage 2).
      stage1_learning_rate: Adam learning rate of stage 1.
      stage2_learning_rate: Adam learning rate of stage 2 (keep it low).
      fine_tune_schedule: ``top_n`` (the top ``fine_tune_layers`` layers),
        ``fraction`` (the top ``fine_tune_fraction`` of the layers) or
        ``progressive`` (one more block from the top every ``epochs_per_block`` epochs).
      fine_tune_layers: How many backbone layers from the top are unfrozen in stage 2.
      fine_tune_fraction: Share of the backbone layers unfrozen (``fraction``).
      epochs_per_block: Epochs per unfrozen block (``progressive``).
      early_stopping_patience: Stop a stage after this many epochs without a better
        eval accuracy and restore the best epoch (0: off).
      compare_from_scratch: Also train from scratch and flag negative transfer.
      base_model: URI of an earlier run's Model artifact whose backbone to transfer
        (with ``weights=base_model``).
      dropout: Dropout rate before the classification layer.
      augment: Random flip/rotation/zoom during training only.
      mixed_precision: mixed_float16 compute (GPUs); the output layer stays float32.
      xla: Compile the training step with XLA.
      distribution: ``auto`` (MirroredStrategy with several GPUs), ``mirrored`` or ``none``.
      top_k: How many classes ``serving_default`` returns per image.
      max_pixels: Images with more pixels are rejected at ingest (decoding bombs).
      min_side: Images with a smaller side are rejected at ingest.
      min_accuracy: The Evaluator blesses a model only at or above this eval accuracy.
      max_accuracy_drop: ...and only if it is at most this much below the latest
        blessed model (0.0 means "no worse").
      runner: ``local`` (LocalDagRunner) or ``beam`` (BeamDagRunner).
      beam_args: Extra Beam pipeline flags, e.g. ``--direct_num_workers=2``.
      seed: Seed for the split-independent random parts of training.
      enable_cache: Reuse outputs of unchanged components across runs.
      user_code: ``wheel``: Transform/Trainer code is packaged from the module files
        at run time (edits invalidate the cache); ``installed``: imported from the
        installed package, as in the Kubeflow container image.
      schema_file: A curated schema.pbtxt of your own (default: ``schemas/schema.pbtxt``).
      transform_statistics: Also compute Transform's pre- and post-transform
        statistics (off: StatisticsGen already describes the raw data).
    """

    data_root: str
    pipeline_name: str = "image-transfer"
    pipeline_root: str = "tfx_root"
    serving_dir: str = "serving"
    model_name: str = "image_classifier"
    keep_versions: int = 5
    input_pattern: str = "*/*"
    span: int | None = None
    eval_percent: int = 20
    image_size: int = 224
    backbone: str = "MobileNetV2"
    backbone_alpha: float = 1.0
    weights: str = WEIGHTS_IMAGENET
    batch_size: int = 32
    stage1_epochs: int = 5
    stage2_epochs: int = 5
    stage1_learning_rate: float = 1e-3
    stage2_learning_rate: float = 1e-5
    fine_tune_schedule: str = "top_n"
    fine_tune_layers: int = 30
    fine_tune_fraction: float = 0.3
    epochs_per_block: int = 2
    early_stopping_patience: int = 0
    compare_from_scratch: bool = False
    base_model: str = ""
    dropout: float = 0.2
    augment: bool = True
    mixed_precision: bool = False
    xla: bool = False
    distribution: str = "auto"
    top_k: int = 5
    max_pixels: int = 50_000_000
    min_side: int = 8
    min_accuracy: float = 0.5
    max_accuracy_drop: float = 0.0
    runner: str = "local"
    beam_args: tuple[str, ...] = ()
    seed: int = 42
    enable_cache: bool = True
    user_code: str = "wheel"
    schema_file: str = ""
    transform_statistics: bool = False

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def metadata_path(self) -> str:
        """SQLite MLMD database of local runs."""
        return os.path.join(self.pipeline_root, "metadata.sqlite")

    @property
    def model_push_dir(self) -> str:
        """TF Serving base path of this model (versions are sub-folders)."""
        return os.path.join(self.serving_dir, self.model_name)

    @property
    def weights_kind(self) -> str:
        """``imagenet``, ``none``, ``base_model`` or ``file``."""
        if self.weights in (WEIGHTS_IMAGENET, WEIGHTS_NONE, WEIGHTS_BASE_MODEL):
            return self.weights
        return "file"

    def trainer_config(self) -> dict[str, Any]:
        """The JSON-serialisable settings the Trainer's ``run_fn`` reads."""
        keys = (
            "image_size", "backbone", "backbone_alpha", "weights", "batch_size",
            "stage1_epochs", "stage2_epochs", "stage1_learning_rate",
            "stage2_learning_rate", "fine_tune_schedule", "fine_tune_layers", "fine_tune_fraction",
            "epochs_per_block", "early_stopping_patience", "compare_from_scratch", "dropout", "augment",
            "mixed_precision", "xla", "distribution", "top_k", "seed",
        )  # fmt: skip
        return {key: getattr(self, key) for key in keys}

    def to_dict(self) -> dict[str, Any]:
        """All fields, JSON-serialisable."""
        data = dataclasses.asdict(self)
        data["beam_args"] = list(self.beam_args)
        return data


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _validate(config: PipelineConfig) -> None:
    """Checks every field; raises ConfigError naming the value at fault."""
    _require(bool(config.data_root), "data_root is required: a folder with one sub-folder per class.")
    _require(
        bool(PIPELINE_NAME_PATTERN.match(config.pipeline_name)),
        f"pipeline_name must match [a-z0-9][a-z0-9-]{{0,127}} (Kubeflow's rule). "
        f"Received: pipeline_name={config.pipeline_name!r}",
    )
    _require(
        bool(re.match(r"^[A-Za-z0-9_.-]+$", config.model_name)),
        f"model_name must be a plain folder name. Received: model_name={config.model_name!r}",
    )
    _require(
        1 <= config.eval_percent <= 50,
        f"eval_percent must be in [1, 50]. Received: eval_percent={config.eval_percent}",
    )
    _require(32 <= config.image_size <= 1024, f"image_size must be in [32, 1024]. Received: {config.image_size}")
    _require(config.backbone_alpha > 0, f"backbone_alpha must be > 0. Received: {config.backbone_alpha}")
    _require(config.batch_size >= 1, f"batch_size must be >= 1. Received: {config.batch_size}")
    _require(config.stage1_epochs >= 1, f"stage1_epochs must be >= 1. Received: {config.stage1_epochs}")
    _require(config.stage2_epochs >= 0, f"stage2_epochs must be >= 0. Received: {config.stage2_epochs}")
    for name in ("stage1_learning_rate", "stage2_learning_rate"):
        value = getattr(config, name)
        _require(0 < value < 1, f"{name} must be in (0, 1). Received: {name}={value}")
    _require(config.fine_tune_layers >= 1, f"fine_tune_layers must be >= 1. Received: {config.fine_tune_layers}")
    _require(0 <= config.dropout < 1, f"dropout must be in [0, 1). Received: {config.dropout}")
    _require(
        config.span is None or "{SPAN" in config.input_pattern,
        f"span={config.span} needs a {{SPAN}} placeholder in input_pattern. Received: {config.input_pattern!r}",
    )
    _require(config.span is None or config.span >= 0, f"span must be >= 0. Received: {config.span}")
    _require(
        config.fine_tune_schedule in FINE_TUNE_SCHEDULES,
        f"Unknown fine_tune_schedule. Expected one of {FINE_TUNE_SCHEDULES}. Received: {config.fine_tune_schedule!r}",
    )
    _require(
        0 < config.fine_tune_fraction <= 1,
        f"fine_tune_fraction must be in (0, 1]. Received: {config.fine_tune_fraction}",
    )
    _require(config.epochs_per_block >= 1, f"epochs_per_block must be >= 1. Received: {config.epochs_per_block}")
    _require(
        config.early_stopping_patience >= 0,
        f"early_stopping_patience must be >= 0. Received: {config.early_stopping_patience}",
    )
    _require(
        config.distribution in DISTRIBUTIONS,
        f"Unknown distribution. Expected one of {DISTRIBUTIONS}. Received: {config.distribution!r}",
    )
    _require(
        (config.weights == WEIGHTS_BASE_MODEL) == bool(config.base_model),
        "weights=base_model and base_model=<URI of an earlier run's Model artifact> go together. "
        f"Received: weights={config.weights!r}, base_model={config.base_model!r}",
    )
    _require(
        config.user_code in USER_CODE,
        f"Unknown user_code. Expected one of {USER_CODE}. Received: {config.user_code!r}",
    )
    _require(config.keep_versions >= 0, f"keep_versions must be >= 0. Received: {config.keep_versions}")
    _require(config.top_k >= 1, f"top_k must be >= 1. Received: {config.top_k}")
    _require(config.max_pixels >= 1, f"max_pixels must be >= 1. Received: {config.max_pixels}")
    _require(config.min_side >= 1, f"min_side must be >= 1. Received: {config.min_side}")
    _require(0 <= config.min_accuracy <= 1, f"min_accuracy must be in [0, 1]. Received: {config.min_accuracy}")
    _require(
        0 <= config.max_accuracy_drop <= 1,
        f"max_accuracy_drop must be in [0, 1]. Received: {config.max_accuracy_drop}",
    )
    _require(
        config.runner in RUNNERS,
        f"Unknown runner. Expected one of {RUNNERS}. Received: runner={config.runner!r}",
    )
    _require(bool(config.weights), "weights must be 'imagenet', 'none', 'base_model' or a weights file path.")


_FIELDS = {field.name: field for field in dataclasses.fields(PipelineConfig)}


def _coerce(name: str, value: Any) -> Any:
    """Converts a file or CLI value to the field's type, naming the field on failure."""
    field_type = _FIELDS[name].type
    try:
        if field_type == "bool":
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return lowered in ("true", "1", "yes")
            return bool(value)
        if field_type in ("int", "int | None"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if field_type == "float":
            return float(value)
        if field_type.startswith("tuple"):
            if isinstance(value, str):
                return tuple(value.split())
            return tuple(str(item) for item in value)
        return str(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{name} must be of type {field_type}. Received: {name}={value!r}") from error


def build_config(values: Mapping[str, Any]) -> PipelineConfig:
    """Builds a validated config from a mapping of field names to raw values.

    Args:
      values: Field names (``-`` or ``_`` separated) to values; ``None`` values
        are ignored so that unset CLI flags keep their defaults.

    Returns:
      The validated configuration.

    Raises:
      ConfigError: On an unknown key or a value of the wrong type or range.
    """
    kwargs: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = raw_key.replace("-", "_")
        if key not in _FIELDS:
            known = ", ".join(sorted(_FIELDS))
            raise ConfigError(f"Unknown config key {raw_key!r}. Known keys: {known}")
        if value is not None:
            kwargs[key] = _coerce(key, value)
    if "data_root" not in kwargs:
        raise ConfigError("data_root is required: a folder with one sub-folder per class.")
    return PipelineConfig(**kwargs)


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
    return data


def load_config(path: str | None, overrides: Mapping[str, Any]) -> PipelineConfig:
    """Defaults, then the config file (if any), then overrides (CLI flags)."""
    values: dict[str, Any] = dict(read_config_file(path)) if path else {}
    values.update({key: value for key, value in overrides.items() if value is not None})
    return build_config(values)
