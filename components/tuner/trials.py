"""The Tuner's trials, typed: ``trials.json`` in its TunerResults artifact and MLMD custom properties.

Written by the Tuner's executor (``executor.py``) after the search, read back by the
run report (``pipeline/report/mlmd_reader.py``). TFX's own ``tuner_results.json``
(same folder) lists only completed trials, by score; this record keeps every trial in
the order they ran, with its status, seconds and both stages' validation accuracies,
and the budget the search ran under. The TunerResults artifact's custom properties
hold the counts, the best trial and the trials themselves as JSON, so MLMD alone
answers "which trials ran and how did each score".
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel
from tfx.types.artifact import Artifact

from components import typed_files
from components.modules import tuning_settings
from components.modules.tuning_settings import TrialMetric, TuningSettings

TRIALS_FILE = "trials.json"
# Custom properties of the TunerResults artifact (the HyperParameters artifact gets the best trial's).
TRIALS = "trials"
COMPLETED_TRIALS = "completed_trials"
BEST_TRIAL = "best_trial_id"
BEST_SCORE = "best_score"
TRIALS_JSON = "trials_json"
STOPPED_BY = "stopped_by"
COMPLETED = "COMPLETED"  # KerasTuner's status of a trial that reported its score
StoppedBy = Literal["trials", "time", "search"]


class TrialRecord(BaseModel):
    """One trial: its values, status and the validation accuracies of its two stages."""

    trial_id: str
    status: str
    score: float | None = None
    hyperparameters: dict[str, float]
    epochs: int | None = None  # Hyperband: the epochs this trial trained (both stages together)
    head_only_validation_accuracy: float | None = None
    fine_tuned_validation_accuracy: float | None = None
    kept_stage: int | None = None
    seconds: float | None = None
    error: str = ""


class TuningResult(BaseModel):
    """What the search did, in the order the trials ran.

    Attributes:
      stopped_by: ``trials`` (the trial budget), ``time`` (``max_minutes`` passed) or
        ``search`` (the algorithm had no new point: a small space, Hyperband's brackets done).
    """

    algorithm: str
    objective: str = tuning_settings.OBJECTIVE
    trial_budget: int
    max_minutes: float | None = None
    epochs_per_trial: int
    trials: list[TrialRecord]
    seconds: float
    stopped_by: StoppedBy

    @property
    def completed(self) -> list[TrialRecord]:
        """The trials that reported a score."""
        return [trial for trial in self.trials if trial.status == COMPLETED and trial.score is not None]

    @property
    def best(self) -> TrialRecord | None:
        """The completed trial with the highest validation accuracy (the first of equals), None if none completed."""
        completed = self.completed
        return max(completed, key=lambda trial: trial.score) if completed else None  # type: ignore[arg-type, return-value]


def _metric(trial: Any, name: str) -> float | None:
    return float(trial.metrics.get_last_value(name)) if trial.metrics.exists(name) else None


def _record(trial: Any) -> TrialRecord:
    """A KerasTuner ``Trial`` (its public fields) as a record."""
    values = trial.hyperparameters.values
    kept = _metric(trial, TrialMetric.KEPT_STAGE)
    epochs = values.get(tuning_settings.HYPERBAND_EPOCHS)
    message = (trial.message or "").strip().splitlines()
    return TrialRecord(
        trial_id=str(trial.trial_id),
        status=str(trial.status),
        score=None if trial.score is None else float(trial.score),
        hyperparameters=tuning_settings.best_values({"values": values}),
        epochs=None if epochs is None else int(epochs),
        head_only_validation_accuracy=_metric(trial, TrialMetric.HEAD_ONLY),
        fine_tuned_validation_accuracy=_metric(trial, TrialMetric.FINE_TUNED),
        kept_stage=None if kept is None else int(kept),
        seconds=_metric(trial, TrialMetric.SECONDS),
        error=message[-1] if message and trial.status != COMPLETED else "",
    )


def from_oracle(oracle: Any, tuning: TuningSettings, epochs_per_trial: int, seconds: float) -> TuningResult:
    """The search of a KerasTuner oracle after ``search()`` returned.

    Args:
      oracle: The tuner's oracle (``tuner.oracle``): its trials in the order they started.
      tuning: The search's settings (its budget).
      epochs_per_trial: The most epochs one trial trains.
      seconds: Wall seconds of the whole search.
    """
    records = [_record(oracle.trials[trial_id]) for trial_id in oracle.start_order]
    if len(records) >= tuning.trials:
        stopped_by = "trials"
    elif tuning.max_minutes and seconds >= tuning.max_minutes * 60:
        stopped_by = "time"
    else:
        stopped_by = "search"
    return TuningResult(
        algorithm=tuning.algorithm,
        trial_budget=tuning.trials,
        max_minutes=tuning.max_minutes,
        epochs_per_trial=epochs_per_trial,
        trials=records,
        seconds=round(seconds, 2),
        stopped_by=stopped_by,
    )


def write(result: TuningResult, tuner_results: Artifact, best_hyperparameters: Artifact) -> str:
    """Writes ``trials.json`` into the TunerResults artifact and records the trials as MLMD custom properties.

    Returns:
      The path of ``trials.json``.
    """
    path = typed_files.write(os.path.join(tuner_results.uri, TRIALS_FILE), result)
    tuner_results.set_int_custom_property(TRIALS, len(result.trials))
    tuner_results.set_int_custom_property(COMPLETED_TRIALS, len(result.completed))
    tuner_results.set_string_custom_property(STOPPED_BY, result.stopped_by)
    tuner_results.set_string_custom_property(
        TRIALS_JSON, json.dumps([trial.model_dump(exclude_none=True) for trial in result.trials], sort_keys=True)
    )
    best = result.best
    if best is not None:
        for artifact in (tuner_results, best_hyperparameters):
            artifact.set_string_custom_property(BEST_TRIAL, best.trial_id)
            artifact.set_float_custom_property(BEST_SCORE, float(best.score))  # type: ignore[arg-type]
    return path


def recorded(custom_properties: Mapping[str, Any]) -> bool:
    """Whether an artifact's MLMD custom properties hold this record (the Tuner's TunerResults)."""
    return TRIALS in custom_properties and TRIALS_JSON in custom_properties


def read(tuner_results_uri: str) -> TuningResult | None:
    """The search recorded in the TunerResults artifact at ``tuner_results_uri``; None if it has no record."""
    return typed_files.read(os.path.join(tuner_results_uri, TRIALS_FILE), TuningResult)
