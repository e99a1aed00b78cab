"""The ingest summary: computed from files.jsonl, one writer, typed readers, the JSON keys kept."""

from __future__ import annotations

import json
import os

from tfx.types import standard_artifacts

from components.ingest import summary as ingest_summary

# The keys of summary.json since the per-class splits (pipeline roots written since then must stay readable).
KEYS = {
    "files_seen",
    "ingested",
    "rejected",
    "class_counts",
    "split_counts",
    "class_split_counts",
    "rejected_by_reason",
    "notes",
    # Since the copy groups and nested folders (issue #25).
    "duplicate_groups",
    "images_in_duplicate_groups",
    "label_conflict_groups",
    "label_conflict_files",
    "duplicate_examples",
    "nested_files",
    "nested_folders",
}


def _examples(tmp_path: object) -> standard_artifacts.Examples:
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(str(tmp_path), "examples")
    report_dir = ingest_summary.report_dir(examples.uri)
    os.makedirs(report_dir)
    records = [
        {"path": "b/0.png", "label": "b", "status": "ingested", "split": "train"},
        {"path": "a/0.png", "label": "a", "status": "ingested", "split": "test"},
        {"path": "a/1.png", "label": "a", "status": "ingested", "split": "train"},
        {"path": "a/2.png", "label": "a", "status": "ingested", "split": "validation"},
        {"path": "a/3.png", "label": "a", "status": "rejected", "reason": "truncated"},
        {"path": "x.png", "label": "", "status": "rejected", "reason": "top_level"},
    ]
    with open(os.path.join(report_dir, ingest_summary.REPORT_FILES), "w") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)
    return examples


def test_the_summary_counts_the_per_file_report(tmp_path: object) -> None:
    examples = _examples(tmp_path)
    summary = ingest_summary.summarise_report(
        os.path.join(ingest_summary.report_dir(examples.uri), ingest_summary.REPORT_FILES)
    )
    assert (summary.files_seen, summary.ingested, summary.rejected) == (6, 4, 2)
    assert summary.class_counts == {"a": 3, "b": 1}
    assert summary.split_counts == {"train": 2, "validation": 1, "test": 1}
    assert summary.class_split_counts["b"] == {"train": 1, "validation": 0, "test": 0}
    assert summary.rejected_by_reason == {"top_level": 1, "truncated": 1}
    assert summary.notes == [
        "class 'b' has no validation images (1 ingested)",
        "class 'b' has no test images (1 ingested)",
    ]


def test_written_summary_keeps_its_keys_and_reads_back_typed(tmp_path: object) -> None:
    examples = _examples(tmp_path)
    summary = ingest_summary.summarise_report(
        os.path.join(ingest_summary.report_dir(examples.uri), ingest_summary.REPORT_FILES)
    )
    path = ingest_summary.write(examples, summary)
    assert path == os.path.join(examples.uri, "ingest_report", "summary.json")
    with open(path) as handle:
        on_disk = json.load(handle)
    assert set(on_disk) == KEYS and on_disk["split_counts"] == {"test": 1, "train": 2, "validation": 1}
    assert ingest_summary.read(examples.uri) == summary
    # MLMD sees the counts as artifact properties.
    assert examples.get_int_custom_property("files_seen") == 6
    assert json.loads(examples.get_string_custom_property("class_counts")) == {"a": 3, "b": 1}
    assert ingest_summary.recorded(examples.mlmd_artifact.custom_properties)
    assert not ingest_summary.recorded(standard_artifacts.Examples().mlmd_artifact.custom_properties)


def test_an_older_summary_and_a_missing_one_read(tmp_path: object) -> None:
    uri = str(tmp_path)
    assert ingest_summary.read(uri) is None
    os.makedirs(ingest_summary.report_dir(uri))
    older = {"files_seen": 3, "ingested": 3, "rejected": 0, "class_counts": {"a": 3}, "split_counts": {"train": 3}}
    with open(os.path.join(ingest_summary.report_dir(uri), ingest_summary.REPORT_SUMMARY), "w") as handle:
        json.dump(older, handle)
    summary = ingest_summary.read(uri)
    assert summary is not None and summary.ingested == 3
    assert (summary.class_split_counts, summary.rejected_by_reason, summary.notes) == ({}, {}, [])


def test_groups_of_copies_and_nested_folders_are_counted_from_the_report(tmp_path: object) -> None:
    report_dir = os.path.join(str(tmp_path), "ingest_report")
    os.makedirs(report_dir)
    records = [
        {
            "path": "a/x.png",
            "label": "a",
            "status": "ingested",
            "split": "test",
            "group": "a/x.png",
            "group_kind": "near",
        },
        {
            "path": "a/sub/y.jpg",
            "label": "a",
            "status": "ingested",
            "split": "test",
            "group": "a/x.png",
            "group_kind": "near",
        },
        {
            "path": "a/z.png",
            "label": "a",
            "status": "rejected",
            "reason": "label conflict",
            "group": "a/z.png",
            "group_kind": "exact",
        },
        {
            "path": "b/z.bmp",
            "label": "b",
            "status": "rejected",
            "reason": "label conflict",
            "group": "a/z.png",
            "group_kind": "exact",
        },
        {"path": "b/sub/w.png", "label": "b", "status": "ingested", "split": "train"},
    ]
    with open(os.path.join(report_dir, ingest_summary.REPORT_FILES), "w") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)
    summary = ingest_summary.summarise_report(os.path.join(report_dir, ingest_summary.REPORT_FILES))
    assert (summary.duplicate_groups, summary.images_in_duplicate_groups) == (2, 4)
    assert (summary.label_conflict_groups, summary.label_conflict_files) == (1, 2)
    conflict, kept = summary.duplicate_examples  # conflicts listed first
    assert (conflict.conflict, conflict.labels, conflict.split, conflict.paths) == (
        True,
        ["a", "b"],
        "",
        ["a/z.png", "b/z.bmp"],
    )
    assert (kept.conflict, kept.kind, kept.split, kept.paths) == (False, "near", "test", ["a/sub/y.jpg", "a/x.png"])
    assert (summary.nested_files, summary.nested_folders) == (2, {"a/sub": 1, "b/sub": 1})
    assert summary.files_seen == summary.ingested + summary.rejected == 5
