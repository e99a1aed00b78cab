"""ImageFolder ExampleGen: a folder with one sub-folder per class -> tf.Examples.

Each example holds the encoded image bytes (``image``), the class folder name
(``label``) and the path relative to the class root (``path``). Each file goes to
``train``, ``validation`` or ``test`` by a hash of ``path``, per class, so that
every class with three or more images is in every split (``components/splits.py``). Every file listed ends as ingested or rejected; the executor writes
``ingest_report/files.jsonl`` (one line per file) and ``ingest_report/summary.json``
into the Examples artifact and records the counts as artifact properties in MLMD.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from google.protobuf import json_format, struct_pb2
from tfx.components import FileBasedExampleGen
from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import input_processor
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components import image_files, splits
from components.modules import features

REPORT_DIR = "ingest_report"
REPORT_FILES = "files.jsonl"
REPORT_SUMMARY = "summary.json"
_REJECTED = "rejected"
# Passes the report folder from Do to GenerateExamplesByBeam with the exec properties.
_REPORT_DIR_KEY = "_ingest_report_dir"
PROGRESS_EVERY = 1000
# Beam's DirectRunner first tries Prism, which downloads a binary at run time (fails
# offline, and differs from what tests cover): the pipeline and standalone runs use
# the in-process FnApiRunner unless the user names a runner.
DEFAULT_BEAM_RUNNER = "--runner=FnApiRunner"
# Runners whose workers run in this process or its subprocesses, on this installation.
_LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")
# Beam flags with which TFX ships its own code to Beam workers; without any of them, every Beam
# component builds an sdist of the installed TFX first (tfx.utils.dependency_utils).
_DEPENDENCY_FLAGS = (
    "--extra_package",
    "--setup_file",
    "--requirements_file",
    "--worker_harness_container_image",
    "--sdk_container_image",
)
# Local workers (the default runner, also in the Kubeflow container) import the installed
# packages and need nothing staged: an empty requirements file says so and skips that sdist,
# which cost 1.2-3.0 s per Beam component (7 s of a demo run, measured 2026-11-24).
NOTHING_TO_STAGE = f"--requirements_file={os.devnull}"


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
        record.update(status=_REJECTED, reason=reason)
        yield beam.pvalue.TaggedOutput(_REJECTED, record)
        return
    record.update(status="ingested", split=split)
    yield beam.pvalue.TaggedOutput("status", record)
    yield split, make_example(checked.encoded, found.label, found.relative_path)


def beam_pipeline_args(beam_args: Sequence[str]) -> list[str]:
    """The user's Beam flags, with the in-process default runner unless one is given.

    With a local runner (the default, or one the user names such as DirectRunner) nothing
    is staged for workers (:data:`NOTHING_TO_STAGE`); with a remote runner (Dataflow,
    Flink), TFX's own staging applies. A dependency flag of the user's own always stands.
    """
    runners = [arg.split("=", 1)[-1] for arg in beam_args if arg.startswith("--runner")]
    args = list(beam_args) if runners else [DEFAULT_BEAM_RUNNER, *beam_args]
    local = all(runner in _LOCAL_RUNNERS for runner in runners)
    if local and not any(arg.startswith(_DEPENDENCY_FLAGS) for arg in beam_args):
        args.append(NOTHING_TO_STAGE)
    return args


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
    if runner_name not in (None, *_LOCAL_RUNNERS):
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
    return image_files.IngestLimits(max_pixels=int(settings["max_pixels"]), min_side=int(settings["min_side"]))


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
        """Lists the files, assigns each to a split (components/splits.py), reads and checks them."""
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
                "status", _REJECTED, main="examples"
            )
        )
        _ = (
            (results.status, results[_REJECTED])
            | "MergeStatus" >> beam.Flatten()
            | "ToJson" >> beam.Map(lambda record: json.dumps(record, sort_keys=True, ensure_ascii=False))
            | "WriteReport"
            >> beam.io.WriteToText(
                os.path.join(exec_properties[_REPORT_DIR_KEY], REPORT_FILES.removesuffix(".jsonl")),
                file_name_suffix=".jsonl",
                num_shards=1,
                shard_name_template="",
            )
        )
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
        exec_properties = resolve_span(exec_properties)
        example_gen_driver.update_output_artifact(exec_properties, examples.mlmd_artifact)
        report_dir = os.path.join(examples.uri, REPORT_DIR)
        super().Do(input_dict, output_dict, {**exec_properties, _REPORT_DIR_KEY: report_dir})
        summary = summarise_report(os.path.join(report_dir, REPORT_FILES))
        with tf.io.gfile.GFile(os.path.join(report_dir, REPORT_SUMMARY), "w") as handle:
            json.dump(summary, handle, indent=2, sort_keys=True)
        for key in ("files_seen", "ingested", "rejected"):
            examples.set_int_custom_property(key, summary[key])
        for key in ("class_counts", "split_counts"):
            examples.set_string_custom_property(key, json.dumps(summary[key], sort_keys=True))
        log_summary(summary, report_dir)


_PLACEHOLDERS = re.compile(r"\{(SPAN|VERSION)(:[^}]*)?\}")


def resolve_span(exec_properties: dict[str, Any]) -> dict[str, Any]:
    """The exec properties with the span resolved, as TFX's ExampleGen driver would resolve it.

    Locally TFX runs the FileBasedExampleGen driver before the executor: the
    pattern arrives with ``{SPAN}`` filled in and ``span``, ``version`` and
    ``input_fingerprint`` set, and they are returned unchanged. On Kubeflow the
    driver is a ``lifecycle.preCacheCheck`` hook that the open-source backend never
    runs, so the executor may get the raw pattern: it then picks the newest span (or
    the pinned ``range_config`` span) and fingerprints its files itself, with TFX's
    own ``FileBasedInputProcessor`` (the driver's code, tfx/components/example_gen/
    driver.py), so every backend reads the same files and records the same span.
    """
    resolved = (
        exec_properties.get(example_gen_utils.SPAN_PROPERTY_NAME) is not None
        and exec_properties.get(example_gen_utils.FINGERPRINT_PROPERTY_NAME)
        and not _PLACEHOLDERS.search(exec_properties[standard_component_specs.INPUT_CONFIG_KEY])
    )
    if resolved:
        return {example_gen_utils.VERSION_PROPERTY_NAME: None, **exec_properties}
    return {**exec_properties, **snapshot(exec_properties)}


class _SpanProcessor(input_processor.FileBasedInputProcessor):
    """TFX's span and version search, without its fingerprint (its ``stat`` of every file fails on a dangling link)."""

    def resolve_span_and_version(self) -> tuple[int, int | None]:
        """The newest span (or the pinned one) and version that every split pattern matches."""
        found = set()
        for split in self._splits:
            span, version = example_gen_utils._get_target_span_version(  # noqa: SLF001 (TFX's own search)
                self._input_base_uri, copy.deepcopy(split), range_config=self._range_config
            )
            found.add((span or 0, version))
        if len(found) != 1:
            raise ValueError(f"The splits' patterns match different spans or versions: {sorted(found)}")
        return found.pop()


def snapshot(exec_properties: dict[str, Any]) -> dict[str, Any]:
    """The span, version, input fingerprint and span-resolved ``input_config`` of the files to read.

    The fingerprint covers every file of the span (``input_fingerprint``): a new
    or changed file changes it. ``kubeflow/runner.py`` runs this as
    the Kubeflow spec's first step, so that the ExampleGen's cache key holds it.
    """
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    range_config = None
    if exec_properties.get(standard_component_specs.RANGE_CONFIG_KEY):
        range_config = range_config_pb2.RangeConfig()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.RANGE_CONFIG_KEY], range_config)
    processor = _SpanProcessor(
        exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits, range_config
    )
    span, version = processor.resolve_span_and_version()
    for split in input_config.splits:
        split.pattern = processor.get_pattern_for_span_version(split.pattern, span, version)
    fingerprint = input_fingerprint(exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config)
    logging.info("Ingest: span %s, pattern %s, %s", span, input_config.splits[0].pattern, fingerprint)
    return {
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(input_config),
        example_gen_utils.SPAN_PROPERTY_NAME: span,
        example_gen_utils.VERSION_PROPERTY_NAME: version,
        example_gen_utils.FINGERPRINT_PROPERTY_NAME: fingerprint,
    }


def input_fingerprint(input_base: str, input_config: example_gen_pb2.Input) -> str:
    """A digest of the names, sizes and modification times of the files the (resolved) patterns match.

    Like TFX's ``calculate_splits_fingerprint_span_and_version``, but a file that
    cannot be stat'ed (a dangling link, removed while listed) is named in the
    digest instead of failing the step: the ExampleGen reports it as rejected.
    """
    digest, files, total = hashlib.sha256(), 0, 0
    for split in input_config.splits:
        for path in sorted(tf.io.gfile.glob(os.path.join(input_base, split.pattern))):
            try:
                stat = tf.io.gfile.stat(path)
                size, mtime = stat.length, stat.mtime_nsec
            except tf.errors.NotFoundError:
                size, mtime = -1, -1
            files, total = files + 1, total + max(size, 0)
            digest.update(f"{split.name}\0{path}\0{size}\0{mtime}\n".encode())
    return f"num_files:{files},total_bytes:{total},sha256:{digest.hexdigest()}"


def summarise_report(report_path: str) -> dict[str, Any]:
    """Counts per status, class, split and reason from ``files.jsonl``.

    ``notes`` names every class that has no image in some split after ingest
    (too few images, or its only image of that split was rejected).
    """
    class_counts: collections.Counter[str] = collections.Counter()
    class_splits: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
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
                class_splits[record["label"]][record["split"]] += 1
    per_class = {
        label: {name: class_splits[label][name] for name in splits.SPLIT_NAMES} for label in sorted(class_splits)
    }
    return {
        "files_seen": seen,
        "ingested": sum(class_counts.values()),
        "rejected": sum(reasons.values()),
        "class_counts": dict(sorted(class_counts.items())),
        "split_counts": {name: sum(counts[name] for counts in per_class.values()) for name in splits.SPLIT_NAMES},
        "class_split_counts": per_class,
        "rejected_by_reason": dict(sorted(reasons.items())),
        "notes": [
            f"class {label!r} has no {name} images ({class_counts[label]} ingested)"
            for label, counts in per_class.items()
            for name in splits.SPLIT_NAMES
            if not counts[name]
        ],
    }


def log_summary(summary: dict[str, Any], report_dir: str) -> None:
    """Logs the ingest counts, with a warning when files were rejected or a class misses a split."""
    logging.info(
        "Ingest: %d files seen, %d ingested, %d rejected; per class: %s; per split: %s",
        summary["files_seen"],
        summary["ingested"],
        summary["rejected"],
        summary["class_counts"],
        summary["split_counts"],
    )
    if summary["rejected"]:
        logging.warning(
            "%d files rejected (%s); see %s/%s",
            summary["rejected"],
            summary["rejected_by_reason"],
            report_dir,
            REPORT_FILES,
        )
    for note in summary["notes"]:
        logging.warning("Split: %s", note)


def ingest_custom_config(limits: image_files.IngestLimits) -> example_gen_pb2.CustomConfig:
    """Packs the ingest limits for the ExampleGen's ``custom_config``."""
    values = struct_pb2.Struct()
    values.update({"max_pixels": limits.max_pixels, "min_side": limits.min_side})
    custom = example_gen_pb2.CustomConfig()
    custom.custom_config.Pack(values)
    return custom


def span_range_config(span: int | None) -> range_config_pb2.RangeConfig | None:
    """Pins one span (``None``: TFX picks the latest span)."""
    if span is None:
        return None
    return range_config_pb2.RangeConfig(
        static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span)
    )


def create_example_gen(
    data_root: str,
    input_pattern: str,
    percents: splits.SplitPercents,
    limits: image_files.IngestLimits,
    span: int | None = None,
) -> FileBasedExampleGen:
    """The ExampleGen component writing the ``train``, ``validation`` and ``test`` splits.

    The shares are recorded as the output splits' hash buckets; the executor
    assigns files per class (``components/splits.py``). With ``{SPAN}`` in
    ``input_pattern`` the driver reads the latest span, or ``span`` when given,
    and records it on the Examples artifact.
    """
    output_config = example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=share)
                for name, share in percents.as_dict().items()
            ],
            partition_feature_name=features.PATH_KEY,
        )
    )
    return FileBasedExampleGen(
        input_base=data_root,
        input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="images", pattern=input_pattern)]),
        output_config=output_config,
        custom_config=ingest_custom_config(limits),
        range_config=span_range_config(span),
        custom_executor_spec=executor_spec.BeamExecutorSpec(ImageFolderExecutor),
    )


def run_executor(
    data_root: str,
    output_uri: str,
    percents: splits.SplitPercents | None = None,
    limits: image_files.IngestLimits | None = None,
    beam_args: list[str] | None = None,
) -> standard_artifacts.Examples:
    """Runs the executor outside a pipeline (no MLMD), e.g. for tests and benchmarks.

    Returns:
      The Examples artifact, its properties set as in a pipeline run.
    """
    component = create_example_gen(
        data_root, "*/*", percents or splits.SplitPercents(), limits or image_files.IngestLimits()
    )
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
        beam_pipeline_args=beam_pipeline_args(beam_args or ()), tmp_dir=tempfile.mkdtemp()
    )
    ImageFolderExecutor(context).Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
    return examples


def _as_json(value: Any) -> str:
    return value if isinstance(value, str) else proto_utils.proto_to_json(value)
