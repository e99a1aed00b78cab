"""A pipeline run read back from a SQLite MLMD database into a :class:`RunReport`.

Which run, each execution's state and seconds, and each step's outputs through
their writers' typed readers: the ingest summary, the Tuner's trials and what the
Trainer took from them, the training summary, the
gates' TFMA results and bounds, the push outcome and the served baseline, and the
BulkInferrer's test predictions.
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

from components.evaluation import inference_result
from components.evaluation import metrics as evaluation
from components.evaluation.eval_config import GateBounds
from components.gate_evaluator import executor as gate_evaluator
from components.ingest import summary as ingest_summary
from components.modules import reports, tuning_settings
from components.pusher import component as atomic_pusher
from components.served_model import component as served_model
from components.tuner import trials as tuner_trials
from pipeline.graph import node_ids
from pipeline.report.run_report import RunReport, StepTiming

_SIDE_EVALUATORS = (node_ids.TRANSFER_VS_SCRATCH_EVALUATOR, node_ids.SERVED_TEST_EVALUATOR)

_STATE_NAMES = {
    metadata_store_pb2.Execution.COMPLETE: "ran",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}


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
            report.gate_bounds = GateBounds.from_json(execution.custom_properties["eval_config"].string_value)
        for artifact in _outputs(store, execution.id):
            type_name = store.get_artifact_types_by_id([artifact.type_id])[0].name
            outputs.setdefault(node, {})[type_name] = artifact
    _add_outputs(report, outputs)
    _add_test_predictions(report, outputs)
    return report


def _add_test_predictions(report: RunReport, outputs: dict[str, dict[str, metadata_store_pb2.Artifact]]) -> None:
    """The BulkInferrer's test predictions, when it finished (ran or cached); after the training summary's class names."""
    result = outputs.get(node_ids.BULK_INFERRER, {}).get("InferenceResult")
    if result is None or report.component_states.get(node_ids.BULK_INFERRER) not in ("ran", "cached"):
        return
    class_names = report.training.class_names if report.training else ()
    report.test_predictions = inference_result.summarize(inference_result.read_predictions(result.uri, class_names))


def _add_outputs(report: RunReport, outputs: dict[str, dict[str, metadata_store_pb2.Artifact]]) -> None:
    for node, artifacts in outputs.items():
        if "Examples" in artifacts and ingest_summary.recorded(artifacts["Examples"].custom_properties):
            report.ingest = ingest_summary.read(artifacts["Examples"].uri)
            report.ingest_report_dir = ingest_summary.report_dir(artifacts["Examples"].uri)
        if "ExampleAnomalies" in artifacts:
            report.anomalies = _anomalies(artifacts["ExampleAnomalies"].uri)
        if node == node_ids.TUNER and "TunerResults" in artifacts:
            report.tuning = tuner_trials.read(artifacts["TunerResults"].uri)
        if node == node_ids.TRAINER and "ModelRun" in artifacts:
            report.training_dir = artifacts["ModelRun"].uri
            report.training = reports.read_summary(report.training_dir)
            report.tuned = tuning_settings.read_tuned(report.training_dir)
            if tf.io.gfile.isdir(report.training_dir):
                report.training_files = sorted(name.rstrip("/") for name in tf.io.gfile.listdir(report.training_dir))
        if node == node_ids.TRANSFER_VS_SCRATCH_EVALUATOR and "ModelEvaluation" in artifacts:
            # Measures both models on test and blesses nothing (see components/evaluation/eval_config.py).
            report.comparison = evaluation.read_gate(artifacts["ModelEvaluation"].uri, blessed=False)
        elif node == node_ids.SERVED_TEST_EVALUATOR and "ModelBlessing" in artifacts:
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
        if node == node_ids.SERVED_MODEL and "Model" in artifacts:
            report.served_version = int(_custom(artifacts["Model"], served_model.SERVED_VERSION) or 0)
            report.served_by = _custom(artifacts["Model"], served_model.SERVED_BY) or ""
