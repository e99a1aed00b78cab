"""The ingest summary: one writer (the ExampleGen executor), typed readers.

The executor (``components/example_gen/executor.py``) writes one line per listed
file into ``<examples artifact>/ingest_report/files.jsonl`` (a file with copies
carries its group's key, ``group``, and ``group_kind``); :func:`write` puts
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

from components import typed_files
from components.ingest import image_files, splits

if TYPE_CHECKING:
    from tfx.types.artifact import Artifact

REPORT_DIR = "ingest_report"
REPORT_FILES = "files.jsonl"
REPORT_SUMMARY = "summary.json"
# ``status`` of a line of files.jsonl.
INGESTED = "ingested"
REJECTED = "rejected"
# The Examples artifact's MLMD custom properties: counts as ints, per-class and per-split counts as JSON.
INT_PROPERTIES = (
    "files_seen",
    "ingested",
    "rejected",
    "duplicate_groups",
    "images_in_duplicate_groups",
    "label_conflict_groups",
    "label_conflict_files",
    "nested_files",
)
# How many groups of copies and nested folders the summary lists by name (the counts are whole).
MAX_EXAMPLE_GROUPS = 10
MAX_PATHS_PER_GROUP = 10
MAX_NESTED_FOLDERS = 20
JSON_PROPERTIES = ("class_counts", "split_counts")


class DuplicateGroup(BaseModel):
    """One group of copies of an image, as listed in the summary.

    Attributes:
      kind: ``exact`` (same pixels) or ``near`` (perceptual hash within the distance).
      size: Files in the group.
      paths: Their relative paths, sorted (the first MAX_PATHS_PER_GROUP).
      labels: Their classes; two or more make a label conflict.
      split: The split all of them went to; ``""`` for a label conflict (all rejected).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: str
    size: int
    paths: list[str]
    labels: list[str]
    split: str = ""

    @property
    def conflict(self) -> bool:
        """Whether the copies are filed under more than one class (all rejected)."""
        return len(self.labels) > 1


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
      duplicate_groups: Groups of two or more copies of one image (``components/ingest/duplicates.py``).
      images_in_duplicate_groups: Files in those groups.
      label_conflict_groups: Groups whose copies are filed under two or more classes.
      label_conflict_files: Their files, all rejected (reason ``label conflict``).
      duplicate_examples: The first MAX_EXAMPLE_GROUPS groups, label conflicts first.
      nested_files: Files in sub-folders of a class folder, ingested (or rejected) under the top class.
      nested_folders: Those sub-folders (the first MAX_NESTED_FOLDERS) -> files in them.
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
    duplicate_groups: int = 0
    images_in_duplicate_groups: int = 0
    label_conflict_groups: int = 0
    label_conflict_files: int = 0
    duplicate_examples: list[DuplicateGroup] = []
    nested_files: int = 0
    nested_folders: dict[str, int] = {}


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
    groups: dict[str, list[dict]] = collections.defaultdict(list)
    nested: collections.Counter[str] = collections.Counter()
    seen = 0
    with tf.io.gfile.GFile(report_path) as handle:
        for line in handle:
            record = json.loads(line)
            seen += 1
            if record.get("group"):
                groups[record["group"]].append(record)
            if folder := image_files.nested_folder(record["path"]):
                nested[folder] += 1
            if record["status"] == REJECTED:
                reasons[record["reason"]] += 1
            else:
                class_counts[record["label"]] += 1
                class_splits[record["label"]][record["split"]] += 1
    per_class = {
        label: {name: class_splits[label][name] for name in splits.SPLIT_NAMES} for label in sorted(class_splits)
    }
    listed = _duplicate_groups(groups)
    conflicts = [group for group in listed if group.conflict]
    return IngestSummary(
        duplicate_groups=len(listed),
        images_in_duplicate_groups=sum(group.size for group in listed),
        label_conflict_groups=len(conflicts),
        label_conflict_files=sum(group.size for group in conflicts),
        duplicate_examples=sorted(listed, key=lambda group: not group.conflict)[:MAX_EXAMPLE_GROUPS],
        nested_files=sum(nested.values()),
        nested_folders=dict(sorted(nested.items())[:MAX_NESTED_FOLDERS]),
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


def _duplicate_groups(groups: Mapping[str, list[dict]]) -> list[DuplicateGroup]:
    """The groups of copies in files.jsonl (records sharing a ``group`` key), by key."""
    listed = []
    for key in sorted(groups):
        records = sorted(groups[key], key=lambda record: record["path"])
        splits_seen = {record.get("split", "") for record in records if record["status"] == INGESTED}
        listed.append(
            DuplicateGroup(
                kind=records[0].get("group_kind", ""),
                size=len(records),
                paths=[record["path"] for record in records[:MAX_PATHS_PER_GROUP]],
                labels=sorted({record["label"] for record in records}),
                split=splits_seen.pop() if len(splits_seen) == 1 else "",
            )
        )
    return listed


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
    return typed_files.read(os.path.join(report_dir(examples_uri), REPORT_SUMMARY), IngestSummary)
