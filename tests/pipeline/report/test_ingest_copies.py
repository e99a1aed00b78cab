"""The run summary and the model card show the ingest's copy groups, label conflicts and nested folders."""

from __future__ import annotations

from components.ingest.summary import DuplicateGroup, IngestSummary
from pipeline.report import html_report
from pipeline.report.run_report import RunReport

INGEST = IngestSummary(
    files_seen=10,
    ingested=7,
    rejected=3,
    rejected_by_reason={"label conflict": 2, "hidden file": 1},
    class_counts={"a": 4, "b": 3},
    split_counts={"train": 5, "validation": 1, "test": 1},
    duplicate_groups=2,
    images_in_duplicate_groups=4,
    label_conflict_groups=1,
    label_conflict_files=2,
    duplicate_examples=[
        DuplicateGroup(kind="exact", size=2, paths=["a/3.png", "b/also_a3.png"], labels=["a", "b"]),
        DuplicateGroup(kind="near", size=2, paths=["a/1.png", "a/small.jpg"], labels=["a"], split="train"),
    ],
    nested_files=1,
    nested_folders={"a/extra": 1},
)


def _report() -> RunReport:
    return RunReport(run_id="r1", pipeline_name="p", ingest=INGEST, ingest_report_dir="/x/ingest_report")


def test_the_run_summary_counts_copies_conflicts_and_nested_folders() -> None:
    text = _report().format()
    assert (
        "  copies: 2 groups (4 images), each in one split; 2 files in 1 groups filed under two classes rejected "
        "(label conflict), e.g. a/3.png = b/also_a3.png"
    ) in text
    assert "  nested folders: 1 files in sub-folders, ingested as their top class folder: a/extra" in text


def test_the_model_card_lists_the_groups_with_their_paths() -> None:
    page = html_report.render(_report(), {})
    assert 'id="duplicate-groups" data-value="2"' in page and 'id="label-conflict-files" data-value="2"' in page
    assert "a/3.png, b/also_a3.png" in page and "rejected: label conflict" in page
    assert "a/1.png, a/small.jpg" in page and "<code>a/extra/</code> 1" in page
