"""The ImageFolder ExampleGen executor: a folder with one sub-folder per class -> tf.Examples.

Each example holds the encoded image bytes (``image``), the class folder name
(``label``) and the path relative to the class root (``path``). Each file goes to
``train``, ``validation`` or ``test`` by a hash of ``path``, per class, so that
every class with three or more images is in every split (``components/ingest/splits.py``).
Every file listed ends as ingested or rejected; the executor writes
``ingest_report/files.jsonl`` (one line per file) into the Examples artifact, and
``ingest_report/summary.json`` with the counts, also recorded as artifact
properties in MLMD (``components/ingest/summary.py``). The span is resolved in
``components/ingest/spans.py``; the component and its factory are in
``components/example_gen/component.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components import beam_args
from components.ingest import image_files, spans, splits
from components.ingest import summary as ingest_summary
from components.modules import features

# Passes the report folder from Do to GenerateExamplesByBeam with the exec properties.
_REPORT_DIR_KEY = "_ingest_report_dir"
PROGRESS_EVERY = 1000
# The ingest limits' keys in the ExampleGen's custom_config (component.ingest_custom_config packs them).
MAX_PIXELS_KEY = "max_pixels"
MIN_SIDE_KEY = "min_side"


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
    item: tuple[int, image_files.FoundFile, str], limits: image_files.IngestLimits, total: int
) -> Iterator[Any]:
    """Reads and checks one file.

    Args:
      item: The file's position in the reading order (for progress logs), the file and
        its split (empty for files rejected by their path).
      limits: Per-file acceptance limits.
      total: Number of files listed.

    Yields:
      (split, tf.Example) on the main output, and one status record (a dict) on
      the ``status`` or ``rejected`` output.
    """
    index, found, split = item
    if index and index % PROGRESS_EVERY == 0:
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
        record.update(status=ingest_summary.REJECTED, reason=reason)
        yield beam.pvalue.TaggedOutput(ingest_summary.REJECTED, record)
        return
    record.update(status=ingest_summary.INGESTED, split=split)
    yield beam.pvalue.TaggedOutput("status", record)
    yield split, make_example(checked.encoded, found.label, found.relative_path)


def record_order_key(relative_path: str) -> bytes:
    """Where a file's example goes in the written splits: a hash of its path.

    The listing is sorted by class folder, and Beam's in-process runner keeps that
    order through TFX's split writer (its Reshuffle does not reorder in one process).
    Class-sorted records would leave the Trainer's shuffle buffer (10,000 examples)
    drawing batches from a few classes at a time on larger data sets; this order
    interleaves the classes, the same way on every in-process run.
    """
    return hashlib.sha256(relative_path.encode("utf-8")).digest()


_PARALLEL_MODES = ("multi_threading", "multi_processing")


def spreads_over_workers(options: PipelineOptions) -> bool:
    """Whether a Beam job with these options runs on more than one worker.

    Only then is the file list worth reshuffling before the reads (so that the
    workers share the files); one in-process worker gains nothing from it and pays
    for a group-by over every file (benchmarks/README.md, "Ingestion"). Beam's
    local runners use several workers only in a multi-threading or multi-processing
    mode with ``direct_num_workers`` other than 1 (0: one per core).
    """
    runner = options.view_as(StandardOptions).runner
    runner_name = runner if isinstance(runner, str) or runner is None else type(runner).__name__
    if runner_name not in (None, *beam_args.LOCAL_RUNNERS):
        return True
    direct = options.view_as(DirectOptions)
    return direct.direct_running_mode in _PARALLEL_MODES and direct.direct_num_workers != 1


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
    return image_files.IngestLimits(max_pixels=int(settings[MAX_PIXELS_KEY]), min_side=int(settings[MIN_SIDE_KEY]))


def split_percents_from_output_config(output_config: example_gen_pb2.Output) -> splits.SplitPercents:
    """The train/validation/test shares declared as the output splits' hash buckets."""
    buckets = {split.name: split.hash_buckets for split in output_config.split_config.splits}
    if set(buckets) != set(splits.SPLIT_NAMES) or sum(buckets.values()) != 100:
        raise ValueError(
            f"Expected output splits {splits.SPLIT_NAMES} with buckets summing to 100. Received: {buckets}"
        )
    return splits.SplitPercents(validation=buckets[splits.VALIDATION], test=buckets[splits.TEST])


class ImageFolderExecutor(BaseExampleGenExecutor):
    """ExampleGen executor reading an image folder tree with Beam, split per class."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 (TFX API)
        """Not used: :meth:`GenerateExamplesByBeam` reads and splits in one pass."""
        raise NotImplementedError("ImageFolderExecutor splits in GenerateExamplesByBeam.")

    def GenerateExamplesByBeam(  # noqa: N802 (TFX API)
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.pvalue.PCollection]:
        """Lists the files, assigns each to a split (components/ingest/splits.py), reads and checks them."""
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        root = image_files.class_root(
            exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits[0].pattern
        )
        found = image_files.list_files(root)
        image_files.require_images(root, found)
        assignment = splits.assign(
            ((item.relative_path, item.label) for item in found if not image_files.precheck_reason(item)),
            split_percents_from_output_config(output_config),
        )
        logging.debug("Ingesting %d files from %s", len(found), root)
        ordered = sorted(found, key=lambda item: record_order_key(item.relative_path))
        items = [(index, item, assignment.split_of.get(item.relative_path, "")) for index, item in enumerate(ordered)]
        results = (
            pipeline
            | "ListFiles" >> beam.Create(items, reshuffle=spreads_over_workers(pipeline.options))
            | "ReadAndCheck"
            >> beam.FlatMap(ingest_file, limits_from_exec_properties(exec_properties), len(found)).with_outputs(
                "status", ingest_summary.REJECTED, main="examples"
            )
        )
        _write_file_report((results.status, results[ingest_summary.REJECTED]), exec_properties[_REPORT_DIR_KEY])
        parts = results.examples | "Split" >> beam.Partition(
            lambda item, _: splits.SPLIT_NAMES.index(item[0]), len(splits.SPLIT_NAMES)
        )
        return {
            name: part | f"Drop key [{name}]" >> beam.Values()
            for name, part in zip(splits.SPLIT_NAMES, parts, strict=True)
        }

    def Do(self, input_dict: dict, output_dict: dict, exec_properties: dict[str, Any]) -> None:  # noqa: N802 (TFX API)
        """Resolves the span, runs the Beam job, then summarises the per-file report."""
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        exec_properties = spans.resolve_span(exec_properties)
        example_gen_driver.update_output_artifact(exec_properties, examples.mlmd_artifact)
        report_dir = ingest_summary.report_dir(examples.uri)
        super().Do(input_dict, output_dict, {**exec_properties, _REPORT_DIR_KEY: report_dir})
        summary = ingest_summary.summarise_report(os.path.join(report_dir, ingest_summary.REPORT_FILES))
        ingest_summary.write(examples, summary)
        log_summary(summary, report_dir)


def _write_file_report(statuses: tuple[beam.pvalue.PCollection, ...], report_dir: str) -> None:
    """Writes the status records (ingested and rejected) as ``<report_dir>/files.jsonl``, one JSON line each."""
    _ = (
        statuses
        | "MergeStatus" >> beam.Flatten()
        | "ToJson" >> beam.Map(lambda record: json.dumps(record, sort_keys=True, ensure_ascii=False))
        | "WriteReport"
        >> beam.io.WriteToText(
            os.path.join(report_dir, ingest_summary.REPORT_FILES.removesuffix(".jsonl")),
            file_name_suffix=".jsonl",
            num_shards=1,
            shard_name_template="",
        )
    )


def log_summary(summary: ingest_summary.IngestSummary, report_dir: str) -> None:
    """Logs the ingest counts, with a warning when files were rejected or a class misses a split."""
    logging.info(
        "Ingest: %d files seen, %d ingested, %d rejected; per class: %s; per split: %s",
        summary.files_seen,
        summary.ingested,
        summary.rejected,
        summary.class_counts,
        summary.split_counts,
    )
    if summary.rejected:
        logging.warning(
            "%d files rejected (%s); see %s/%s",
            summary.rejected,
            summary.rejected_by_reason,
            report_dir,
            ingest_summary.REPORT_FILES,
        )
    for note in summary.notes:
        logging.warning("Split: %s", note)
