"""ImageFolder ExampleGen: a folder with one sub-folder per class -> tf.Examples.

Each example holds the encoded image bytes (``image``), the class folder name
(``label``) and the path relative to the class root (``path``). The split into
train/eval is by hash of ``path``, so it is deterministic and stable when files
are added. Every file listed ends as ingested or rejected; the executor writes
``ingest_report/files.jsonl`` (one line per file) and ``ingest_report/summary.json``
into the Examples artifact and records the counts as artifact properties in MLMD.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from tfx import v1 as tfx
from tfx.components import FileBasedExampleGen
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components import image_files
from components.modules import features

REPORT_DIR = "ingest_report"
REPORT_FILES = "files.jsonl"
REPORT_SUMMARY = "summary.json"
_REJECTED = "rejected"
PROGRESS_EVERY = 1000
# Beam's DirectRunner first tries Prism, which downloads a binary at run time (fails
# offline, and differs from what tests cover): the pipeline and standalone runs use
# the in-process FnApiRunner unless the user names a runner.
DEFAULT_BEAM_RUNNER = "--runner=FnApiRunner"


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def make_example(encoded: bytes, label: str, relative_path: str) -> tf.train.Example:
    """The tf.Example of one ingested image."""
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                features.IMAGE_KEY: _bytes_feature(encoded),
                features.LABEL_KEY: _bytes_feature(label.encode("utf-8")),
                features.PATH_KEY: _bytes_feature(relative_path.encode("utf-8")),
            }
        )
    )


def ingest_file(
    indexed: tuple[int, image_files.FoundFile], limits: image_files.IngestLimits, total: int
) -> Iterator[Any]:
    """Reads and checks one file.

    Args:
      indexed: The file's position in the listing (for progress logs) and the file.
      limits: Per-file acceptance limits.
      total: Number of files listed.

    Yields:
      The tf.Example on the main output, and one status record (a dict) on the
      ``status`` or ``rejected`` output.
    """
    index, found = indexed
    if index % PROGRESS_EVERY == 0:
        logging.info("Ingest progress: file %d of %d (%s)", index + 1, total, found.relative_path)
    record = {"path": found.relative_path, "label": found.label}
    reason = image_files.precheck_reason(found)
    checked = None
    if not reason:
        try:
            with tf.io.gfile.GFile(found.path, "rb") as handle:
                data = handle.read()
        except (OSError, tf.errors.OpError) as error:
            reason, record["detail"] = image_files.REASON_UNREADABLE_PATH, str(error)
        else:
            checked = image_files.check_image(data, limits)
            reason = checked.reason
            record.update(format=checked.image_format, width=checked.width, height=checked.height)
            if checked.detail:
                record["detail"] = checked.detail
    if reason:
        record.update(status=_REJECTED, reason=reason)
        yield beam.pvalue.TaggedOutput(_REJECTED, record)
        return
    record["status"] = "ingested"
    yield beam.pvalue.TaggedOutput("status", record)
    yield make_example(checked.encoded, found.label, found.relative_path)


def limits_from_exec_properties(exec_properties: dict[str, Any]) -> image_files.IngestLimits:
    """Reads the ingest limits packed into the ExampleGen's custom_config."""
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not raw:
        return image_files.IngestLimits()
    custom = example_gen_pb2.CustomConfig()
    json_format.Parse(raw, custom) if isinstance(raw, str) else custom.CopyFrom(raw)
    values = struct_pb2.Struct()
    if custom.HasField("custom_config"):
        custom.custom_config.Unpack(values)
    settings = json_format.MessageToDict(values)
    return image_files.IngestLimits(
        max_pixels=int(settings.get("max_pixels", image_files.DEFAULT_MAX_PIXELS)),
        min_side=int(settings.get("min_side", image_files.DEFAULT_MIN_SIDE)),
    )


class ImageFolderExecutor(BaseExampleGenExecutor):
    """ExampleGen executor reading an image folder tree with Beam."""

    _report_dir: str = ""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 (TFX API)
        """Returns the PTransform reading files into tf.Examples."""
        return _make_ptransform(self._report_dir)

    def Do(self, input_dict: dict, output_dict: dict, exec_properties: dict[str, Any]) -> None:  # noqa: N802 (TFX API)
        """Runs the Beam job, then summarises the per-file report."""
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        self._report_dir = os.path.join(examples.uri, REPORT_DIR)
        super().Do(input_dict, output_dict, exec_properties)
        summary = summarise_report(os.path.join(self._report_dir, REPORT_FILES))
        with tf.io.gfile.GFile(os.path.join(self._report_dir, REPORT_SUMMARY), "w") as handle:
            json.dump(summary, handle, indent=2, sort_keys=True)
        for key in ("files_seen", "ingested", "rejected"):
            examples.set_int_custom_property(key, summary[key])
        examples.set_string_custom_property("class_counts", json.dumps(summary["class_counts"], sort_keys=True))
        log_summary(summary, self._report_dir)


def _make_ptransform(report_dir: str) -> beam.PTransform:
    @beam.ptransform_fn
    def _ImageFolderToExample(  # noqa: N802 (Beam label style)
        pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str
    ) -> beam.pvalue.PCollection:
        root = image_files.class_root(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
        found = image_files.list_files(root)
        image_files.require_images(root, found)
        limits = limits_from_exec_properties(exec_properties)
        logging.info("Ingesting %d files from %s", len(found), root)
        results = (
            pipeline
            | "ListFiles" >> beam.Create(list(enumerate(found)), reshuffle=True)
            | "ReadAndCheck"
            >> beam.FlatMap(ingest_file, limits, len(found)).with_outputs("status", _REJECTED, main="examples")
        )
        _ = (
            (results.status, results[_REJECTED])
            | "MergeStatus" >> beam.Flatten()
            | "ToJson" >> beam.Map(lambda record: json.dumps(record, sort_keys=True, ensure_ascii=False))
            | "WriteReport"
            >> beam.io.WriteToText(
                os.path.join(report_dir, REPORT_FILES.removesuffix(".jsonl")),
                file_name_suffix=".jsonl",
                num_shards=1,
                shard_name_template="",
            )
        )
        return results.examples

    return _ImageFolderToExample


def summarise_report(report_path: str) -> dict[str, Any]:
    """Counts per status, class and reason from ``files.jsonl``."""
    class_counts: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    seen = 0
    with tf.io.gfile.GFile(report_path) as handle:
        for line in handle:
            record = json.loads(line)
            seen += 1
            if record["status"] == _REJECTED:
                reasons[record["reason"]] += 1
            else:
                class_counts[record["label"]] += 1
    return {
        "files_seen": seen,
        "ingested": sum(class_counts.values()),
        "rejected": sum(reasons.values()),
        "class_counts": dict(sorted(class_counts.items())),
        "rejected_by_reason": dict(sorted(reasons.items())),
    }


def log_summary(summary: dict[str, Any], report_dir: str) -> None:
    """Logs the ingest counts, with a warning when files were rejected."""
    logging.info(
        "Ingest: %d files seen, %d ingested, %d rejected; per class: %s",
        summary["files_seen"],
        summary["ingested"],
        summary["rejected"],
        summary["class_counts"],
    )
    if summary["rejected"]:
        logging.warning(
            "%d files rejected (%s); see %s/%s",
            summary["rejected"],
            summary["rejected_by_reason"],
            report_dir,
            REPORT_FILES,
        )


def ingest_custom_config(limits: image_files.IngestLimits) -> example_gen_pb2.CustomConfig:
    """Packs the ingest limits for the ExampleGen's ``custom_config``."""
    values = struct_pb2.Struct()
    values.update({"max_pixels": limits.max_pixels, "min_side": limits.min_side})
    custom = example_gen_pb2.CustomConfig()
    custom.custom_config.Pack(values)
    return custom


def span_range_config(span: int | None) -> tfx.proto.RangeConfig | None:
    """Pins one span (``None``: TFX picks the latest span)."""
    if span is None:
        return None
    return tfx.proto.RangeConfig(static_range=tfx.proto.StaticRange(start_span_number=span, end_span_number=span))


def create_example_gen(
    data_root: str,
    input_pattern: str,
    eval_percent: int,
    limits: image_files.IngestLimits,
    span: int | None = None,
) -> FileBasedExampleGen:
    """The ExampleGen component: hash split on ``path`` into train/eval.

    With ``{SPAN}`` in ``input_pattern`` the driver reads the latest span, or
    ``span`` when given, and records it on the Examples artifact.
    """
    output_config = tfx.proto.Output(
        split_config=tfx.proto.SplitConfig(
            splits=[
                tfx.proto.SplitConfig.Split(name="train", hash_buckets=100 - eval_percent),
                tfx.proto.SplitConfig.Split(name="eval", hash_buckets=eval_percent),
            ],
            partition_feature_name=features.PATH_KEY,
        )
    )
    return FileBasedExampleGen(
        input_base=data_root,
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name="images", pattern=input_pattern)]),
        output_config=output_config,
        custom_config=ingest_custom_config(limits),
        range_config=span_range_config(span),
        custom_executor_spec=executor_spec.BeamExecutorSpec(ImageFolderExecutor),
    )


def run_executor(
    data_root: str,
    output_uri: str,
    eval_percent: int = 20,
    limits: image_files.IngestLimits | None = None,
    beam_args: list[str] | None = None,
) -> standard_artifacts.Examples:
    """Runs the executor outside a pipeline (no MLMD), e.g. for tests and benchmarks.

    Returns:
      The Examples artifact, its properties set as in a pipeline run.
    """
    component = create_example_gen(data_root, "*/*", eval_percent, limits or image_files.IngestLimits())
    keys = (
        standard_component_specs.INPUT_CONFIG_KEY,
        standard_component_specs.OUTPUT_CONFIG_KEY,
        standard_component_specs.CUSTOM_CONFIG_KEY,
    )
    exec_properties = {key: _as_json(component.exec_properties[key]) for key in keys}
    exec_properties[standard_component_specs.INPUT_BASE_KEY] = data_root
    exec_properties[standard_component_specs.OUTPUT_DATA_FORMAT_KEY] = example_gen_pb2.FORMAT_TF_EXAMPLE
    examples = standard_artifacts.Examples()
    examples.uri = output_uri
    context = ImageFolderExecutor.Context(
        beam_pipeline_args=beam_args or [DEFAULT_BEAM_RUNNER], tmp_dir=tempfile.mkdtemp()
    )
    ImageFolderExecutor(context).Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
    return examples


def _as_json(value: Any) -> str:
    return value if isinstance(value, str) else proto_utils.proto_to_json(value)
