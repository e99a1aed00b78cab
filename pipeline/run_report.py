"""What the latest pipeline run did, read back from MLMD and the artifacts it points to."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import tensorflow as tf
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from components.modules import reports

_STATE_NAMES = {
    metadata_store_pb2.Execution.COMPLETE: "ran",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}
TRAINING_SUMMARY = reports.SUMMARY_JSON


@dataclasses.dataclass
class RunReport:
    """The outcome of one pipeline run."""

    run_id: str
    component_states: dict[str, str]
    ingest: dict[str, Any]
    training: dict[str, Any]
    blessed: bool | None
    pushed_to: str | None
    anomalies: list[str]
    training_files: list[str] = dataclasses.field(default_factory=list)
    training_dir: str = ""

    def format(self) -> str:
        """A short human-readable summary."""
        lines = [f"Pipeline run {self.run_id}"]
        lines.append("  components: " + ", ".join(f"{name} {state}" for name, state in self.component_states.items()))
        if self.ingest:
            lines.append(
                f"  ingest: {self.ingest.get('files_seen')} files seen, {self.ingest.get('ingested')} ingested, "
                f"{self.ingest.get('rejected')} rejected; per class {self.ingest.get('class_counts')}"
            )
        if self.anomalies:
            lines.append(f"  data anomalies: {'; '.join(self.anomalies)}")
        if self.training:
            lines.append(
                f"  eval accuracy: head-only {self.training.get('head_only_eval_accuracy'):.3f}, "
                f"fine-tuned {_fmt(self.training.get('fine_tuned_eval_accuracy'))}, kept stage {self.training.get('kept_stage')}"
            )
            if self.training.get("negative_transfer"):
                lines.append(
                    f"  NEGATIVE TRANSFER: from scratch reached {self.training['from_scratch_eval_accuracy']:.3f}"
                )
            lines.append(
                f"  training reports: {self.training_dir} (learning curves, confusion matrix, TensorBoard logs)"
            )
        lines.append(f"  blessed: {self.blessed}; pushed to: {self.pushed_to or 'nothing pushed'}")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _latest_run_context(store: metadata_store.MetadataStore, pipeline_name: str) -> metadata_store_pb2.Context:
    """The newest ``pipeline_run`` context whose parent is the pipeline's context."""
    runs = [
        context
        for context in store.get_contexts_by_type("pipeline_run")
        if pipeline_name in [parent.name for parent in store.get_parent_contexts_by_context(context.id)]
    ]
    if not runs:
        raise LookupError(f"No runs of pipeline {pipeline_name!r} in MLMD.")
    return max(runs, key=lambda context: (context.create_time_since_epoch, context.id))


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


def read_run_report(metadata_path: str, pipeline_name: str) -> RunReport:
    """Reads the latest run of ``pipeline_name`` from a SQLite MLMD database."""
    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))
    run = _latest_run_context(store, pipeline_name)
    executions = sorted(store.get_executions_by_context(run.id), key=lambda execution: execution.id)
    report = RunReport(run.name, {}, {}, {}, None, None, [])
    for execution in executions:
        node = _node_name(store, execution)
        report.component_states[node] = _STATE_NAMES.get(execution.last_known_state, "unknown")
        for artifact in _outputs(store, execution.id):
            type_name = store.get_artifact_types_by_id([artifact.type_id])[0].name
            _add_artifact(report, type_name, artifact)
    return report


def _add_artifact(report: RunReport, type_name: str, artifact: metadata_store_pb2.Artifact) -> None:
    if type_name == "Examples" and _custom(artifact, "files_seen") is not None:
        report.ingest = _read_json(os.path.join(artifact.uri, "ingest_report", "summary.json"))
        report.ingest["report_dir"] = os.path.join(artifact.uri, "ingest_report")
    elif type_name == "ModelRun":
        report.training = _read_json(os.path.join(artifact.uri, TRAINING_SUMMARY))
        report.training_dir = artifact.uri
        report.training_files = sorted(name.rstrip("/") for name in tf.io.gfile.listdir(artifact.uri))
    elif type_name == "ModelBlessing":
        report.blessed = bool(_custom(artifact, "blessed"))
    elif type_name == "PushedModel" and _custom(artifact, "pushed"):
        report.pushed_to = _custom(artifact, "pushed_destination")
    elif type_name == "ExampleAnomalies":
        report.anomalies = _anomalies(artifact.uri)
