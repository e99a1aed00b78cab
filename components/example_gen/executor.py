"""The ImageFolder ExampleGen executor: a folder with one sub-folder per class -> tf.Examples.

Each example holds the encoded image bytes (``image``), the class folder name
(``label``) and the path relative to the class root (``path``). Copies of one image
are grouped (``components/ingest/plan.py``, ``duplicates.py``): a group goes whole to
``train``, ``validation`` or ``test`` by a hash of its key, per class, so that
every class with three or more groups is in every split (``components/ingest/splits.py``),
and a group filed under two classes is rejected as a label conflict.
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
from components.ingest import duplicates, image_files, plan, spans, splits
from components.ingest import summary as ingest_summary
from components.modules import features

# Passes the report folder from Do to GenerateExamplesByBeam with the exec properties.
_REPORT_DIR_KEY = "_ingest_report_dir"
PROGRESS_EVERY = 1000
# The ingest limits' keys in the ExampleGen's custom_config (component.ingest_custom_config packs them).
MAX_PIXELS_KEY = "max_pixels"
MIN_SIDE_KEY = "min_side"
NEAR_DUPLICATE_DISTANCE_KEY = "near_duplicate_distance"


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


def ingest_file(item: tuple[int, plan.PlannedFile], limits: image_files.IngestLimits, total: int) -> Iterator[Any]:
    """Writes what the plan decided for one file.

    The plan (``components/ingest/plan.py``, run in :meth:`ImageFolderExecutor.GenerateExamplesByBeam`)
    checked every file and grouped the copies; here a file it accepted is read again
    and stored: its own bytes when they are the bytes the plan checked (no second
    decode), a fresh conversion when it needs one, and rejected as changed when its
    bytes differ (its group and split were decided on other content).

    Args:
      item: The file's position in the reading order (for progress logs) and its plan.
      limits: Per-file acceptance limits (for a conversion).
      total: Number of files listed.

    Yields:
      (split, tf.Example) on the main output, and one status record (a dict) on
      the ``status`` or ``rejected`` output.
    """
    index, planned = item
    found = planned.found
    if index and index % PROGRESS_EVERY == 0:
        logging.info("Ingest progress: file %d of %d (%s)", index + 1, total, found.relative_path)
    record = planned.record()
    reason, encoded = planned.reason, b""
    if not reason:
        reason, encoded = _read_planned(planned, limits, record)
    if reason:
        record.update(status=ingest_summary.REJECTED, reason=reason)
        yield beam.pvalue.TaggedOutput(ingest_summary.REJECTED, record)
        return
    record.update(status=ingest_summary.INGESTED, split=planned.split)
    yield beam.pvalue.TaggedOutput("status", record)
    yield planned.split, make_example(encoded, found.label, found.relative_path)


def _read_planned(planned: plan.PlannedFile, limits: image_files.IngestLimits, record: dict) -> tuple[str, bytes]:
    """(rejection reason or "", bytes to store) for a file the plan accepted."""
    try:
        with tf.io.gfile.GFile(planned.found.path, "rb") as handle:
            data = handle.read()
    except (OSError, tf.errors.OpError) as error:
        record["detail"] = str(error)
        return image_files.REASON_UNREADABLE_PATH, b""
    if hashlib.sha256(data).hexdigest() != planned.file_digest:
        record["detail"] = "its bytes differ from those checked at the start of the ingest; run again"
        return image_files.REASON_CHANGED, b""
    if planned.stored_as_is:
        return "", data
    checked = image_files.check_image(data, limits)
    return checked.reason, checked.encoded or b""


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
    return image_files.IngestLimits(
        max_pixels=int(settings[MAX_PIXELS_KEY]),
        min_side=int(settings[MIN_SIDE_KEY]),
        near_duplicate_distance=int(
            settings.get(NEAR_DUPLICATE_DISTANCE_KEY, duplicates.DEFAULT_NEAR_DUPLICATE_DISTANCE)
        ),
    )


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
        """Lists the files and plans their ingest, then reads and writes them with Beam.

        The plan (components/ingest/plan.py: check, group copies, assign splits) runs
        here, in the launching process before the Beam job, on the listed files: a
        file's split depends on every other file's content (its copies), and doing
        that inside the job would hold every image's bytes until the last file is
        fingerprinted (the in-process runner keeps them in memory). The plan keeps
        a few bytes per file; the job then reads each accepted file once more and
        stores its bytes without decoding them again (benchmarks/ingest.py measures
        the plan's share).
        """
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        root = image_files.class_root(
            exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits[0].pattern
        )
        found = image_files.list_files(root)
        image_files.require_images(root, found)
        limits = limits_from_exec_properties(exec_properties)
        planned = plan.plan_ingest(found, split_percents_from_output_config(output_config), limits)
        logging.debug("Ingesting %d files from %s", len(found), root)
        ordered = sorted(planned.files, key=lambda item: record_order_key(item.found.relative_path))
        results = (
            pipeline
            | "ListFiles" >> beam.Create(list(enumerate(ordered)), reshuffle=spreads_over_workers(pipeline.options))
            | "ReadAndCheck"
            >> beam.FlatMap(ingest_file, limits, len(found)).with_outputs(
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
    if summary.duplicate_groups:
        logging.info(
            "Copies: %d groups (%d images), each in one split; %d files in %d groups that span classes "
            "rejected as label conflicts",
            summary.duplicate_groups,
            summary.images_in_duplicate_groups,
            summary.label_conflict_files,
            summary.label_conflict_groups,
        )
    if summary.nested_files:
        logging.warning(
            "%d files in sub-folders of class folders were ingested under their top class folder: %s",
            summary.nested_files,
            summary.nested_folders,
        )
    for note in summary.notes:
        logging.warning("Split: %s", note)
