"""The ingest summary: one writer (the ExampleGen executor), typed readers.

The executor (``components/example_gen/executor.py``) writes one line per listed
file into ``<examples artifact>/ingest_report/files.jsonl``; :func:`write` puts
its counts (:func:`summarise_report`) next to it as ``summary.json`` and on the
Examples artifact as MLMD custom properties. Run reports read it back with
:func:`read` as an :class:`IngestSummary`. The JSON keys are the model's field
names and never change (summaries of old pipeline roots stay readable).
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import tensorflow as tf
from pydantic import BaseModel, ConfigDict

from components.ingest import splits

if TYPE_CHECKING:
    from tfx.types.artifact import Artifact

REPORT_DIR = "ingest_report"
REPORT_FILES = "files.jsonl"
REPORT_SUMMARY = "summary.json"
# ``status`` of a line of files.jsonl.
INGESTED = "ingested"
REJECTED = "rejected"
# The Examples artifact's MLMD custom properties: counts as ints, per-class and per-split counts as JSON.
INT_PROPERTIES = ("files_seen", "ingested", "rejected")
JSON_PROPERTIES = ("class_counts", "split_counts")


class IngestSummary(BaseModel):
    """What one ExampleGen run ingested, written as ``ingest_report/summary.json``.

    Attributes:
      files_seen: Files listed under the class root (each ingested or rejected).
      ingested: Files written as examples.
      rejected: Files rejected, each with a reason in ``files.jsonl``.
      class_counts: Ingested files per class, by class name.
      split_counts: Ingested files per split (``train``, ``validation``, ``test``).
      class_split_counts: Ingested files per class and split.
      rejected_by_reason: Rejected files per reason (``components/ingest/image_files.py``).
      notes: One sentence per class that has no image in some split.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    files_seen: int
    ingested: int
    rejected: int
    class_counts: dict[str, int] = {}
    split_counts: dict[str, int] = {}
    class_split_counts: dict[str, dict[str, int]] = {}
    rejected_by_reason: dict[str, int] = {}
    notes: list[str] = []


def report_dir(examples_uri: str) -> str:
    """``<examples_uri>/ingest_report``: the per-file report and the summary."""
    return os.path.join(examples_uri, REPORT_DIR)


def summarise_report(report_path: str) -> IngestSummary:
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
            if record["status"] == REJECTED:
                reasons[record["reason"]] += 1
            else:
                class_counts[record["label"]] += 1
                class_splits[record["label"]][record["split"]] += 1
    per_class = {
        label: {name: class_splits[label][name] for name in splits.SPLIT_NAMES} for label in sorted(class_splits)
    }
    return IngestSummary(
        files_seen=seen,
        ingested=sum(class_counts.values()),
        rejected=sum(reasons.values()),
        class_counts=dict(sorted(class_counts.items())),
        split_counts={name: sum(counts[name] for counts in per_class.values()) for name in splits.SPLIT_NAMES},
        class_split_counts=per_class,
        rejected_by_reason=dict(sorted(reasons.items())),
        notes=[
            f"class {label!r} has no {name} images ({class_counts[label]} ingested)"
            for label, counts in per_class.items()
            for name in splits.SPLIT_NAMES
            if not counts[name]
        ],
    )


def write(examples: Artifact, summary: IngestSummary) -> str:
    """Writes ``summary.json`` into the Examples artifact and records the counts as its MLMD properties.

    Args:
      examples: The Examples artifact the executor writes.
      summary: Its counts (:func:`summarise_report`).

    Returns:
      The path of ``summary.json``.
    """
    values = summary.model_dump()
    path = os.path.join(report_dir(examples.uri), REPORT_SUMMARY)
    with tf.io.gfile.GFile(path, "w") as handle:
        json.dump(values, handle, indent=2, sort_keys=True)
    for key in INT_PROPERTIES:
        examples.set_int_custom_property(key, values[key])
    for key in JSON_PROPERTIES:
        examples.set_string_custom_property(key, json.dumps(values[key], sort_keys=True))
    return path


def recorded(custom_properties: Mapping[str, Any]) -> bool:
    """Whether an artifact's MLMD custom properties hold ingest counts (the ExampleGen's Examples)."""
    return INT_PROPERTIES[0] in custom_properties


def read(examples_uri: str) -> IngestSummary | None:
    """The summary of the Examples artifact at ``examples_uri``; None if it has none.

    Raises:
      pydantic.ValidationError: If ``summary.json`` lacks a count.
    """
    path = os.path.join(report_dir(examples_uri), REPORT_SUMMARY)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return IngestSummary.model_validate_json(handle.read())
