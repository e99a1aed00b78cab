"""What the latest pipeline run did, read back from MLMD and the artifacts it points to."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import tensorflow as tf
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

from components import atomic_pusher, gate_evaluator, image_example_gen, served_model
from components.gate_evaluator import SERVED_TEST_EVALUATOR_ID
from components.modules import reports
from components.modules.settings import TrainingSummary
from pipeline import evaluation
from pipeline.evaluation import GateResult
from pipeline.pipeline import TRANSFER_VS_SCRATCH_EVALUATOR

# Evaluators whose verdict is not the gate's (their eval_config has no gate bounds to read).
_SIDE_EVALUATORS = (TRANSFER_VS_SCRATCH_EVALUATOR, SERVED_TEST_EVALUATOR_ID)

_STATE_NAMES = {
    metadata_store_pb2.Execution.COMPLETE: "ran",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}


@dataclasses.dataclass(frozen=True)
class StepTiming:
    """One execution of a run, timed by MLMD.

    Attributes:
      name: The node id (``Trainer``, ``served_model``).
      state: ``ran``, ``cached``, ``failed``, ``running`` (never finished) or ``canceled``.
      started: When MLMD registered the execution (seconds since the epoch).
      seconds: From registration to the last update (the publish); small for a cached step.
    """

    name: str
    state: str
    started: float
    seconds: float


@dataclasses.dataclass(frozen=True)
class GateBounds:
    """The gate's thresholds as the Evaluator ran with them (its ``eval_config``).

    Attributes:
      min_accuracy: Lower bound of test accuracy.
      max_accuracy_drop: How far below the baseline (served model) the candidate may be.
    """

    min_accuracy: float | None
    max_accuracy_drop: float | None


@dataclasses.dataclass
class RunReport:
    """The outcome of one pipeline run."""

    run_id: str
    component_states: dict[str, str] = dataclasses.field(default_factory=dict)
    ingest: dict[str, Any] = dataclasses.field(default_factory=dict)
    anomalies: list[str] = dataclasses.field(default_factory=list)
    training: TrainingSummary | None = None
    training_dir: str = ""
    training_files: list[str] = dataclasses.field(default_factory=list)
    gate: GateResult | None = None
    served_test_gate: GateResult | None = None
    comparison: GateResult | None = None
    pushed_to: str | None = None
    not_pushed_reason: str = ""
    push_outcome: str = ""
    served_version: int = 0
    served_by: str = ""
    pipeline_name: str = ""
    started_at: float | None = None
    steps: list[StepTiming] = dataclasses.field(default_factory=list)
    gate_bounds: GateBounds | None = None
    log_path: str = ""
    report_path: str = ""

    @property
    def blessed(self) -> bool | None:
        """The gate's verdict (None if the Evaluator did not finish)."""
        return None if self.gate is None else self.gate.blessed

    @property
    def total_seconds(self) -> float:
        """The steps' times added up (start-up and imports before the first step are not in MLMD)."""
        return sum(step.seconds for step in self.steps)

    @property
    def elapsed_seconds(self) -> float:
        """From the first step's start to the last step's end (below the total when steps overlap)."""
        if not self.steps:
            return 0.0
        return max(step.started + step.seconds for step in self.steps) - min(step.started for step in self.steps)

    @property
    def negative_transfer(self) -> bool | None:
        """Whether training from scratch beat the transfer model on test (None: not compared)."""
        comparison = self.comparison
        if comparison is None or None in (comparison.candidate_accuracy, comparison.baseline_accuracy):
            return None
        return comparison.baseline_accuracy > comparison.candidate_accuracy

    def format(self) -> str:
        """A short human-readable summary."""
        lines = [f"Pipeline run {self.run_id}"]
        lines += self._ingest_lines()
        if self.anomalies:
            lines.append(f"  data anomalies: {'; '.join(self.anomalies)}")
        if self.training:
            lines.append(
                f"  validation accuracy: head-only {self.training.head_only_validation_accuracy:.3f}, "
                f"fine-tuned {_fmt(self.training.fine_tuned_validation_accuracy)}, kept stage {self.training.kept_stage}"
                f" (curves and TensorBoard logs: {self.training_dir})"
            )
        lines += self._gate_lines()
        lines += self._step_lines()
        if self.log_path:
            lines.append(f"  full log: {self.log_path}")
        if self.report_path:
            lines.append(f"  report: {self.report_path}")
        return "\n".join(lines)

    def _step_lines(self) -> list[str]:
        if not self.steps:
            return []
        width = max(len(step.name) for step in self.steps)
        lines = [f"  {'step':<{width}}  {'state':<7} {'seconds':>8}"]
        lines += [f"  {step.name:<{width}}  {step.state:<7} {step.seconds:>8.1f}" for step in self.steps]
        lines.append(
            f"  {'total':<{width}}  {'':<7} {self.total_seconds:>8.1f}"
            f"  (first start to last end {self.elapsed_seconds:.1f} s)"
        )
        return lines

    def _ingest_lines(self) -> list[str]:
        if not self.ingest:
            return []
        ingest = self.ingest
        lines = [
            f"  ingest: {ingest['files_seen']} files seen, {ingest['ingested']} ingested, {ingest['rejected']} rejected"
            + (f" {ingest['rejected_by_reason']}" if ingest["rejected"] else "")
            + f"; per class {ingest['class_counts']}"
            + "; splits: "
            + ", ".join(f"{name} {count}" for name, count in ingest["split_counts"].items()),
        ]
        lines += [f"  split warning: {note}" for note in ingest["notes"]]
        return lines

    def _gate_lines(self) -> list[str]:
        lines = []
        if self.gate is not None:
            served = _fmt(self.gate.baseline_accuracy) if self.gate.baseline_accuracy is not None else "none yet"
            if self.served_version and self.gate.baseline_accuracy is not None:
                served += f" (version {self.served_version}, its {self.served_by})"
            lines.append(
                f"  test accuracy (gate, {self.gate.test_examples} held-out images): candidate "
                f"{_fmt(self.gate.candidate_accuracy)}, served model {served}"
            )
        served_test = self.served_test_gate
        if served_test is not None:
            verdict = "no worse" if served_test.blessed else "WORSE"
            lines.append(
                f"  served version's own test split ({served_test.test_examples} images): candidate "
                f"{_fmt(served_test.candidate_accuracy)}, served model {_fmt(served_test.baseline_accuracy)} ({verdict})"
            )
        if self.comparison is not None:
            verdict = "NEGATIVE TRANSFER: from scratch did better" if self.negative_transfer else "transfer did better"
            lines.append(
                f"  transfer vs from scratch on test: {_fmt(self.comparison.candidate_accuracy)} vs "
                f"{_fmt(self.comparison.baseline_accuracy)} ({verdict})"
            )
        if self.gate is not None and not self.gate.blessed:
            lines.append(f"  not blessed: {'; '.join(self.gate.reasons) or 'no reason recorded'}")
        if self.not_pushed_reason:
            lines.append(f"  HELD BACK: {self.not_pushed_reason}")
        lines.append(f"  blessed: {self.blessed}; pushed to: {self._pushed_text()}")
        return lines

    def _pushed_text(self) -> str:
        if not self.pushed_to:
            return "nothing pushed"
        if not tf.io.gfile.exists(self.pushed_to):
            return f"{self.pushed_to} (MISSING on disk: the serving directory and MLMD disagree)"
        if self.push_outcome == atomic_pusher.ALREADY_SERVED:
            return f"{self.pushed_to} (already served: nothing copied)"
        return self.pushed_to


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _run_contexts(store: metadata_store.MetadataStore, pipeline_name: str) -> list[metadata_store_pb2.Context]:
    """The ``pipeline_run`` contexts whose parent is the pipeline's context, oldest first."""
    runs = [
        context
        for context in store.get_contexts_by_type("pipeline_run")
        if pipeline_name in [parent.name for parent in store.get_parent_contexts_by_context(context.id)]
    ]
    return sorted(runs, key=lambda context: (context.create_time_since_epoch, context.id))


def _run_context(
    store: metadata_store.MetadataStore, pipeline_name: str, run_id: str | None = None
) -> metadata_store_pb2.Context:
    """The run named ``run_id``, or the newest run of the pipeline."""
    runs = _run_contexts(store, pipeline_name)
    if not runs:
        raise LookupError(f"No runs of pipeline {pipeline_name!r} in MLMD.")
    if run_id is None:
        return runs[-1]
    for context in runs:
        if context.name == run_id:
            return context
    recent = ", ".join(context.name for context in runs[-5:])
    raise LookupError(f"Pipeline {pipeline_name!r} has no run {run_id!r} in MLMD. Latest runs: {recent}")


def _store(metadata_path: str) -> metadata_store.MetadataStore:
    if not tf.io.gfile.exists(metadata_path):
        raise LookupError(f"No MLMD database at {metadata_path}: has the pipeline run with this pipeline root?")
    return metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(metadata_path))


def step_timings(
    store: metadata_store.MetadataStore, executions: list[metadata_store_pb2.Execution]
) -> list[StepTiming]:
    """Name, state and wall time of each execution, in the order MLMD registered them.

    The time runs from the execution's registration (inputs resolved, just before the
    executor starts) to its last update (outputs published): what the step itself
    took. A cached step only looks its outputs up, so its time is small.
    """
    return [
        StepTiming(
            name=_node_name(store, execution),
            state=_STATE_NAMES.get(execution.last_known_state, "unknown"),
            started=execution.create_time_since_epoch / 1000,
            seconds=max(execution.last_update_time_since_epoch - execution.create_time_since_epoch, 0) / 1000,
        )
        for execution in sorted(executions, key=lambda execution: (execution.create_time_since_epoch, execution.id))
    ]


def _node_name(store: metadata_store.MetadataStore, execution: metadata_store_pb2.Execution) -> str:
    for context in store.get_contexts_by_execution(execution.id):
        if store.get_context_types_by_id([context.type_id])[0].name == "node":
            return context.name.split(".", 1)[-1]
    return str(execution.id)


def _outputs(store: metadata_store.MetadataStore, execution_id: int) -> list[metadata_store_pb2.Artifact]:
    events = store.get_events_by_execution_ids([execution_id])
    ids = [event.artifact_id for event in events if event.type in (event.OUTPUT, event.DECLARED_OUTPUT)]
    return store.get_artifacts_by_id(ids) if ids else []


def _custom(artifact: metadata_store_pb2.Artifact, key: str) -> Any:
    value = artifact.custom_properties.get(key)
    if value is None:
        return None
    return getattr(value, value.WhichOneof("value"))


def _read_json(path: str) -> dict[str, Any]:
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def _anomalies(uri: str) -> list[str]:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    found = []
    for split_dir in sorted(tf.io.gfile.glob(os.path.join(uri, "Split-*"))):
        path = os.path.join(split_dir, "SchemaDiff.pb")
        if not tf.io.gfile.exists(path):
            continue
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(tf.io.gfile.GFile(path, "rb").read())
        for feature, info in anomalies.anomaly_info.items():
            found.append(f"{os.path.basename(split_dir)} {feature}: {info.short_description}")
    return found


def latest_run_id(metadata_path: str, pipeline_name: str) -> str | None:
    """The id of the pipeline's newest run in MLMD, None if there is none (no database is created)."""
    try:
        return _run_context(_store(metadata_path), pipeline_name).name
    except LookupError:
        return None


def failed_component(metadata_path: str, pipeline_name: str, earlier_run: str | None) -> str | None:
    """The step of the latest run that failed (or never finished), None if none is known.

    Args:
      metadata_path: The SQLite MLMD database.
      pipeline_name: The pipeline.
      earlier_run: The newest run id before this run started: if it is still the
        newest, this run failed before MLMD registered it, and no step is named.
    """
    try:
        store = _store(metadata_path)
        run = _run_context(store, pipeline_name)
    except LookupError:
        return None
    if run.name == earlier_run:
        return None
    unfinished = (metadata_store_pb2.Execution.FAILED, metadata_store_pb2.Execution.RUNNING)
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda execution: -execution.id):
        if execution.last_known_state in unfinished:
            return _node_name(store, execution)
    return None


def read_run_report(metadata_path: str, pipeline_name: str, run_id: str | None = None) -> RunReport:
    """Reads one run of ``pipeline_name`` from a SQLite MLMD database.

    Args:
      metadata_path: The SQLite MLMD file (``<pipeline_root>/metadata.sqlite``).
      pipeline_name: The pipeline's name.
      run_id: A ``pipeline_run`` context name (the run id the summary prints); None: the latest run.

    Raises:
      LookupError: If there is no database, no run of the pipeline, or no run ``run_id``.
    """
    store = _store(metadata_path)
    run = _run_context(store, pipeline_name, run_id)
    executions = sorted(store.get_executions_by_context(run.id), key=lambda execution: execution.id)
    report = RunReport(run.name, pipeline_name=pipeline_name, started_at=run.create_time_since_epoch / 1000)
    report.steps = step_timings(store, executions)
    outputs: dict[str, dict[str, metadata_store_pb2.Artifact]] = {}
    for execution in executions:
        node = _node_name(store, execution)
        report.component_states[node] = _STATE_NAMES.get(execution.last_known_state, "unknown")
        if node not in _SIDE_EVALUATORS and "eval_config" in execution.custom_properties:
            report.gate_bounds = gate_bounds(execution.custom_properties["eval_config"].string_value)
        for artifact in _outputs(store, execution.id):
            type_name = store.get_artifact_types_by_id([artifact.type_id])[0].name
            outputs.setdefault(node, {})[type_name] = artifact
    _add_outputs(report, outputs)
    return report


def _add_outputs(report: RunReport, outputs: dict[str, dict[str, metadata_store_pb2.Artifact]]) -> None:
    for node, artifacts in outputs.items():
        if "Examples" in artifacts and _custom(artifacts["Examples"], "files_seen") is not None:
            report_dir = os.path.join(artifacts["Examples"].uri, image_example_gen.REPORT_DIR)
            report.ingest = _read_json(os.path.join(report_dir, image_example_gen.REPORT_SUMMARY))
            report.ingest["report_dir"] = report_dir
        if "ExampleAnomalies" in artifacts:
            report.anomalies = _anomalies(artifacts["ExampleAnomalies"].uri)
        if node == "Trainer" and "ModelRun" in artifacts:
            report.training_dir = artifacts["ModelRun"].uri
            report.training = reports.read_summary(report.training_dir)
            if tf.io.gfile.isdir(report.training_dir):
                report.training_files = sorted(name.rstrip("/") for name in tf.io.gfile.listdir(report.training_dir))
        if node == TRANSFER_VS_SCRATCH_EVALUATOR and "ModelEvaluation" in artifacts:
            # Measures both models on test and blesses nothing (see pipeline.eval_config).
            report.comparison = evaluation.read_gate(artifacts["ModelEvaluation"].uri, blessed=False)
        elif node == SERVED_TEST_EVALUATOR_ID and "ModelBlessing" in artifacts:
            blessing = artifacts["ModelBlessing"]
            if not _custom(blessing, gate_evaluator.SKIPPED):
                report.served_test_gate = evaluation.read_gate(
                    artifacts["ModelEvaluation"].uri, bool(_custom(blessing, "blessed"))
                )
        elif "ModelBlessing" in artifacts and "ModelEvaluation" in artifacts:
            report.gate = evaluation.read_gate(
                artifacts["ModelEvaluation"].uri, bool(_custom(artifacts["ModelBlessing"], "blessed"))
            )
        if "PushedModel" in artifacts:
            pushed = artifacts["PushedModel"]
            if _custom(pushed, "pushed"):
                report.pushed_to = _custom(pushed, "pushed_destination")
            report.not_pushed_reason = _custom(pushed, atomic_pusher.NOT_PUSHED_REASON) or ""
            report.push_outcome = _custom(pushed, atomic_pusher.PUSH_OUTCOME) or ""
        if node == served_model.SERVED_MODEL_ID and "Model" in artifacts:
            report.served_version = int(_custom(artifacts["Model"], served_model.SERVED_VERSION) or 0)
            report.served_by = _custom(artifacts["Model"], served_model.SERVED_BY) or ""


def gate_bounds(eval_config_json: str) -> GateBounds:
    """The accuracy bounds on the overall slice of an Evaluator's ``eval_config`` exec property (JSON)."""
    minimum = drop = None
    for spec in json.loads(eval_config_json).get("metrics_specs", []):
        for metric in spec.get("metrics", []):
            for per_slice in metric.get("per_slice_thresholds", []):
                threshold = per_slice.get("threshold", {})
                if "lower_bound" in threshold.get("value_threshold", {}):
                    minimum = float(threshold["value_threshold"]["lower_bound"])
                if "absolute" in threshold.get("change_threshold", {}):
                    # pipeline.eval_config stores -max(drop, tiny tolerance): round the tolerance away.
                    drop = round(max(-float(threshold["change_threshold"]["absolute"]), 0.0), 6)
    return GateBounds(min_accuracy=minimum, max_accuracy_drop=drop)
